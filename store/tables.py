"""Tables the read commands query, as SQL names and column types only.

Building a table's model class (its pydantic schema, its ORM mapping) costs a short command a
few milliseconds a table, most of `rally campaign show`'s own start-up; a read that wants plain
rows queries these instead. Each lists the columns its readers use, named and typed as in
`store.models` (`tests/unit/test_tables.py` holds them to it); the plan's tables list every
column, as their rows are shown whole.
"""

from sqlalchemy import JSON, Boolean, Date, Integer, String, column, table

from store.types import UTCDateTime

campaigns = table(
    "campaigns",
    column("id", Integer),
    column("slug", String),
    column("name", String),
    column("political", Boolean),
    column("paid", Boolean),
    column("start_date", Date),
    column("weeks", Integer),
    column("spec", JSON),
    column("spec_hash", String),
    column("source_path", String),
    column("policy_hash", String),
    column("followups_hash", String),
    column("templates_hash", String),
    column("updated_at", UTCDateTime),
)

creators = table(
    "creators",
    column("id", Integer),
    column("platform", String),
    column("handle", String),
    column("name", String),
    column("email", String),
    column("followers", Integer),
    column("attributes", JSON),
)

roster_members = table(
    "roster_members",
    column("campaign_id", Integer),
    column("creator_id", Integer),
    column("segment", String),
    column("tier", String),
    column("rate_cents", Integer),
    column("tracking_code", String),
    column("source_code", String),
    column("holdout", Boolean),
    column("status", String),
)

sprint_phases = table(
    "sprint_phases",
    column("id", Integer),
    column("campaign_id", Integer),
    column("key", String),
    column("name", String),
    column("first_week", Integer),
    column("last_week", Integer),
    column("starts_on", Date),
    column("ends_on", Date),
)

milestones = table(
    "milestones",
    column("id", Integer),
    column("campaign_id", Integer),
    column("key", String),
    column("name", String),
    column("week", Integer),
    column("due_on", Date),
    column("check", String),
    column("params", JSON),
    column("status", String),
    column("outcome", JSON),
    column("evaluated_at", UTCDateTime),
)

creatives = table(
    "creatives",
    column("id", Integer),
    column("campaign_id", Integer),
)

creative_drafts = table(
    "creative_drafts",
    column("id", Integer),
    column("creative_id", Integer),
    column("version", Integer),
    column("caption", String),
)

review_tasks = table(
    "review_tasks",
    column("id", Integer),
    column("draft_id", Integer),
    column("tier", String),
    column("approver_group", String),
    column("status", String),
    column("due_at", UTCDateTime),
    column("escalated_to", String),
)

outbox = table(
    "outbox",
    column("id", Integer),
    column("channel", String),
    column("destination", String),
    column("subject_type", String),
    column("subject_id", String),
    column("status", String),
    column("attempts", Integer),
    column("last_error", String),
    column("remote_state", JSON),
)
