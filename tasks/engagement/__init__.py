"""Engagement: events from webhooks, polls, files and the simulator stored once each
(`events`, `writer`, `files`, `poll`; a click or a webhook as a row, `inbound`), the follow-up
rules (`rules`) applied a batch at a time (`processing`, `batch`, `messages`) with consent and
STOP respected (`consent`), every signup made a lead by one path (`signups`, for the signup
page and the rules alike), the signup page's consents confirmed by the person (`confirm`),
replies, DMs and texts delivered (`delivery`) with the TikTok accounts Rally acts for
(`accounts`), and the counts staff read (`status`). Imports
`campaigns`, `leads` and the plumbing.
"""
