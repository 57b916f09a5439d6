"""The sprint: its start (the holdout drawn once), weeks closed with their milestones, its
status and summary (`state`), and one week's work on either clock (`week`). Imports
`campaigns`, `leads`, `reporting`, `rehearsal` and the plumbing.
"""
