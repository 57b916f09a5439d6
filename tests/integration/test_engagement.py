"""Engagement to follow-ups through the service layer on a real store: events stored once, each
rule condition, delays, quiet hours, caps and rate limits on a fixed clock, STOP and START,
consent, holdouts, file ingest with per-line errors, and the local folder delivery."""

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from store.db import transaction
from store.models import (
    ConsentStatus,
    Contact,
    ContactConsent,
    Creator,
    EngagementEvent,
    FollowUp,
    OutboxMessage,
    RosterMember,
)
from tasks.engagement.delivery import deliver_followups
from tasks.engagement.events import IngestReport, ingest
from tasks.engagement.processing import ProcessReport, process_pending
from tests.conftest import ROOT, SLUG

T0 = datetime(2027, 2, 3, 17, 0, tzinfo=UTC)  # noon in New York, the campaign's time zone
MIN = timedelta(minutes=1)
NEW_YORK = ZoneInfo("America/New_York")
PUBLIC_URL = "https://rally.example.org"
MAYA, JORDAN, TYLER = "maya.votes.pa", "jordanreyes_phl", "tylerexplainsit"
_ids = itertools.count(1)


def event(
    kind: str = "comment", actor: str | None = "fan", text: str | None = "Love this!", **fields
) -> dict:
    """One event record as a file or the simulator gives it (a TikTok comment by default)."""
    at = fields.pop("at", T0)
    return {
        "source": "tiktok",
        "external_id": f"ev-{next(_ids)}",
        "type": kind,
        "actor": actor,
        "creator": MAYA,
        "video": "7001",
        "text": text,
        "time": at.isoformat(),
    } | fields


def push(engine, *records: dict, now: datetime = T0) -> IngestReport:
    report = ingest(engine, [(f"test:{i}", r) for i, r in enumerate(records, 1)], now=now)
    assert report.errors == []
    return report


def process(engine, now: datetime = T0) -> ProcessReport:
    return process_pending(engine, now=now, public_url=PUBLIC_URL)


def followups(engine, rule: str | None = None) -> list[FollowUp]:
    with transaction(engine, write=False) as session:
        query = select(FollowUp).order_by(col(FollowUp.id))
        if rule:
            query = query.where(FollowUp.rule_id == rule)
        return list(session.exec(query))


def outbox(engine, subject_type: str = "followup") -> list[OutboxMessage]:
    with transaction(engine, write=False) as session:
        query = select(OutboxMessage).where(OutboxMessage.subject_type == subject_type)
        return list(session.exec(query.order_by(col(OutboxMessage.id))))


def consent_of(engine, handle: str) -> dict[str, str]:
    with transaction(engine, write=False) as session:
        rows = session.exec(
            select(ContactConsent.channel, ContactConsent.status)
            .join(Contact, col(Contact.id) == col(ContactConsent.contact_id))
            .where(Contact.handle == handle)
        )
        return dict(rows.all())


def with_rules(rally, folder: Path, rules: str) -> None:
    """Apply the example campaign with its own follow-ups file next to campaign.yaml."""
    (folder / "rules.yaml").write_text(rules)
    campaign = folder / "campaign.yaml"
    text = campaign.read_text()
    assert "followups: default" in text
    campaign.write_text(text.replace("followups: default", "followups: rules.yaml"))
    run = rally("campaign", "apply", campaign)
    assert run.code == 0, run.err


CONDITIONS = r"""
name: One rule per condition
rules:
  - {id: on_share, when: {types: [share]}, action: tag, tags: [sharer]}
  - {id: on_keyword, when: {types: [comment], keywords: [volunteer, sign me up]},
     action: tag, tags: [helper]}
  - {id: on_pattern, when: {types: [comment], patterns: ['how (can|do) i help']},
     action: tag, tags: [asker]}
  - {id: on_creator, when: {types: [like], creators: [jordanreyes_phl]}, action: tag, tags: [j]}
  - {id: on_segment, when: {types: [follow], segments: [suburban]}, action: tag, tags: [s]}
  - {id: on_video, when: {types: [mention], videos: ["7002"]}, action: tag, tags: [v]}
"""

TWO_DM_RULES = """
name: Two DM rules
caps: {dm: {day: 1, week: 3}}
opt_out_confirmation: {dm: "You're unsubscribed. Reply START to opt back in."}
opt_in_confirmation: {dm: "Welcome back!"}
rules:
  - {id: dm_help, when: {types: [dm], keywords: [help]}, action: dm, delay_minutes: 10,
     message: "Thanks {{ actor.greeting }}! {{ links.join }}"}
  - {id: dm_register, when: {types: [dm], keywords: [register]}, action: dm,
     message: "Register here: {{ links.join }}"}
"""


def test_a_redelivered_event_is_stored_once_counted_and_followed_up_once(engine, applied):
    first = event(external_id="c-1")
    report = push(engine, first, dict(first))
    assert (report.stored, report.repeated) == (1, 1)
    process(engine)
    assert push(engine, dict(first), now=T0 + MIN).repeated == 1  # after it was processed
    process(engine, T0 + MIN)

    with transaction(engine, write=False) as session:
        stored = list(session.exec(select(EngagementEvent)))
    assert [(e.external_id, e.deliveries) for e in stored] == [("c-1", 3)]
    assert [f.rule_id for f in followups(engine)] == ["thank_commenters"]
    assert len(outbox(engine)) == 1


def test_each_condition_fires_its_rule_and_only_then(rally, engine, example):
    with_rules(rally, example, CONDITIONS)
    cases = {  # actor -> (event, the rules it should fire)
        "sharer": (event("share"), {"on_share"}),
        "shouter": (event(text="Volunteer!"), {"on_keyword"}),
        "signer": (event(text="SIGN ME UP please"), {"on_keyword"}),
        "ongoing": (event(text="I'm volunteering already"), set()),
        "dmer": (event("dm", text="volunteer"), set()),
        "asker": (event(text="How can I help??"), {"on_pattern"}),
        "muddled": (event(text="how i can help"), set()),
        "jfan": (event("like", creator=JORDAN), {"on_creator"}),
        "mfan": (event("like"), set()),
        "suburb": (event("follow", creator=TYLER), {"on_segment"}),
        "genz": (event("follow"), set()),
        "tagger_b": (event("mention", video="7002"), {"on_video"}),
        "tagger_a": (event("mention", video="7001"), set()),
    }
    push(engine, *[record | {"actor": actor} for actor, (record, _) in cases.items()])
    process(engine)

    with transaction(engine, write=False) as session:
        rows = session.exec(
            select(Contact.handle, FollowUp.rule_id).join(
                FollowUp, col(FollowUp.contact_id) == col(Contact.id)
            )
        ).all()
        tags = dict(session.exec(select(Contact.handle, Contact.tags)).all())
    fired: dict[str, set[str]] = {actor: set() for actor in cases}
    for handle, rule in rows:
        fired[str(handle)].add(rule)
    assert fired == {actor: rules for actor, (_, rules) in cases.items()}
    assert tags["shouter"] == ["helper"] and not tags.get("ongoing")


def test_a_follow_up_is_due_its_delay_after_the_event_or_after_now_if_later(engine, applied):
    push(engine, event(actor="early"))
    process(engine, T0)
    push(engine, event(actor="late"), now=T0 + timedelta(hours=1))
    process(engine, T0 + timedelta(hours=1))  # thank_commenters waits 2 minutes

    due = {f.event_id: f.due_at for f in followups(engine, "thank_commenters")}
    assert sorted(due.values()) == [T0 + 2 * MIN, T0 + timedelta(hours=1, minutes=2)]
    assert sorted(m.available_at for m in outbox(engine)) == sorted(due.values())


def test_quiet_hours_hold_a_late_message_until_eight_next_morning(engine, applied):
    evening = datetime(2027, 2, 4, 1, 0, tzinfo=UTC)  # 20:00 in New York
    late = datetime(2027, 2, 4, 3, 58, tzinfo=UTC)  # 22:58 New York: due at 23:00
    push(engine, event(actor="evening", at=evening), now=evening)
    process(engine, evening)
    push(engine, event(actor="late", at=late), now=late)
    process(engine, late)

    due = sorted(f.due_at for f in followups(engine, "thank_commenters"))
    next_morning = datetime(2027, 2, 4, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert due == [evening + 2 * MIN, next_morning]
    assert max(m.available_at for m in outbox(engine)) == next_morning


def test_a_cap_withholds_a_second_dm_the_same_day_and_allows_one_the_next(rally, engine, example):
    with_rules(rally, example, TWO_DM_RULES)
    push(engine, event("dm", "sam", "how can I help?"))
    process(engine)
    push(engine, event("dm", "sam", "where do I register?", at=T0 + timedelta(hours=1)))
    process(engine, T0 + timedelta(hours=1))

    capped = followups(engine, "dm_register")[0]
    assert capped.status == "withheld"
    assert capped.reason is not None and capped.reason.startswith("capped: ")
    assert "1 dm a day" in capped.reason

    tomorrow = T0 + timedelta(days=1, hours=1)
    push(engine, event("dm", "sam", "register me", at=tomorrow), now=tomorrow)
    process(engine, tomorrow)
    assert [(f.rule_id, f.status) for f in followups(engine)] == [
        ("dm_help", "queued"),
        ("dm_register", "queued"),
    ]
    assert [m.channel for m in outbox(engine)] == ["tiktok_dm", "tiktok_dm"]


def test_a_dm_too_late_then_one_in_time_from_one_person_in_one_batch_is_queued_once(
    rally, engine, example
):
    with_rules(rally, example, TWO_DM_RULES)
    push(
        engine,
        event("dm", "sam", "help?", at=T0 - timedelta(hours=49)),  # past TikTok's 48 hours
        event("dm", "sam", "help, anyone?"),
    )
    report = process(engine)  # one batch: the first is withheld, the second decides it anew
    assert (report.outcomes, report.by_rule) == ({"delayed": 1}, {"dm_help": 1})

    [dm] = followups(engine, "dm_help")
    assert (dm.status, dm.reason, dm.due_at) == ("queued", None, T0 + 10 * MIN)
    [message] = outbox(engine)
    assert (dm.outbox_id, message.available_at) == (message.id, dm.due_at)


def test_the_rate_limit_moves_the_31st_reply_in_a_minute_to_the_next(engine, applied):
    push(engine, *[event(actor=f"fan{i}") for i in range(31)])
    process(engine)  # replies: 30 a minute, 2 minutes after the comment

    due = Counter(f.due_at for f in followups(engine, "thank_commenters"))
    assert due == {T0 + 2 * MIN: 30, T0 + 3 * MIN: 1}


RULES_PASS = (
    "import sys\n"
    "from datetime import datetime\n"
    "from config.settings import get_settings\n"
    "from store.db import open_store\n"
    "from tasks.engagement.processing import process_pending\n"
    "process_pending(open_store(get_settings()), now=datetime.fromisoformat(sys.argv[1]),\n"
    "                public_url='https://rally.example.org', batch=15)\n"
)


@pytest.mark.slow
def test_a_burst_far_above_the_rate_limit_holds_it_every_minute_across_batches_and_processes(
    engine, applied
):
    push(engine, *[event(actor=f"fan{i}") for i in range(300)])  # ten minutes of replies
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    other = subprocess.Popen([sys.executable, "-c", RULES_PASS, T0.isoformat()], env=env)
    process_pending(engine, now=T0, public_url=PUBLIC_URL, batch=15)
    assert other.wait(timeout=300) == 0
    replies = followups(engine, "thank_commenters")
    assert len(replies) == 300 and {f.status for f in replies} == {"queued"}
    per_minute = Counter(f.due_at.replace(second=0, microsecond=0) for f in replies)
    assert max(per_minute.values()) == 30  # the campaign's replies a minute, never more
    assert len(per_minute) == 10


def decide_meanwhile(engine, other_worker, monkeypatch) -> ProcessReport:
    """Process the waiting events as a worker does, and run `other_worker` once the first batch
    has written its follow-ups and before it places them in their minutes for good and
    commits. The other worker's batches are plain ones, on a store of its own connections that
    give up on a lock after five seconds: should it wait for this batch, it fails."""
    from sqlalchemy import create_engine

    from tasks.engagement import processing
    from tasks.engagement.batch import Batch

    impatient = create_engine(engine.url, connect_args={"options": "-c lock_timeout=5s"})

    class Overtaken(Batch):
        def _write(self, event_ids: list[int]) -> None:
            super()._write(event_ids)
            monkeypatch.setattr(processing, "Batch", Batch)
            other_worker(impatient)

    monkeypatch.setattr(processing, "Batch", Overtaken)
    try:
        return process(engine)
    finally:
        impatient.dispose()


def test_on_postgresql_replies_a_batch_decided_for_minutes_another_worker_took_meanwhile_move_on(
    engine, applied, monkeypatch
):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's one writer decides one batch at a time")
    push(engine, *[event(actor=f"late{i}") for i in range(30)])  # a minute of replies

    def other_worker(store) -> None:
        push(store, *[event(actor=f"early{i}") for i in range(30)])
        assert process(store).outcomes == {"delayed": 30}  # commits first, 2 minutes on

    report = decide_meanwhile(engine, other_worker, monkeypatch)

    due = {
        f.contact_id: f.due_at
        for f in followups(engine, "thank_commenters")
        if f.status == "queued"
    }
    with transaction(engine, write=False) as session:
        handles = dict(session.exec(select(Contact.id, Contact.handle)).all())
    by_who = Counter((str(handles[c])[:4], at) for c, at in due.items())
    assert by_who == {("earl", T0 + 2 * MIN): 30, ("late", T0 + 3 * MIN): 30}
    assert report.outcomes == {"delayed": 30}
    goes_at = {m.id: m.available_at for m in outbox(engine)}  # each reply's message with it
    assert {f.outbox_id: f.due_at for f in followups(engine)} == goes_at


DM_EVERY_MINUTE = """
name: One DM a minute
rate_limits: {dm: 1}
rules:
  - {id: dm_help, when: {types: [dm], keywords: [help]}, action: dm,
     message: "Thanks {{ actor.greeting }}! {{ links.join }}"}
"""


def test_on_postgresql_a_dm_moved_past_tiktoks_48_hours_by_another_workers_batch_is_withheld(
    rally, engine, example, monkeypatch
):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's one writer decides one batch at a time")
    with_rules(rally, example, DM_EVERY_MINUTE)
    wrote = T0 - timedelta(hours=48) + 30 * timedelta(seconds=1)  # 47 h 59 m 30 s ago
    push(engine, event("dm", "sam", "help?", at=wrote))

    def other_worker(store) -> None:
        push(store, event("dm", "kim", "help me", at=wrote))
        assert process(store).outcomes == {"queued": 1}  # takes this minute's one DM

    report = decide_meanwhile(engine, other_worker, monkeypatch)

    [kim, sam] = sorted(followups(engine), key=lambda f: f.status)
    assert (kim.status, kim.due_at) == ("queued", T0)
    assert sam.status == "withheld" and sam.outbox_id is None
    assert sam.reason is not None and sam.reason.startswith("too late: TikTok lets a business")
    assert report.outcomes == {"too late": 1}
    assert [m.payload["to"] for m in outbox(engine)] == ["@kim"]


CAPPED_DMS = """
name: A DM now and one the next day, one a day per person, one a minute
caps: {dm: {day: 1}}
rate_limits: {dm: 1}
rules:
  - {id: dm_now, when: {types: [dm], keywords: [help]}, action: dm,
     message: "Thanks! {{ links.join }}"}
  - {id: dm_tomorrow, when: {types: [dm], keywords: [register]}, action: dm,
     delay_minutes: 1440, message: "Registered yet? {{ links.join }}"}
"""


def test_on_postgresql_a_dm_moved_within_a_day_of_the_persons_next_by_another_worker_is_capped(
    rally, engine, example, monkeypatch
):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's one writer decides one batch at a time")
    with_rules(rally, example, CAPPED_DMS)
    push(engine, event("dm", "sam", "help me register"))  # now, and exactly a day on: allowed

    def other_worker(store) -> None:
        push(store, event("dm", "kim", "help"))
        assert process(store).outcomes == {"queued": 1}  # takes this minute's one DM

    report = decide_meanwhile(engine, other_worker, monkeypatch)

    with transaction(engine, write=False) as session:
        sam = session.exec(select(Contact.id).where(Contact.handle == "sam")).one()
    mine = {f.rule_id: f for f in followups(engine) if f.contact_id == sam}
    assert mine["dm_now"].status == "withheld"  # a minute on, 23 h 59 min before the next
    assert mine["dm_now"].reason == "capped: at most 1 dm a day per person"
    assert (mine["dm_tomorrow"].status, mine["dm_tomorrow"].due_at) == ("queued", T0 + 1440 * MIN)
    assert report.outcomes == {"capped": 1, "delayed": 1}
    assert sorted(m.payload["to"] for m in outbox(engine)) == ["@kim", "@sam"]


def test_stop_cancels_what_waits_withholds_later_dms_and_start_lets_them_flow(
    rally, engine, example
):
    with_rules(rally, example, TWO_DM_RULES.replace("day: 1", "day: 9"))
    push(engine, event("dm", "sam", "how can I help?"))
    process(engine)  # dm_help is due 10 minutes later
    waiting = followups(engine, "dm_help")[0]
    assert waiting.status == "queued"

    for minute, text in enumerate(["Stop messaging me", "STOP"], start=1):
        push(engine, event("dm", "sam", text, at=T0 + minute * MIN), now=T0 + minute * MIN)
        process(engine, T0 + minute * MIN)
    assert consent_of(engine, "sam") == {"dm": ConsentStatus.REVOKED}
    confirmations = outbox(engine, "consent")
    assert [m.payload["text"] for m in confirmations] == [
        "You're unsubscribed. Reply START to opt back in."
    ]
    assert confirmations[0].channel == "tiktok_dm" and confirmations[0].payload["to"] == "@sam"
    cancelled = followups(engine, "dm_help")[0]
    assert (cancelled.status, cancelled.reason) == ("cancelled", "opted out of dm")
    assert [m.status for m in outbox(engine)] == ["cancelled"]

    push(engine, event("dm", "sam", "how do I register", at=T0 + 3 * MIN), now=T0 + 3 * MIN)
    process(engine, T0 + 3 * MIN)
    withheld = followups(engine, "dm_register")[0]
    assert (withheld.status, withheld.reason) == ("withheld", "opted out of dm")

    for minute, text in ((4, "START"), (5, "register me")):
        push(engine, event("dm", "sam", text, at=T0 + minute * MIN), now=T0 + minute * MIN)
        process(engine, T0 + minute * MIN)
    assert consent_of(engine, "sam") == {"dm": ConsentStatus.GRANTED}
    assert [m.payload["text"] for m in outbox(engine, "consent")][1:] == ["Welcome back!"]
    assert followups(engine, "dm_register")[0].status == "queued"
    assert [m.status for m in outbox(engine)] == ["cancelled", "pending"]


def test_stop_variants_opt_out_of_dm_and_a_stop_inside_a_sentence_does_not(engine, applied):
    said = {
        "a": "unsubscribe",
        "b": "Stop messaging me",
        "c": "stop.",
        "d": "STOP",
        "e": "don't stop posting!",
    }
    push(engine, *[event("dm", actor, text) for actor, text in said.items()])
    process(engine)

    for actor in "abcd":
        assert consent_of(engine, actor) == {"dm": ConsentStatus.REVOKED}, said[actor]
    assert consent_of(engine, "e") == {}
    confirmations = Counter(m.payload["to"] for m in outbox(engine, "consent"))
    assert confirmations == {"@a": 1, "@b": 1, "@c": 1, "@d": 1}


def test_a_signup_without_sms_consent_gets_email_and_the_sms_says_why_not(rally, engine, applied):
    contact = {
        "name": "Pat Lee",
        "email": " Pat.Lee@Example.ORG ",
        "phone": "(215) 555-0123",
        "consent": {"email": "yes", "sms": "no"},
    }
    signup = event("signup", None, None, source="web", video=None, payload={"contact": contact})
    push(engine, signup)
    process(engine)

    sms = followups(engine, "welcome_signup_sms")[0]
    assert (sms.status, sms.reason) == ("withheld", "no consent for sms")
    assert followups(engine, "welcome_signup_email")[0].status == "queued"
    [email] = outbox(engine)
    assert email.channel == "email" and email.payload["to"] == "pat.lee@example.org"

    status = json.loads(rally("events", "status", SLUG, "--json").out)
    assert status["by_rule"]["welcome_signup_sms"] == {"no consent": 1}


def test_a_holdout_creators_audience_gets_tags_but_no_messages(engine, applied):
    with transaction(engine) as session:
        maya = session.exec(
            select(RosterMember.id)
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(Creator.handle == MAYA)
        ).one()
        session.execute(
            update(RosterMember).where(col(RosterMember.id) == maya).values(holdout=True)
        )
    push(engine, event(actor="held", text="I want to volunteer"))
    push(engine, event(actor="other", text="I want to volunteer", creator=JORDAN))
    process(engine)

    with transaction(engine, write=False) as session:
        tags = dict(session.exec(select(Contact.handle, Contact.tags)).all())
        rows = session.exec(
            select(Contact.handle, FollowUp.rule_id, FollowUp.status, FollowUp.reason).join(
                FollowUp, col(FollowUp.contact_id) == col(Contact.id)
            )
        ).all()
    decided = {(handle, rule): (status, reason) for handle, rule, status, reason in rows}
    status, reason = decided[("held", "thank_commenters")]
    assert status == "withheld" and reason and reason.startswith("holdout")
    assert tags["held"] == ["volunteer_prospect"]
    assert decided[("other", "thank_commenters")][0] == "queued"
    assert [m.payload["to"] for m in outbox(engine)] == ["@other"]


def test_two_comments_from_one_person_get_one_reply(engine, applied):
    push(engine, event(actor="fan"), event(actor="fan", text="Again!"))
    process(engine)
    push(engine, event(actor="fan", text="Third time", at=T0 + MIN), now=T0 + MIN)
    process(engine, T0 + MIN)

    assert [f.rule_id for f in followups(engine)] == ["thank_commenters"]
    assert len(outbox(engine)) == 1


def lines(*records: dict | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def test_a_jsonl_file_keeps_its_good_lines_and_names_each_bad_one(rally, engine, applied, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        lines(
            event(external_id="good-1"),
            event("like", external_id="good-2"),
            '{"type": "comment", "text": oops}',
            "[" * 50_000 + "]" * 50_000,  # nested past what a JSON reader goes into
            event("poke", external_id="bad-type"),
            event(creator="nobody.here", external_id="bad-creator"),
            event("share", external_id="good-3"),
            '{"type": "comment", "n": ' + "9" * 5001 + "}",  # past int's digit limit
            event(external_id="far", time=1e300),
            event(external_id="lone", actor="fan\ud800"),  # no text the store can keep
        )
    )
    with path.open("ab") as file:  # a line that is not UTF-8, then a good one after it
        file.write(b'{"type": "comment", "text": "caf\xe9"}\n')
        file.write((json.dumps(event(external_id="good-4")) + "\n").encode())
    run = rally("events", "ingest", path, "--no-process", "--json")
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert (report["received"], report["stored"]) == (12, 4)
    assert [e.split(": ")[:2] for e in report["errors"]] == [
        ["events.jsonl:3", "line"],
        ["events.jsonl:4", "line"],
        ["events.jsonl:5", "type"],
        ["events.jsonl:6", "creator"],
        ["events.jsonl:8", "line"],
        ["events.jsonl:9", "time"],
        ["events.jsonl:10", "line"],
        ["events.jsonl:11", "line"],
    ]
    with transaction(engine, write=False) as session:
        stored = set(session.exec(select(EngagementEvent.external_id)))
    assert stored == {"good-1", "good-2", "good-3", "good-4"}


def test_a_csv_file_keeps_its_good_rows_and_names_each_bad_one(rally, engine, applied, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "source,external_id,type,actor,creator,video,text,time\n"
        f"tiktok,r2,comment,fan,{MAYA},7001,Love it,2027-02-03T17:00:00Z\n"
        f"tiktok,r3,poke,fan,{MAYA},7001,,2027-02-03T17:00:00Z\n"
        "tiktok,r4,comment,fan,nobody.here,7001,Hi,2027-02-03T17:00:00Z\n"
        f"tiktok,r5,like,fan,{JORDAN},,,1801587600\n"
        f"tiktok,r6,comment,fan,{MAYA},7001,Hi,yesterday\n"
        "\n"  # a blank line still counts in the lines named after it
        f"tiktok,r8,comment,fan,{MAYA},7001,Hi, there,2027-02-03T17:00:00Z\n"  # a comma unquoted
        f'tiktok,r9,comment,fan,{MAYA},7001,"{"x" * 140_000}",2027-02-03T17:00:00Z\n'
        f"tiktok,r10,comment,fan,{MAYA},7001,Hi,2027-02-03T17:00:00Z\n"
    )
    with path.open("ab") as file:
        file.write(f"tiktok,r11,comment,fan,{MAYA},7001,caf\xe9,1801587600\n".encode("latin-1"))
        file.write(f"tiktok,r12,comment,fan,{MAYA},7001,Hi,1801587600\n".encode())
    report = json.loads(rally("events", "ingest", path, "--no-process", "--json").out)
    assert report["stored"] == 4
    assert [e.split(": ")[:2] for e in report["errors"]] == [
        ["events.csv:3", "type"],
        ["events.csv:4", "creator"],
        ["events.csv:6", "time"],
        ["events.csv:8", "row"],
        ["events.csv:9", "row"],
        ["events.csv:11", "row"],
    ]
    with transaction(engine, write=False) as session:
        stored = set(session.exec(select(EngagementEvent.external_id)))
    assert stored == {"r2", "r5", "r10", "r12"}


def test_the_folder_fallback_writes_each_due_reply_and_dm_once(settings, engine, applied):
    push(engine, event(actor="fan"), event("dm", "pal", "I want to volunteer"))
    process(engine)  # the DM is due a minute later, the reply two
    folder = settings.local_outbox

    early = deliver_followups(engine, settings, now=lambda: T0)
    assert sum(r.sent for r in early.values()) == 0 and not folder.exists()

    first = deliver_followups(engine, settings, now=lambda: T0 + 5 * MIN)
    again = deliver_followups(engine, settings, now=lambda: T0 + 10 * MIN)
    assert (first["tiktok_reply"].sent, first["tiktok_dm"].sent) == (1, 1)
    assert sum(r.sent for r in again.values()) == 0
    [reply] = [json.loads(p.read_text()) for p in (folder / "tiktok_reply").glob("*.json")]
    [dm] = [json.loads(p.read_text()) for p in (folder / "tiktok_dm").glob("*.json")]
    assert reply["to"] == "@fan" and reply["video_id"] == "7001" and "@fan" in reply["text"]
    assert dm["recipient"] == "pal" and f"{PUBLIC_URL}/join/{SLUG}" in dm["text"]
    sent = {f.rule_id: f.status for f in followups(engine) if f.channel in ("reply", "dm")}
    assert sent == {"thank_commenters": "sent", "volunteer_interest_dm": "sent"}


def test_a_message_still_waiting_when_quiet_hours_start_waits_for_morning(
    settings, engine, applied
):
    """A reply due at 8:58 pm New York time, the drain late (a worker down, a retry): at
    9:02 pm it goes back until 8 am, with no try counted, and goes then."""
    evening = datetime(2027, 2, 4, 1, 55, tzinfo=UTC)  # 8:55 pm in New York
    push(engine, event(actor="fan", at=evening), now=evening)
    process(engine, evening)
    [message] = outbox(engine)
    assert message.available_at.astimezone(NEW_YORK).strftime("%H:%M") == "20:57"
    assert message.payload["quiet"] == {
        "start": "21:00",
        "end": "08:00",
        "zone": "America/New_York",
    }

    late = deliver_followups(engine, settings, now=lambda: evening + 7 * MIN)["tiktok_reply"]
    assert (late.sent, late.retrying) == (0, 1)
    assert "quiet hours: not before 08:00 America/New_York" in late.errors[0]
    [message] = outbox(engine)
    assert message.available_at.astimezone(NEW_YORK).strftime("%d %H:%M") == "04 08:00"
    assert (message.status, message.attempts) == ("pending", 0)

    morning = datetime(2027, 2, 4, 13, 0, 30, tzinfo=UTC)  # 8:00:30 am
    assert deliver_followups(engine, settings, now=lambda: morning)["tiktok_reply"].sent == 1


def waiting(engine) -> list[str]:
    with transaction(engine, write=False) as session:
        query = select(EngagementEvent.type).where(col(EngagementEvent.processed_at).is_(None))
        return sorted(session.exec(query.order_by(col(EngagementEvent.id))))


def test_an_event_no_rule_fires_on_is_stored_processed(engine, applied):
    report = push(
        engine,
        event("like", text=None),
        event("link_click", text=None),
        event("comment"),
        event("follow", text=None),
    )
    assert report.stored == 4
    assert waiting(engine) == ["comment"]  # the default rules fire on no like, click or follow
    assert process(engine).events == 1


def test_what_the_rules_fire_on_waits_for_them_and_so_does_a_stop(rally, engine, example):
    with_rules(rally, example, CONDITIONS)  # rules on likes, shares and comments; none on DMs
    push(
        engine,
        event("like", text=None),
        event("share", text=None),
        event("link_click"),
        event("dm", text="hello"),
        event("dm", text="STOP"),
    )
    assert waiting(engine) == ["dm", "like", "share"]
    process(engine)
    assert consent_of(engine, "fan") == {"dm": ConsentStatus.REVOKED}


OVER_BUDGET_RULES = """
name: DM rules, two of them over their budget
rules:
  - {id: dm_again, when: {types: [dm], keywords: [again]}, action: dm,
     message: "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}"}
  - {id: dm_long, when: {types: [dm], keywords: [long]}, action: dm,
     message: "{% for i in range(500) %}{{ links.join }} {% endfor %}"}
  - {id: dm_register, when: {types: [dm], keywords: [register]}, action: dm,
     message: "Register here: {{ links.join }}"}
"""


def test_a_message_over_its_budget_is_withheld_saying_why_and_the_others_go(rally, engine, example):
    with_rules(rally, example, OVER_BUDGET_RULES)
    push(
        engine,
        event("dm", "ana", "again please"),
        event("dm", "bo", "a long one"),
        event("dm", "cy", "how do I register?"),
    )
    report = process(engine)
    assert report.events == 3
    reasons = {f.rule_id: (f.status, f.reason) for f in followups(engine)}
    assert reasons == {
        "dm_again": (
            "withheld",
            "cannot render: message: macros or includes nested too deep (one calls itself?)",
        ),
        "dm_long": ("withheld", "cannot render: message: output larger than 20 KB"),
        "dm_register": ("queued", None),
    }
    assert [m.channel for m in outbox(engine)] == ["tiktok_dm"]
