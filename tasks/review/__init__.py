"""Review: a creator's drafts (`creatives`) checked by the policy (`checks`), routed through its
tiers (`routing`), decided by approvers (`decisions`) who sign in with a link or token
(`approvers`), kept to deadlines (`deadlines`), and read back (`views`). Imports `campaigns`
and the plumbing.
"""
