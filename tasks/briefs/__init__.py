"""Briefs: what a brief is made of (`inputs`), a run of generation (`run`, `generate`), its
email (`emails`), reading briefs back and the creator's acknowledgement (`status`), and what
a sent brief email means with the reminder to acknowledge (`reminders`). Imports `campaigns`
and the plumbing.
"""
