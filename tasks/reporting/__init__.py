"""Reporting: a campaign's numbers read from the store (`metrics`), the measurement worked on
them (`measurement`: KPIs, attribution, holdout lift, scorecards, the budget recommendation),
and the report built from both (`report`) and drawn as a page (`page`, `charts`, and the
template in `templates/`). Imports `campaigns` and the plumbing.
"""
