"""The sprint on the calendar: starting it (the holdout drawn once), where it stands, closing
its weeks with their milestones; and the numbers the report reads from the store, against
figures worked by hand."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from flows.sprint import run_sprint, without_heartbeats
from store.db import transaction
from store.models import (
    Brief,
    Campaign,
    CreativeDraft,
    MetricSnapshot,
    Milestone,
    RosterMember,
    SprintRun,
)
from tasks.engagement.events import store_events
from tasks.reporting.metrics import read_numbers, week_of
from tasks.reporting.report import build_report, write_report
from tasks.sprint.calendar import steps_due
from tasks.sprint.state import SprintError, finish_week, in_holdout
from tests.conftest import SLUG

START = datetime(2027, 2, 1, tzinfo=UTC)  # the example campaign's first day


def test_a_live_sprint_starts_once_with_its_holdout_and_closes_ended_weeks(rally, applied, engine):
    started = rally("sprint", "start", SLUG, "--json")
    assert started.code == 0, started.err
    held = json.loads(started.out)["holdout"]
    expected = sorted(
        h for h in _handles(engine) if in_holdout(SLUG, h, 0, 0.1)
    )  # drawn from the seed alone, so the same every time
    assert held == expected and 0 < len(held) < 15
    with transaction(engine, write=False) as session:
        flagged = session.exec(select(RosterMember).where(RosterMember.holdout)).all()
    assert len(flagged) == len(held)

    again = rally("sprint", "start", SLUG)
    assert again.code == 1 and "has started already" in again.err

    status = json.loads(rally("sprint", "status", SLUG, "--json").out)
    assert status["started"] and status["mode"] == "live" and status["weeks_done"] == 0

    assert closes_due(engine, START + timedelta(days=6)) == []
    assert closes_due(engine, START + timedelta(days=15)) == ["close-w01", "close-w02"]
    with transaction(engine) as session:
        finish_week(session, SLUG, 1, now=START + timedelta(days=15), actor="staff:test")
        outcomes = finish_week(session, SLUG, 2, now=START + timedelta(days=15), actor="staff:test")
    # No brief was ever sent, so "every brief acknowledged" is missed; the manual milestones of
    # a live sprint wait for staff.
    assert outcomes == [
        {"key": "briefs_acknowledged", "status": "missed", "acknowledged": 0, "briefs": 0,
         "share": 0.0}
    ]  # fmt: skip
    with transaction(engine, write=False) as session:
        strategy = session.exec(select(Milestone).where(Milestone.key == "strategy")).one()
    assert strategy.status == "pending"
    said = {
        m["key"]: m for m in json.loads(rally("sprint", "status", SLUG, "--json").out)["milestones"]
    }
    assert said["briefs_acknowledged"]["why"] == "0 of 0 briefs acknowledged (0%; 100% wanted)"
    assert said["strategy"]["why"] == "waits for staff to mark it"
    assert "0 of 0 briefs acknowledged" in rally("sprint", "status", SLUG).out  # the table too


def closes_due(engine, now: datetime) -> list[str]:
    """The week closes of the sprint's calendar due by `now` and not done."""
    with transaction(engine, write=False) as session:
        campaign = session.exec(select(Campaign)).one()
        return [s.key for s in steps_due(session, campaign, now=now) if s.key.startswith("close")]


def _handles(engine) -> list[str]:
    from store.models import Creator

    with transaction(engine, write=False) as session:
        return list(session.exec(select(Creator.handle)).all())


def test_weeks_count_from_the_campaign_start_and_a_closing_snapshot_counts_for_its_week():
    start = START.date()
    assert week_of(start, START) == 0  # midnight opening week 1 closes the week before
    assert week_of(start, START + timedelta(hours=1)) == 1
    assert week_of(start, START + timedelta(days=7)) == 1
    assert week_of(start, START + timedelta(days=7, seconds=1)) == 2


def test_the_numbers_come_from_snapshots_and_rallys_own_events(rally, applied, engine, settings):
    assert rally("sprint", "start", SLUG).code == 0
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign)).one()
        members = session.exec(select(RosterMember).order_by(col(RosterMember.id))).all()
        treated = next(m for m in members if not m.holdout)
        held = next(m for m in members if m.holdout)
        end_1, end_2 = START + timedelta(days=7), START + timedelta(days=14)
        snapshots = [
            (treated, "v1", end_1, 1000, 60, 10, 5, 0.2, 30000),
            (treated, "v1", end_1 - timedelta(days=1), 400, 20, 4, 1, 0.2, 30000),  # earlier
            (treated, "v1", end_2, 1600, 90, 14, 8, 0.25, 30000),
            (held, "v2", end_2, 500, 20, 3, 2, 0.1, 10000),
        ]
        for member, video, at, views, likes, comments, shares, rate, spend in snapshots:
            session.add(
                MetricSnapshot(
                    campaign_id=campaign.id or 0, member_id=member.id, video_id=video,
                    captured_at=at,
                    views=views, reach=views // 2, likes=likes, comments=comments, shares=shares,
                    full_watch_rate=rate, spend_cents=spend,
                )
            )  # fmt: skip
        day = START + timedelta(days=2)
        rows = [
            _event(campaign.id, "c1", "comment", treated.id, "v1", "ana", day),
            _event(campaign.id, "c2", "comment", treated.id, "v1", "ben", day),
            _event(campaign.id, "c3", "comment", held.id, "v2", "cy", START + timedelta(days=9)),
            _event(campaign.id, "k1", "link_click", treated.id, "v1", "ana", day),
            _event(campaign.id, "k2", "link_click", held.id, "v2", "ana", day + timedelta(hours=1)),
            _event(campaign.id, "k3", "link_click", treated.id, "v1", "dee", day),
            _event(campaign.id, "s1", "signup", treated.id, "v1", "ana", START + timedelta(days=8)),
        ]
        store_events(session, rows)

    with transaction(engine, write=False) as session:
        numbers = read_numbers(session, session.exec(select(Campaign)).one(), weeks=2)
    week_1, week_2 = numbers.by_week[1], numbers.by_week[2]
    assert (week_1.views, week_1.likes, week_1.comments, week_1.shares) == (1000, 60, 10, 5)
    assert week_1.full_watches == 200.0 and week_1.spend == 300.0
    assert (week_1.clicks, week_1.signups) == (3, 0)
    # Week 2 is growth: v1 grew by 600 views (at its newest full-watch rate), v2 is new.
    assert (week_2.views, week_2.likes, week_2.spend) == (600 + 500, 30 + 20, 100.0)
    assert week_2.full_watches == 600 * 0.25 + 500 * 0.1
    assert (week_2.clicks, week_2.signups) == (0, 1)
    assert numbers.by_video["v1"].views == 1600
    # Ana clicked a treated and a held-out creator's link before signing up on the treated one's.
    assert numbers.treated == (1, 2) and numbers.held_out == (0, 1)

    with transaction(engine, write=False) as session:
        report = build_report(session, SLUG, week=2)
    by_creator = {row["creator"]: row for row in report["attribution"]["by_creator"]}
    handle_t = report["scorecards"][0]["creator"]
    assert by_creator[handle_t]["last_touch"] == 1.0  # the signup's own source code is latest
    assert sum(r["linear"] for r in report["attribution"]["by_creator"]) == 1.0
    assert report["weekly"][1]["views_to_date"] == 2100
    assert report["funnel"][-1] == {"step": "Signups", "count": 1, "of_previous": 1 / 3}
    assert report["lift"]["treated"] == {"converted": 1, "people": 2}
    paths = write_report(report, settings.home / "report")
    assert {p.name for p in paths.values()} >= {"report.html", "weekly.csv", "report.json"}
    assert paths["weekly"].read_text().splitlines()[0].startswith("week,views,")


def _event(campaign, key, kind, member_id, video, actor, at):
    from tasks.engagement.events import new_event

    return new_event(
        source="rally" if kind != "comment" else "tiktok", external_id=key, type=kind,
        occurred_at=at, received_at=at, campaign_id=campaign, member_id=member_id,
        video_id=video, actor=actor,
    )  # fmt: skip


@pytest.mark.slow
def test_a_rehearsal_is_refused_beside_a_live_sprint_or_real_briefs_and_nothing_is_written(
    rally, applied, engine
):
    assert rally("briefs", "generate", SLUG).code == 0  # real briefs, before any sprint
    refused = rally("sprint", "start", SLUG, "--simulate", "--weeks", "1")
    assert refused.code == 1 and "it has 50 brief(s) already" in refused.err
    assert "Rehearse in a store of its own" in refused.err

    assert rally("sprint", "start", SLUG).code == 0
    refused = rally("sprint", "start", SLUG, "--simulate", "--weeks", "1")
    assert refused.code == 1 and "its sprint is live" in refused.err
    with transaction(engine, write=False) as session:
        (run,) = session.exec(select(SprintRun)).all()
        assert run.mode == "live" and run.weeks_done == 0 and run.finished_at is None
        assert session.exec(select(CreativeDraft)).all() == []
        assert all(b.sent_at is None for b in session.exec(select(Brief)).all())

    # The flow itself refuses too (a deployment run from the Prefect UI's form).
    with pytest.raises(SprintError, match="its sprint is live"), without_heartbeats():
        run_sprint(SLUG, simulate=True, weeks=1)


def test_staff_list_a_campaigns_creatives_with_what_each_waits_on(rally, applied):
    caption = (
        "Registering takes two minutes #ad Paid for by Keystone Youth Vote Fund."
        " Not authorized by any candidate or candidate's committee."
    )
    made = rally(
        "creatives", "submit", SLUG, "maya.votes.pa", "--caption", caption,
        "--as", "producer@example.org", "--json",
    )  # fmt: skip
    assert made.code == 0, made.err
    history = rally("creatives", "history", json.loads(made.out)["creative"], "--json").out
    assert "producer@example.org" in json.dumps(json.loads(history)["audit"][0])
    listed = json.loads(rally("creatives", "list", SLUG, "--json").out)
    assert [(c["creator"], c["status"], c["version"]) for c in listed] == [
        ("maya.votes.pa", "in_review", 1)
    ]
    assert listed[0]["waiting_on"] == "internal"
    shown = rally("creatives", "list", SLUG)
    assert "@maya.votes.pa" in shown.out and "internal" in shown.out
    none = rally("creatives", "list", SLUG, "--status", "posted")
    assert none.code == 0 and "No creatives on first-vote-pa-2027 with status posted." in none.out
    wrong = rally("creatives", "list", SLUG, "--status", "live")
    assert wrong.code == 2 and "'live' is not a status" in wrong.err
