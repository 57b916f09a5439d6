"""The sprint plan: phases and milestones laid on the calendar from the campaign's start date.

The defaults describe a 12-week sprint; a longer or shorter sprint keeps their proportions.
A campaign file may list its own phases and milestones instead.
"""

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from config.campaign import CampaignSpec

# (key, name, last week of a 12-week sprint)
DEFAULT_PHASES = (
    ("planning", "Planning: briefs out, acknowledgements", 2),
    ("execution", "Execution: drafts, reviews, first posts, hook and call-to-action tests", 6),
    ("amplification", "Amplification: scale what works, re-check anything boosted", 9),
    ("measurement", "Measurement: final numbers, postmortem, next plan", 12),
)
# (key, name, week of a 12-week sprint, check, params)
DEFAULT_MILESTONES: tuple[tuple[str, str, int, str, dict[str, Any]], ...] = (
    ("strategy", "Strategy agreed", 1, "manual", {}),
    ("briefs_acknowledged", "Every brief acknowledged", 2, "briefs_acknowledged", {"share": 1.0}),
    ("mid_sprint_review", "Mid-sprint review", 4, "manual", {}),
    ("kpi_80", "80% of KPI targets", 9, "kpi_progress", {"share": 0.8}),
    ("postmortem", "Postmortem", 12, "manual", {}),
)


@dataclass(frozen=True)
class PlannedPhase:
    key: str
    name: str
    first_week: int
    last_week: int
    starts_on: date
    ends_on: date


@dataclass(frozen=True)
class PlannedMilestone:
    key: str
    name: str
    week: int
    due_on: date
    check: str
    params: dict[str, Any]
    owner: str | None = None


def week_start(start: date, week: int) -> date:
    return start + timedelta(weeks=week - 1)


def week_end(start: date, week: int) -> date:
    return start + timedelta(weeks=week, days=-1)


def _scaled(week_of_12: int, weeks: int) -> int:
    return max(1, math.ceil(week_of_12 * weeks / 12))


def plan_phases(spec: CampaignSpec) -> list[PlannedPhase]:
    start, weeks = spec.sprint.start, spec.sprint.weeks
    if spec.sprint.phases:
        bounds = [(p.key, p.name, p.first_week, p.last_week) for p in spec.sprint.phases]
    else:
        bounds, first = [], 1
        for key, name, last_of_12 in DEFAULT_PHASES:
            last = _scaled(last_of_12, weeks)
            if last >= first:  # a very short sprint folds phases together
                bounds.append((key, name, first, last))
                first = last + 1
    return [
        PlannedPhase(key, name, first, last, week_start(start, first), week_end(start, last))
        for key, name, first, last in bounds
    ]


def plan_milestones(spec: CampaignSpec) -> list[PlannedMilestone]:
    start, weeks = spec.sprint.start, spec.sprint.weeks
    if spec.sprint.milestones:
        rows = [
            (m.key, m.name, m.week, m.check, dict(m.params), m.owner)
            for m in spec.sprint.milestones
        ]
    else:
        rows = [(k, n, _scaled(w, weeks), c, dict(p), None) for k, n, w, c, p in DEFAULT_MILESTONES]
    return [
        PlannedMilestone(key, name, week, week_end(start, week), check, params, owner)
        for key, name, week, check, params, owner in rows
    ]
