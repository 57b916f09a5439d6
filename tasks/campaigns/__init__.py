"""Campaigns: a campaign file and roster applied to the store (each version kept with its hash),
the sprint plan laid on the calendar, each creator's tracking code and link, and the campaign
read back for people and scripts. Imports only the plumbing of `tasks`.
"""
