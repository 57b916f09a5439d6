"""Leads end to end on a real store: a signup queues its sync in the same transaction, the
file export and a signed webhook receive each lead once, consent travels and never comes back
by itself, dead letters are redriven after a fix, forgetting erases here and asks the
destinations to delete, and retention purges after the campaign ends."""

import csv
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select
from tenacity import wait_none

from store.audit import verify
from store.db import transaction
from store.models import AuditEvent, Contact, ContactConsent, EngagementEvent, OutboxMessage
from store.types import utcnow
from tasks.engagement.events import ingest
from tasks.engagement.processing import process_pending
from tasks.leads.forget import purge_expired
from tasks.leads.sync import sync_leads
from tests.conftest import SLUG
from tests.fakes.http_server import serving
from tests.fakes.lead_receiver import FakeLeadReceiver

_ids = itertools.count(1)


def signup(engine, now: datetime, **contact) -> None:
    """A signup from the campaign's form, through ingest and the rules, as in production."""
    contact.setdefault("consent", {})
    record = {
        "source": "web",
        "external_id": f"signup-{next(_ids)}",
        "type": "signup",
        "creator": "maya.votes.pa",
        "time": now.isoformat(),
        "payload": {"contact": contact},
    }
    assert ingest(engine, [("test:1", record)], now=now).errors == []
    process_pending(engine, now=now, public_url="https://rally.example.org")


def text_in(engine, now: datetime, phone: str, text: str) -> None:
    """A text message in from `phone` (STOP, START ...)."""
    record = {
        "source": "sms",
        "external_id": f"sms-{next(_ids)}",
        "type": "dm",
        "campaign": SLUG,
        "text": text,
        "time": now.isoformat(),
        "payload": {"contact": {"phone": phone}},
    }
    assert ingest(engine, [("test:1", record)], now=now).errors == []
    process_pending(engine, now=now, public_url="https://rally.example.org")


def lead_rows(engine) -> list[OutboxMessage]:
    with transaction(engine, write=False) as session:
        query = select(OutboxMessage).where(OutboxMessage.channel == "lead")
        return list(session.exec(query.order_by(col(OutboxMessage.id))))


def export(settings, name: str = "export", kind: str = "csv") -> dict[str, dict[str, str]]:
    path = settings.exports / SLUG / f"{name}.{kind}"
    if not path.exists():
        return {}
    with path.open(newline="") as file:
        if kind == "jsonl":
            rows = [json.loads(line) for line in file]
        else:
            rows = list(csv.DictReader(file))
    return {row["email"] or row["phone"]: row for row in rows}


def set_destinations(rally, folder: Path, block: str) -> None:
    """Replace the campaign file's destinations and apply it again."""
    campaign = folder / "campaign.yaml"
    text = campaign.read_text()
    start = text.index("destinations:")
    end = text.index("roster:", start)
    campaign.write_text(text[:start] + block.strip() + "\n" + text[end:])
    run = rally("campaign", "apply", campaign)
    assert run.code == 0, run.err


@pytest.fixture
def now() -> datetime:
    return utcnow().replace(microsecond=0)


def sync(engine, settings, now, **kwargs):
    return sync_leads(
        engine, settings, now=lambda: now + timedelta(seconds=1), wait=wait_none(), **kwargs
    )


def test_a_signup_queues_its_sync_and_later_changes_share_the_waiting_message(
    engine, settings, applied, now
):
    signup(engine, now, name="Ana Diaz", email="ana@example.org", consent={"email": "yes"})
    signup(engine, now, name="Ana M. Diaz", email="ANA@example.org", zip="19104")
    [row] = lead_rows(engine)
    assert (row.destination.split(":")[1], row.status) == ("export", "pending")

    report = sync(engine, settings, now)
    assert report[f"{SLUG}/export"].sent == 1
    ana = export(settings)["ana@example.org"]
    # The later form filled the ZIP she had not given, but did not rename her: a form is not
    # verified, so what a person gave before stays (and the difference is audited).
    assert (ana["given_name"], ana["family_name"], ana["postal_code"]) == ("Ana", "Diaz", "19104")
    assert ana["email_status"] == "subscribed" and ana["sms_status"] == ""
    assert ana["campaign"] == SLUG and ana["creator"] == "maya.votes.pa"

    signup(engine, now, email="ana@example.org", phone="215-555-0101")  # a change after the sync
    assert [r.status for r in lead_rows(engine)] == ["sent", "pending"]
    sync(engine, settings, now)
    assert export(settings)["ana@example.org"]["phone"] == "+12155550101"
    assert len(export(settings)) == 1


def test_an_opt_out_travels_as_unsubscribed_and_a_later_form_does_not_resubscribe(
    engine, settings, applied, now
):
    signup(engine, now, email="lee@example.org", phone="2155550142", consent={"sms": "yes"})
    sync(engine, settings, now)
    assert export(settings)["lee@example.org"]["sms_status"] == "subscribed"

    text_in(engine, now, "+12155550142", "STOP")
    sync(engine, settings, now)
    assert export(settings)["lee@example.org"]["sms_status"] == "unsubscribed"

    signup(engine, now, email="lee@example.org", zip="19120", consent={"sms": "yes"})
    sync(engine, settings, now)
    lee = export(settings)["lee@example.org"]
    assert (lee["sms_status"], lee["postal_code"]) == ("unsubscribed", "19120")

    text_in(engine, now, "+12155550142", "START")  # only the person's own START opts back in
    sync(engine, settings, now)
    assert export(settings)["lee@example.org"]["sms_status"] == "subscribed"


def test_a_form_value_that_looks_like_a_formula_is_not_a_formula_in_the_csv(
    engine, settings, applied, now
):
    signup(engine, now, name="=HYPERLINK(evil) Smith", email="x@example.org")
    sync(engine, settings, now)
    path = settings.exports / SLUG / "export.csv"
    assert "'=HYPERLINK(evil)" in path.read_text()
    signup(engine, now, email="x@example.org", zip="19104")
    sync(engine, settings, now)
    assert "''=" not in path.read_text()  # rewriting the file keeps one apostrophe


@pytest.mark.parametrize("name", ["-1+1|cmd /c calc", "+1+cmd|' /C calc'!A0", "-HYPERLINK()"])
def test_a_sign_that_leads_a_formula_is_escaped_and_one_that_leads_a_number_is_not(
    engine, settings, applied, now, name
):
    signup(engine, now, name=name, email="y@example.org", phone="+1 215-555-0143")
    sync(engine, settings, now)
    row = export(settings)["y@example.org"]
    assert row["given_name"] + " " + row["family_name"] in (f"'{name}", f"'{name} ")
    assert row["phone"] in ("+12155550143", "+1 215-555-0143")  # a number, as it was


@pytest.fixture
def receiver(monkeypatch) -> Iterator[FakeLeadReceiver]:
    fake = FakeLeadReceiver()
    monkeypatch.setenv("RALLY_LEAD_WEBHOOK_SECRET", fake.secret)
    yield from serving(fake)


@pytest.fixture
def hooked(rally, applied, receiver, settings) -> FakeLeadReceiver:
    from config.settings import get_settings

    set_destinations(
        rally,
        applied,
        f"""
destinations:
  - name: crm_hook
    type: webhook
    batch_size: 10
    tags: [rally]
    tag_by: [source]
    mapping: {{segment: audience, first_seen: joined_at}}
    options: {{url: "{receiver.url}{receiver.path}"}}
""",
    )
    get_settings.cache_clear()
    return receiver


def test_the_webhook_gets_signed_batches_with_mapped_fields_and_tags(engine, hooked, now):
    from config.settings import get_settings

    for i in range(12):
        signup(engine, now, email=f"p{i}@example.org", consent={"email": "yes"})
    reports = sync(engine, get_settings(), now)
    assert reports[f"{SLUG}/crm_hook"].sent == 12
    assert len(hooked.requests) == 2  # batches of 10
    lead = next(v for v in hooked.leads.values() if v["email"] == "p3@example.org")
    assert lead["tags"].split(";")[0] == "rally"
    assert "joined_at" in lead and lead["email_status"] == "subscribed"


def test_a_5xx_is_retried_and_a_refused_lead_is_dead_until_fixed_and_retried(
    engine, hooked, now, rally
):
    from config.settings import get_settings

    for i in range(3):
        signup(engine, now, email=f"q{i}@example.org")
    hooked.fail_next(2, status=503)
    hooked.refused["q1@example.org"] = "email domain is blocked"
    report = sync(engine, get_settings(), now)[f"{SLUG}/crm_hook"]
    assert (report.sent, report.dead) == (2, 1)
    assert sorted(v["email"] for v in hooked.leads.values()) == ["q0@example.org", "q2@example.org"]
    status = json.loads(rally("leads", "status", "--json").out)
    assert status == [
        {
            "campaign": SLUG,
            "destination": "crm_hook",
            "pending": 0,
            "failed": 0,
            "sent": 2,
            "dead": 1,
            "cancelled": 0,
            "subscriptions": {},  # a webhook does not answer with a status
        }
    ]
    [dead] = [r for r in lead_rows(engine) if r.status == "dead"]
    assert "email domain is blocked" in (dead.last_error or "")

    del hooked.refused["q1@example.org"]
    assert json.loads(rally("leads", "retry", "--dead", "--json").out) == {"queued": 1}
    report = sync(engine, get_settings(), utcnow())[f"{SLUG}/crm_hook"]
    assert report.sent == 1
    assert len(hooked.leads) == 3


def test_a_webhook_url_the_receiver_does_not_have_stops_it_and_nobody_is_dead(
    engine, rally, applied, receiver, now
):
    from config.settings import get_settings

    block = f"""
destinations:
  - name: crm_hook
    type: webhook
    options: {{url: "{receiver.url}/hooks/elsewhere"}}
"""
    set_destinations(rally, applied, block)
    get_settings.cache_clear()
    for i in range(2):
        signup(engine, now, email=f"w{i}@example.org")

    report = sync(engine, get_settings(), now)[f"{SLUG}/crm_hook"]

    assert report.stopped is not None and "webhook crm_hook" in report.stopped
    assert "HTTP 404" in report.stopped
    assert (report.sent, report.dead) == (0, 0)
    assert [r.status for r in lead_rows(engine)] == ["pending", "pending"]


def test_leads_check_says_what_it_verified_for_an_export_and_a_webhook(
    rally, applied, receiver, settings
):
    from config.settings import get_settings

    block = f"""
destinations:
  - name: export
    type: csv
  - name: crm_hook
    type: webhook
    options: {{url: "{receiver.url}{receiver.path}"}}
  - name: later
    type: jsonl
    enabled: false
"""
    set_destinations(rally, applied, block)
    get_settings.cache_clear()

    run = rally("leads", "check", SLUG)

    assert run.code == 0, run.out
    lines = run.out.splitlines()
    assert any(line.startswith("export (csv): ready") and "exports" in line for line in lines)
    assert any(line.startswith("crm_hook (webhook): ready") for line in lines)
    assert any(line.startswith("later (jsonl): disabled") for line in lines)
    assert receiver.requests == []  # a webhook has no call that only reads: nothing is sent
    assert (settings.exports / SLUG).is_dir()

    settings.exports.mkdir(parents=True, exist_ok=True)
    (settings.exports / SLUG).rmdir()
    (settings.exports / SLUG).write_text("not a folder")
    run = rally("leads", "check", SLUG)
    assert run.code == 1 and any(
        line.startswith("export (csv): ") and "cannot write" in line
        for line in run.out.splitlines()
    )


def test_forget_erases_the_person_here_and_deletes_them_where_they_were_synced(
    engine, settings, hooked, now, rally
):
    from config.settings import get_settings

    signup(engine, now, name="Sam Roe", email="sam@example.org", phone="2155550199")
    signup(engine, now, name="Kim Poe", email="kim@example.org")
    sync(engine, get_settings(), now)
    assert len(hooked.leads) == 2

    run = rally("leads", "forget", "SAM@example.org", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["deletions_queued"] == ["crm_hook"]
    with transaction(engine, write=False) as session:
        sam = session.exec(select(Contact).where(col(Contact.erased_at).is_not(None))).one()
        assert (sam.email, sam.phone, sam.given_name, sam.handle) == (None, None, None, None)
        events = session.exec(
            select(EngagementEvent).where(EngagementEvent.contact_id == sam.id)
        ).all()
        assert events and all(e.payload == {} for e in events)
        assert "sam@example.org" not in json.dumps(
            [r.payload for r in session.exec(select(OutboxMessage))]
        )
        entry = session.exec(select(AuditEvent).where(AuditEvent.action == "lead.forgotten")).one()
        assert "sam" not in entry.summary.lower()
        assert verify(session).ok

    sync(engine, get_settings(), utcnow())  # the deletion was queued just now
    assert [v["email"] for v in hooked.leads.values()] == ["kim@example.org"]
    assert hooked.forgotten == [f"rally-{sam.id}"]
    assert rally("leads", "forget", "sam@example.org").code != 0  # nobody left by that email
    listed = json.loads(rally("leads", "list", SLUG, "--json").out)
    assert [lead["email"] for lead in listed] == ["kim@example.org"]


def test_forget_erases_events_still_waiting_for_the_rules_so_none_makes_the_person_again(
    engine, applied, now, rally
):
    """Sam signs up and is forgotten while a text from them and a second signup of theirs
    wait for the rules: those events lose what they said, and the rules neither make Sam
    again nor answer them."""
    signup(engine, now, name="Sam Roe", email="sam@example.org", phone="2155550199")
    waiting = [
        {"source": "sms", "external_id": "sms-waiting", "type": "dm", "campaign": SLUG,
         "text": "I want to volunteer", "time": now.isoformat(),
         "payload": {"contact": {"phone": "(215) 555-0199"}}},
        {"source": "web", "external_id": "signup-waiting", "type": "signup",
         "creator": "maya.votes.pa", "time": now.isoformat(),
         "payload": {"contact": {"email": "Sam@Example.org", "consent": {"email": True}}}},
        {"source": "web", "external_id": "someone-else", "type": "signup",
         "creator": "maya.votes.pa", "time": now.isoformat(),
         "payload": {"contact": {"email": "kim@example.org", "consent": {}}}},
    ]  # fmt: skip
    assert ingest(engine, [(f"w:{i}", r) for i, r in enumerate(waiting)], now=now).errors == []
    assert rally("leads", "forget", "sam@example.org").code == 0
    with transaction(engine, write=False) as session:
        events = {e.external_id: e for e in session.exec(select(EngagementEvent))}
    assert events["sms-waiting"].payload == events["signup-waiting"].payload == {}
    assert events["sms-waiting"].text is None
    assert events["someone-else"].payload["contact"]["email"] == "kim@example.org"
    queued = len(stored_outbox(engine))
    process_pending(engine, now=now, public_url="https://rally.example.org")
    with transaction(engine, write=False) as session:
        people = session.exec(select(Contact).where(col(Contact.erased_at).is_(None))).all()
    assert [p.email for p in people] == ["kim@example.org"]  # Sam is not made again
    assert "sam@example.org" not in json.dumps([m.payload for m in stored_outbox(engine)])
    assert len(stored_outbox(engine)) > queued  # Kim's welcome, Kim's lead


def stored_outbox(engine) -> list[OutboxMessage]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(OutboxMessage)))


def test_retention_purges_leads_only_after_the_campaign_ended_plus_its_days(
    engine, settings, applied, rally, now
):
    campaign = applied / "campaign.yaml"
    campaign.write_text(campaign.read_text().replace("roster:", "retention_days: 30\nroster:"))
    assert rally("campaign", "apply", campaign).code == 0
    signup(engine, now, email="old@example.org")
    ends = datetime(2027, 2, 1, tzinfo=UTC) + timedelta(weeks=12)
    assert purge_expired(engine, now=ends + timedelta(days=29)) == 0
    assert purge_expired(engine, now=ends + timedelta(days=30)) == 1
    with transaction(engine, write=False) as session:
        assert (
            session.exec(select(Contact).where(Contact.email == "old@example.org")).first() is None
        )


def test_leads_list_shows_consent_source_and_sync_state(engine, settings, applied, rally, now):
    signup(engine, now, name="Ana Diaz", email="ana@example.org", consent={"email": "yes"})
    run = rally("leads", "list", SLUG)
    assert run.code == 0 and "ana@example.org" in run.out and "export pending" in run.out
    run = rally("leads", "sync")
    assert run.code == 0, run.err
    assert f"{SLUG}/export: 1 sent" in run.out
    [lead] = json.loads(rally("leads", "list", SLUG, "--json").out)
    assert lead["consent"] == {"email": "granted"} and lead["sync"] == {"export": "sent"}
    assert lead["creator"] == "maya.votes.pa"


def test_a_destination_without_credentials_says_which_setting_and_keeps_the_leads(
    engine, applied, rally, now
):
    set_destinations(
        rally,
        applied,
        "destinations:\n  - name: hub\n    type: hubspot\n  - name: export\n    type: csv\n",
    )
    signup(engine, now, email="ana@example.org")
    run = rally("leads", "sync")
    assert run.code == 1
    assert "RALLY_HUBSPOT_TOKEN" in run.out and f"{SLUG}/export: 1 sent" in run.out
    status = {r["destination"]: r for r in json.loads(rally("leads", "status", "--json").out)}
    assert status["hub"]["pending"] == 1


def test_an_unknown_lead_field_in_a_mapping_is_named_when_applying(rally, applied):
    campaign = applied / "campaign.yaml"
    text = campaign.read_text().replace(
        "    type: csv\n", "    type: csv\n    mapping: {zipcode: zip}\n"
    )
    campaign.write_text(text)
    run = rally("campaign", "apply", campaign)
    assert run.code != 0
    assert "zipcode" in run.err and "postal_code" in run.err


def test_a_form_with_someones_email_changes_none_of_their_details_nor_their_texts(
    engine, settings, applied, now
):
    signup(engine, now, name="Pat Lee", email="pat@example.org", phone="2155550150", zip="19121")
    signup(engine, now, name="Mallory X", email="PAT@example.org", phone="2155550199",
           zip="10001", consent={"sms": "yes"})  # fmt: skip
    with transaction(engine, write=False) as session:
        (pat,) = session.exec(select(Contact)).all()
        consents = session.exec(select(ContactConsent)).all()
        withheld = session.exec(
            select(AuditEvent).where(AuditEvent.action == "contact.change_withheld")
        ).all()
    assert (pat.given_name, pat.family_name, pat.phone_normalized, pat.postal_code) == (
        "Pat", "Lee", "+12155550150", "19121"
    )  # fmt: skip
    assert consents == []  # no texts granted to the phone on record by someone else's form
    assert len(withheld) == 1 and withheld[0].changes == {
        "fields": ["family_name", "given_name", "phone", "postal_code"]
    }
    assert "2155550199" not in withheld[0].summary  # the audit names fields, not values
