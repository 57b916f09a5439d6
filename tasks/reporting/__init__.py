"""Reporting: a campaign's numbers read from the store (`metrics`), the measurement worked on
them (`measurement`: KPIs, attribution, holdout lift, scorecards, the budget recommendation),
and the report built from both (`report`), drawn as a page (`page`, `charts`, and the
template in `templates/`) and kept in the store for staff to read (`stored`). Imports
`campaigns` and the plumbing.
"""
