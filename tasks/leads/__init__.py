"""Leads: people as contacts with their consent (`contacts`), queued for sync to a campaign's
destinations (`records`), each destination checked before (`check`), drained through each
destination's connector (`sync`), listed (`status`) and forgotten (`forget`). Imports
`campaigns` and the plumbing.
"""
