"""A live sprint driven through its twelve weeks on an injected clock, as `rally serve` drives it
(a pass of the `sprint-calendar` flow whenever its check says a step is due): the briefs wait for
staff's go-ahead and go once it is given; every reminder, prompt and digest goes once, to the
right people, within a pass of its moment; a sprint whose process was down for two weeks catches
up in order; a pass run twice repeats nothing; a paused sprint waits and a stopped one ends."""

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from flows.sprint import sprint_calendar, without_heartbeats
from store.db import transaction
from store.models import (
    Brief,
    Campaign,
    Creative,
    CreativeStatus,
    Creator,
    OutboxMessage,
    RosterMember,
    SprintStep,
)
from tasks.campaigns.campaign import campaign_spec, staff
from tasks.due import has_work
from tasks.sprint.calendar import calendar
from tests.conftest import SLUG

START = datetime(2027, 2, 1, tzinfo=UTC)  # the example campaign's first day
PASS = timedelta(hours=12)  # how often the test's timer looks for due steps
DOWN = (START + timedelta(weeks=5, hours=1), START + timedelta(weeks=7))  # Rally stopped


def sprint_emails(engine) -> list[OutboxMessage]:
    with transaction(engine, write=False) as session:
        return list(
            session.exec(
                select(OutboxMessage)
                .where(OutboxMessage.subject_type == "sprint")
                .order_by(col(OutboxMessage.id))
            ).all()
        )


def tick(engine, at: datetime) -> list[str]:
    """One pass at `at`, when the timer's check finds work (as `rally serve` runs it): the
    steps it did."""
    if not has_work("sprint-calendar", engine, at):
        return []
    with without_heartbeats():
        return sprint_calendar(at=at)["steps"].get(SLUG, [])


def creators_at_work(engine) -> tuple[set[str], set[str]]:
    """Ten creators hand in a draft before it is due; five more have a video approved and not
    posted. Their emails."""
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign)).one()
        members = session.exec(
            select(RosterMember, Creator)
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .order_by(col(RosterMember.id))
        ).all()
        drafted: set[str] = set()
        approved: set[str] = set()
        for n, (member, creator) in enumerate(members[:15]):
            status = CreativeStatus.IN_REVIEW if n < 10 else CreativeStatus.APPROVED
            session.add(
                Creative(
                    campaign_id=campaign.id or 0,
                    member_id=member.id or 0,
                    title=f"Video by @{creator.handle}",
                    status=status,
                    current_version=1,
                )
            )
            (drafted if n < 10 else approved).add(creator.email or "")
    return drafted, approved


@pytest.mark.slow
def test_a_live_sprint_runs_its_calendar_once_each_step_on_time(rally, applied: Path, engine):
    assert rally("sprint", "start", SLUG).code == 0
    with transaction(engine, write=False) as session:
        campaign = session.exec(select(Campaign)).one()
        spec = campaign_spec(campaign)
        emails = set(session.exec(select(Creator.email)).all())
    steps = calendar(spec)
    people = staff(spec)
    assert people == list(spec.approvers["internal"]) and len(people) == 2

    # Before the sprint starts nothing is due; on its first day the briefs are made and wait.
    assert tick(engine, START - timedelta(days=1)) == []
    assert tick(engine, START + timedelta(hours=1)) == ["briefs", "milestone-strategy"]
    asked = [m for m in sprint_emails(engine) if "go-ahead" in m.payload["subject"]]
    assert sorted(m.payload["to"] for m in asked) == sorted(people)
    assert "rally sprint approve first-vote-pa-2027 briefs" in asked[0].payload["text"]
    with transaction(engine, write=False) as session:
        made = session.exec(select(Brief)).all()
    assert len(made) == 50 and all(b.sent_at is None for b in made)
    assert rally("sprint", "status", SLUG).out.count("waiting") == 1
    with transaction(engine, write=False) as session:
        waiting = session.exec(select(SprintStep).where(SprintStep.key == "briefs")).one()
    # Embedded, with no deployments registered, there is no Prefect run to resume: the CLI it is.
    assert waiting.outcome["go_ahead_run"].startswith("none: the sprint-go-ahead deployment")

    # Without the go-ahead the briefs stay unsent, however many passes run.
    for hours in (13, 25, 37):
        tick(engine, START + timedelta(hours=hours))
    assert not _briefs_sent(engine)
    approve = rally("sprint", "approve", SLUG, "briefs")
    assert approve.code == 0, approve.err
    again = rally("sprint", "approve", SLUG, "reminders")
    assert again.code == 1 and "no step 'reminders'" in again.err
    clock = START + timedelta(hours=49)
    assert tick(engine, clock) == ["briefs"]
    assert len(_briefs_sent(engine)) == 50
    drafted, approved = creators_at_work(engine)

    # The rest of the sprint, a pass every twelve hours, with Rally down for two weeks; in week
    # 3 a creator joins (the campaign applied again), and their brief waits for a go-ahead too.
    caught_up: list[str] = []
    joined = False
    while clock < START + timedelta(weeks=12, days=1):
        clock += PASS
        if DOWN[0] <= clock < DOWN[1]:
            continue
        if not joined and clock >= START + timedelta(weeks=2, days=3):
            join(rally, applied)
            joined = True
        ran = tick(engine, clock)
        if clock - PASS < DOWN[1] <= clock:
            caught_up = ran
        assert tick(engine, clock) == []  # a second pass at the same moment repeats nothing
        if "briefs-w04" in ran and not _briefs_sent(engine)[50:]:  # waiting: staff approve
            assert rally("sprint", "approve", SLUG, "briefs-w04").code == 0

    with transaction(engine, write=False) as session:
        rows = {row.key: row for row in session.exec(select(SprintStep)).all()}
    assert set(rows) == {s.key for s in steps} and {r.status for r in rows.values()} == {"done"}
    missed = [s.key for s in steps if DOWN[0] - PASS < s.due <= DOWN[1]]
    assert caught_up == missed and len(missed) >= 3  # in the calendar's order, once each
    for step in steps:
        done = rows[step.key].done_at
        assert done is not None and done >= step.due, step.key
        if step.key not in missed and step.key not in ("briefs", "briefs-w04"):  # go-aheads
            assert done - step.due <= PASS, f"{step.key} was {done - step.due} late"

    # The new creator's brief went on the go-ahead; nobody else's went twice.
    assert len(_briefs_sent(engine)) == 51
    assert rows["briefs-w04"].outcome["queued"] == 1 and rows["briefs-w04"].go_ahead_at
    assert rows["briefs-w03"].outcome["sent"] == rows["briefs-w05"].outcome["sent"] == 0
    asked_again = [m for m in sprint_emails(engine) if "briefs-w04" in m.idempotency_key]
    assert len(asked_again) == 2 and "@newvoice.pa" in asked_again[0].payload["text"]
    sent = sprint_emails(engine)
    assert len({m.idempotency_key for m in sent}) == len(sent)
    by_step = Counter(m.idempotency_key.split(":")[2] for m in sent)
    to = {
        key: sorted(m.payload["to"] for m in sent if m.idempotency_key.split(":")[2] == key)
        for key in by_step
    }
    # Draft reminders: every briefed creator with no draft yet, once; none to those with one.
    assert set(to["draft-reminders"]) == emails - drafted - approved
    assert len(to["draft-reminders"]) == 50 - len(drafted) - len(approved)
    assert to["drafts-missing"] == sorted(people)
    (missing,) = [m for m in sent if "drafts-missing" in m.idempotency_key][:1]
    assert "35 creator(s)" in missing.payload["text"]
    # Posting reminders: the approved, unposted videos, each posting week.
    first, last = spec.brief.posting_weeks
    for week in range(first, last + 1):
        assert sorted(to[f"posting-reminders-w{week:02d}"]) == sorted(approved), week
    # Milestones people judge: a prompt each, to staff (no owner named); the rest are checked.
    assert [k for k in by_step if k.startswith("milestone-")] == [
        "milestone-strategy",
        "milestone-mid_sprint_review",
        "milestone-postmortem",
    ]
    review = next(m for m in sent if "milestone-mid_sprint_review" in m.idempotency_key)
    assert "The numbers up to week 3:" in review.payload["text"]
    assert "- signups: 0 of 4,000 (0% of the target)" in review.payload["text"]
    # A digest to each staff member each week; the last is the postmortem, with the next plan.
    for week in range(1, 13):
        assert to[f"close-w{week:02d}"] == sorted(people)
    final = next(m for m in sent if m.idempotency_key.split(":")[2] == "close-w12")
    assert "postmortem" in final.payload["subject"]
    week_9 = next(m for m in sent if m.idempotency_key.split(":")[2] == "close-w09")
    assert "Budget:" in week_9.payload["text"]
    assert "/reports/first-vote-pa-2027/week-9" in week_9.payload["text"]
    plan = Path(rows["close-w12"].outcome["next_plan"])
    assert "start: '2027-04-26'" in plan.read_text()
    applied_plan = rally("campaign", "apply", plan)
    assert applied_plan.code == 0, applied_plan.err  # a campaign file staff can apply as it is
    assert "next-roster.csv: 51 added" in applied_plan.out  # with every creator, the new one too
    status = rally("sprint", "status", SLUG, "--json").out
    assert '"finished": true' in status


def join(rally, folder: Path) -> None:
    """A creator added to the roster, and the campaign applied again, mid-sprint."""
    roster = folder / "roster.csv"
    row = "newvoice.pa,tiktok,New Voice,new.voice@example.org,12000,gen_z,micro,,Erie,16501\n"
    roster.write_text(roster.read_text() + row)
    applied = rally("campaign", "apply", folder / "campaign.yaml")
    assert applied.code == 0, applied.err


def _briefs_sent(engine) -> list[OutboxMessage]:
    with transaction(engine, write=False) as session:
        return list(
            session.exec(select(OutboxMessage).where(OutboxMessage.subject_type == "brief")).all()
        )


@pytest.mark.slow
def test_a_paused_sprint_waits_and_catches_up_and_a_stopped_one_ends(rally, applied, engine):
    assert rally("sprint", "start", SLUG).code == 0
    assert rally("sprint", "pause", SLUG).code == 0
    assert not has_work("sprint-calendar", engine, START + timedelta(days=3))

    assert rally("sprint", "resume", SLUG).code == 0
    assert tick(engine, START + timedelta(days=8)) == [
        "briefs",
        "milestone-strategy",
        "close-w01",
        "briefs-w02",
    ]
    assert rally("sprint", "stop", SLUG).code == 0
    assert not has_work("sprint-calendar", engine, START + timedelta(weeks=13))
    resumed = rally("sprint", "resume", SLUG)
    assert resumed.code == 1 and "is over" in resumed.err


def test_staff_mark_a_milestone_people_judge(rally, applied, engine):
    assert rally("sprint", "start", SLUG).code == 0
    marked = rally("sprint", "milestone", SLUG, "strategy", "met", "--note", "agreed on Monday")
    assert marked.code == 0, marked.err
    status = rally("sprint", "status", SLUG, "--json").out
    assert '"key": "strategy"' in status and '"status": "met"' in status
    wrong = rally("sprint", "milestone", SLUG, "strategy", "done")
    assert wrong.code == 1 and "met or missed" in wrong.err
    unknown = rally("sprint", "milestone", SLUG, "kickoff", "met")
    assert unknown.code == 1 and "no milestone 'kickoff'" in unknown.err
