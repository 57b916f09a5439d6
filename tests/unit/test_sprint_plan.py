"""The sprint plan on the calendar: 12 weeks by default, proportional otherwise."""

from datetime import date
from pathlib import Path

from config.campaign import CampaignSpec
from config.campaign_file import load_campaign
from tasks.campaigns.plan import plan_milestones, plan_phases

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "youth-vote" / "campaign.yaml"


def with_sprint(**sprint: object) -> CampaignSpec:
    data = load_campaign(EXAMPLE).model_dump()
    data["sprint"] = {**data["sprint"], **sprint}
    data["brief"]["posting_weeks"] = (1, 1)
    data["brief"]["draft_due_week"] = 1
    return CampaignSpec.model_validate(data)


def test_twelve_weeks_follow_the_agreed_phases_and_milestones() -> None:
    spec = with_sprint(start=date(2027, 2, 1), weeks=12)
    phases = [(p.key, p.first_week, p.last_week, p.starts_on, p.ends_on) for p in plan_phases(spec)]
    assert phases == [
        ("planning", 1, 2, date(2027, 2, 1), date(2027, 2, 14)),
        ("execution", 3, 6, date(2027, 2, 15), date(2027, 3, 14)),
        ("amplification", 7, 9, date(2027, 3, 15), date(2027, 4, 4)),
        ("measurement", 10, 12, date(2027, 4, 5), date(2027, 4, 25)),
    ]
    milestones = [(m.key, m.week, m.due_on) for m in plan_milestones(spec)]
    assert milestones == [
        ("strategy", 1, date(2027, 2, 7)),
        ("briefs_acknowledged", 2, date(2027, 2, 14)),
        ("mid_sprint_review", 4, date(2027, 2, 28)),
        ("kpi_80", 9, date(2027, 4, 4)),
        ("postmortem", 12, date(2027, 4, 25)),
    ]
    assert plan_milestones(spec)[3].params == {"share": 0.8}


def test_a_shorter_sprint_keeps_every_phase_in_proportion() -> None:
    phases = plan_phases(with_sprint(weeks=6))
    assert [(p.key, p.first_week, p.last_week) for p in phases] == [
        ("planning", 1, 1),
        ("execution", 2, 3),
        ("amplification", 4, 5),
        ("measurement", 6, 6),
    ]
    assert [m.week for m in plan_milestones(with_sprint(weeks=6))] == [1, 1, 2, 5, 6]


def test_a_two_week_sprint_folds_phases_together_without_gaps() -> None:
    phases = plan_phases(with_sprint(weeks=2))
    assert [(p.first_week, p.last_week) for p in phases] == [(1, 1), (2, 2)]


def test_the_campaign_file_may_set_its_own_phases_and_milestones() -> None:
    spec = with_sprint(
        weeks=4,
        phases=[{"key": "launch", "name": "Launch", "first_week": 1, "last_week": 4}],
        milestones=[{"key": "wrap", "name": "Wrap-up", "week": 4, "check": "manual"}],
    )
    assert [(p.key, p.ends_on) for p in plan_phases(spec)] == [("launch", date(2027, 2, 28))]
    assert [(m.key, m.week) for m in plan_milestones(spec)] == [("wrap", 4)]


def test_the_next_plan_raises_met_targets_keeps_missed_ones_and_moves_tiers_up_by_rate() -> None:
    from tasks.sprint.next_plan import next_targets, next_tier

    targets = {"views": 1000, "signups": 100, "engagement_rate": 0.06, "cpa": 8.0}
    progress: dict[str, dict[str, object]] = {
        "views": {"value": 1500, "met": True},
        "signups": {"value": 80, "met": False},
        "engagement_rate": {"value": 0.0712345, "met": True},
        "cpa": {"value": 6.5, "met": True},
    }
    assert next_targets(targets, progress) == {
        "views": 1650,  # a count met: a tenth over what was reached
        "signups": 100,  # missed: kept
        "engagement_rate": 0.0712,
        "cpa": 6.5,
    }
    spec = with_sprint(start=date(2027, 2, 1), weeks=12)  # micro $300, mid $800, macro $2,000
    assert [next_tier(spec, t) for t in ("micro", "mid", "macro", None)] == [
        "mid",
        "macro",
        None,
        None,
    ]
