"""Each CRM and volunteer system through the whole sync path (queue, drain, connector, fake
over loopback): a 5xx and a 429 are retried and end delivered, a person the remote refuses is
a dead letter with the remote's words while the others go, and after the fix `rally leads retry
--dead` sends them. The registry builds every type the campaign file takes, from settings in
the environment or `.env`, and names the setting a destination lacks."""

import inspect
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from config.campaign import Destination
from config.settings import Settings, get_settings
from integrations.destinations import DESTINATIONS, Api
from integrations.lead_files import FileExport
from store.audit import verify
from store.db import transaction
from store.models import AuditEvent, Campaign, Contact
from store.types import utcnow
from tasks.leads.sync import NotConfigured, connector_for, in_flight, sync_leads
from tests.conftest import SLUG
from tests.fakes.action_network_api import FakeActionNetwork
from tests.fakes.http_server import Remote, serving
from tests.fakes.hubspot_api import GDPR_DELETE, FakeHubSpot
from tests.helpers import HUBSPOT_PROPERTIES, make_leads
from tests.integration.test_leads import set_destinations, signup


def remotes() -> dict[str, Remote]:
    """Every registered API destination type's fake (`tests/fakes/<type>_api.py`, its `REMOTE`);
    the lead webhook has a receiver of its own (`tests/integration/test_leads.py`)."""
    return {
        kind: import_module(f"tests.fakes.{kind}_api").REMOTE
        for kind, entry in DESTINATIONS.items()
        if isinstance(entry, Api) and kind != "webhook"
    }


REMOTES = remotes()


@pytest.fixture(params=sorted(REMOTES))
def remote(request, rally, applied, monkeypatch) -> Iterator[tuple[str, Any]]:
    kind = request.param
    spec = REMOTES[kind]
    for fake in serving(spec.fake()):
        for name, value in spec.env(fake).items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        block = f"destinations:\n  - name: crm\n    type: {kind}\n" + spec.options(fake)
        set_destinations(rally, applied, block)
        run = rally("leads", "check", SLUG, "--create-missing")  # HubSpot's properties, say
        assert run.code == 0, run.out + run.err
        yield kind, fake


def sync(engine) -> Any:
    return sync_leads(engine, get_settings(), now=utcnow)[f"{SLUG}/crm"]


def test_retries_end_delivered_and_a_refused_person_is_redriven_after_the_fix(
    engine, rally, remote
):
    kind, fake = remote
    make_leads(engine, SLUG, 3, prefix=f"{kind}-")
    emails = [f"{kind}-{i}@example.org" for i in range(3)]
    fake.fail_next(1, status=503)
    fake.fail_next(1, status=429, headers={"Retry-After": "0"})
    reject = getattr(fake, "reject_email", None) or fake.reject
    accept = getattr(fake, "accept_email", None) or fake.accept
    reject(emails[1], "this address bounced before")

    report = sync(engine)
    assert (report.sent, report.dead, report.retrying) == (2, 1, 0), report.errors
    holds = REMOTES[kind].holds
    assert [holds(fake, e) for e in emails] == [True, False, True]
    assert any("this address bounced before" in e for e in report.errors)

    accept(emails[1])
    run = rally("leads", "retry", "--dead", "--destination", "crm")
    assert run.code == 0 and "1 dead letter" in run.out
    report = sync(engine)
    assert (report.sent, report.dead) == (1, 0)
    assert all(holds(fake, e) for e in emails)


def test_a_destination_at_a_wrong_api_address_stops_with_its_reason_and_nobody_is_dead(
    engine, rally, remote, monkeypatch
):
    kind, fake = remote
    for name, value in REMOTES[kind].env(fake).items():
        if name.endswith("_API_URL"):  # a base the API has no such route under
            monkeypatch.setenv(name, value + "/api/v9")
    get_settings.cache_clear()
    make_leads(engine, SLUG, 3, prefix=f"{kind}-")

    report = sync(engine)

    assert report.stopped is not None and " crm" in report.stopped, report.errors
    assert "HTTP 404" in report.stopped and "API URL" in report.stopped
    assert (report.sent, report.dead, report.retrying) == (0, 0, 0)
    run = rally("leads", "status", "--json")
    [row] = json.loads(run.out)
    assert (row["pending"], row["failed"], row["dead"]) == (3, 0, 0)


def test_leads_check_reads_each_destination_once_and_names_refused_credentials(
    rally, remote, monkeypatch
):
    kind, fake = remote
    seen = len(fake.requests)
    run = rally("leads", "check", SLUG)
    assert run.code == 0, run.out + run.err
    assert f"crm ({kind}): ready" in run.out
    assert {r.method for r in fake.requests[seen:]} == {"GET"}

    secrets = [name for name in REMOTES[kind].env(fake) if name.endswith(("_TOKEN", "_API_KEY"))]
    for name in secrets:
        monkeypatch.setenv(name, "wrong-secret-0000")
    get_settings.cache_clear()
    run = rally("leads", "check", SLUG)
    assert run.code == 1
    [line] = [line for line in run.out.splitlines() if line.startswith(f"crm ({kind}): ")]
    assert "credentials" in line and "wrong-secret-0000" not in run.out
    [checked] = json.loads(rally("leads", "check", SLUG, "--json").out)
    assert (checked["destination"], checked["type"], checked["ready"]) == ("crm", kind, False)
    assert "credentials" in checked["problems"][0]


def test_every_registered_type_gives_its_connector_what_it_takes():
    for kind in DESTINATIONS.values():
        fields = set(kind.settings.model_fields)
        assert set(kind.settings.required) <= fields
        if isinstance(kind, Api):
            taken = set(inspect.signature(kind.connector).parameters)
            assert {"name", "limit", "options", *fields} <= taken, kind.connector


NEEDS = {
    "webhook": "RALLY_LEAD_WEBHOOK_SECRET",
    "action_network": "RALLY_ACTION_NETWORK_TOKEN",
    "hubspot": "RALLY_HUBSPOT_TOKEN",
    "mobilize": "RALLY_MOBILIZE_TOKEN",
    "nationbuilder": "RALLY_NATIONBUILDER_API_URL",
    "ngpvan": "RALLY_NGPVAN_APP_NAME",
}
OPTIONS: dict[str, dict[str, Any]] = {
    "webhook": {"url": "http://127.0.0.1:9/leads"},
    "mobilize": {"organization_id": 1, "event_id": 2, "timeslot_ids": [3]},
}


@pytest.fixture
def bare(tmp_path: Path, monkeypatch) -> Settings:
    """Settings with no destination configured: no `.env`, no destination variables."""
    monkeypatch.chdir(tmp_path)
    for kind in DESTINATIONS.values():
        for name in kind.settings.variables():
            monkeypatch.delenv(name, raising=False)
    return Settings(home=tmp_path / "home", _env_file=None)


def build(settings: Settings, kind: str, **fields: Any):
    """The connector of destination `crm` of type `kind` (as stored, not checked again)."""
    destination = Destination.model_construct(**{"name": "crm", "type": kind, **fields})
    stored: dict[str, Any] = {"slug": SLUG}  # all that building a connector reads
    with httpx.Client() as client:
        return connector_for(destination, Campaign.model_construct(**stored), settings, client)


@pytest.mark.parametrize("kind", sorted(NEEDS))
def test_a_destination_without_its_settings_names_the_variable_to_set(bare, kind):
    with pytest.raises(NotConfigured) as caught:
        build(bare, kind, options=OPTIONS.get(kind, {}))
    assert str(caught.value) == f"destination crm: set {NEEDS[kind]} to sync leads to it"


def test_what_a_destination_lacks_or_gets_wrong_is_named(bare, monkeypatch):
    with pytest.raises(NotConfigured, match=r"^destination crm: options\.url is not set$"):
        build(bare, "webhook")
    monkeypatch.setenv("RALLY_MOBILIZE_TOKEN", "t")
    with pytest.raises(NotConfigured, match="needs options: organization_id"):
        build(Settings(_env_file=None), "mobilize")
    monkeypatch.setenv("RALLY_NGPVAN_MODE", "many")
    with pytest.raises(NotConfigured, match=r"^destination crm: RALLY_NGPVAN_MODE: Input should"):
        build(Settings(_env_file=None), "ngpvan")


def test_file_exports_need_no_settings_and_write_under_the_campaigns_folder(bare):
    for kind in ("csv", "jsonl"):
        export = build(bare, kind, batch_size=7)
        assert isinstance(export, FileExport) and export.batch_size == 7
        assert export.path == bare.exports / SLUG / f"crm.{kind}"


def test_a_crms_credentials_can_come_from_dotenv(engine, rally, applied, monkeypatch):
    for fake in serving(FakeHubSpot()):
        monkeypatch.delenv("RALLY_HUBSPOT_API_URL", raising=False)
        monkeypatch.delenv("RALLY_HUBSPOT_TOKEN", raising=False)
        Path(".env").write_text(
            f"RALLY_HUBSPOT_API_URL={fake.url}\nRALLY_HUBSPOT_TOKEN={fake.token}\n"
        )
        set_destinations(rally, applied, "destinations:\n  - name: crm\n    type: hubspot\n")
        get_settings.cache_clear()
        assert rally("leads", "check", SLUG, "--create-missing").code == 0
        make_leads(engine, SLUG, 2, prefix="dotenv-")
        report = sync(engine)
        assert (report.sent, report.dead) == (2, 0), report.errors
        assert "dotenv-0@example.org" in fake.contacts


HAL = "application/hal+json"


@pytest.fixture
def to_action_network(rally, applied, monkeypatch) -> Iterator[FakeActionNetwork]:
    for fake in serving(FakeActionNetwork(rate=None)):
        monkeypatch.setenv("RALLY_ACTION_NETWORK_API_URL", fake.url)
        monkeypatch.setenv("RALLY_ACTION_NETWORK_TOKEN", fake.token)
        get_settings.cache_clear()
        set_destinations(rally, applied, "destinations:\n  - name: crm\n    type: action_network\n")
        yield fake


def test_action_networks_own_status_is_recorded_and_a_difference_from_what_was_sent_audited(
    engine, rally, to_action_network
):
    group, now = to_action_network, utcnow()
    kim = group.add(email_addresses=[{"address": "kim@example.org", "status": "unsubscribed"}])
    group.add(email_addresses=[{"address": "lee@example.org", "status": "unsubscribed"}])
    signup(engine, now, email="kim@example.org", consent={"email": "yes"})
    # Whatever keeps her so there, Action Network answers that Kim is unsubscribed although
    # Rally sent her as subscribed: Rally believes the answer.
    group.fail_next(1, body=group.resource(kim), status=200, headers={"Content-Type": HAL})
    assert sync(engine).sent == 1
    assert group.requests[-1].json["person"]["email_addresses"][0]["status"] == "subscribed"
    signup(engine, now, email="lee@example.org")  # no consent on record: no status sent
    assert sync(engine).sent == 1

    leads = json.loads(rally("leads", "list", SLUG, "--json").out)
    listed = {lead["email"]: lead for lead in leads}
    assert listed["kim@example.org"]["subscriptions"] == {"crm": {"email": "unsubscribed"}}
    assert listed["lee@example.org"]["subscriptions"] == {"crm": {"email": "unsubscribed"}}
    assert listed["kim@example.org"]["sync"] == {"crm": "sent"}
    shown = rally("leads", "list", SLUG).out
    assert "crm sent (email unsubscribed)" in shown and "(email subscribed)" not in shown
    [row] = json.loads(rally("leads", "status", "--json").out)
    assert row["subscriptions"] == {"email": {"unsubscribed": 2}}
    assert "email: 2 unsubscribed" in rally("leads", "status").out

    with transaction(engine, write=False) as session:
        entries = session.exec(
            select(AuditEvent).where(AuditEvent.action == "lead.subscription_differs")
        ).all()
        [contact_id] = [
            c.id for c in session.exec(select(Contact).where(Contact.email == "kim@example.org"))
        ]
        assert verify(session).ok
    [entry] = entries  # Lee was sent no status: nothing differs from what Rally sent
    assert entry.entity_id == str(contact_id)
    assert entry.changes == {
        "destination": "crm",
        "channel": "email",
        "sent": "subscribed",
        "there": "unsubscribed",
    }
    assert "crm" in entry.summary and "unsubscribed" in entry.summary


@pytest.fixture
def new_hubspot(rally, applied, monkeypatch) -> Iterator[FakeHubSpot]:
    """A HubSpot account with its own contact properties only, as a campaign's destination."""
    for fake in serving(FakeHubSpot(rate=None)):
        monkeypatch.setenv("RALLY_HUBSPOT_API_URL", fake.url)
        monkeypatch.setenv("RALLY_HUBSPOT_TOKEN", fake.token)
        get_settings.cache_clear()
        block = (
            "destinations:\n  - name: crm\n    type: hubspot\n"
            "    mapping: {segment: rally_segment}\n"
        )
        set_destinations(rally, applied, block)
        yield fake


def test_a_hubspot_account_lacking_rallys_properties_is_named_by_the_check_and_waits(
    engine, rally, new_hubspot
):
    run = rally("leads", "check", SLUG)
    assert run.code == 1
    assert "crm (hubspot)" in run.out and "--create-missing" in run.out
    for name in ("rally_tags", "rally_email_consent", "rally_campaign", "rally_segment"):
        assert name in run.out
    assert new_hubspot.property("rally_tags") is None

    make_leads(engine, SLUG, 2, prefix="hub-")
    report = sync(engine)
    assert report.stopped is not None and "PROPERTY_DOESNT_EXIST" in report.stopped
    assert (report.sent, report.dead) == (0, 0) and new_hubspot.contacts == {}

    run = rally("leads", "check", SLUG, "--create-missing")
    assert run.code == 0, run.out
    assert "created" in run.out and "rally_segment" in run.out
    assert rally("leads", "check", SLUG).code == 0
    report = sync(engine)
    assert (report.sent, report.dead) == (2, 0), report.errors
    contact = new_hubspot.contact("hub-0@example.org")
    assert contact is not None and contact["properties"]["rally_campaign"] == SLUG


@pytest.fixture
def far_hubspot(rally, applied, monkeypatch) -> Iterator[FakeHubSpot]:
    """A HubSpot account with Rally's properties, whose calls a test holds in flight."""
    for fake in serving(FakeHubSpot(rate=None, properties=HUBSPOT_PROPERTIES)):
        monkeypatch.setenv("RALLY_HUBSPOT_API_URL", fake.url)
        monkeypatch.setenv("RALLY_HUBSPOT_TOKEN", fake.token)
        get_settings.cache_clear()
        yield fake


@pytest.mark.parametrize("in_flight", [3, None])
def test_a_remote_far_away_gets_as_many_calls_at_once_as_the_destination_allows(
    engine, rally, applied, far_hubspot, in_flight
):
    """Each answer takes long across the internet, so one call at a time would leave most of
    HubSpot's rate unused: the calls the campaign file allows (else as many as keep HubSpot's
    100 per 10 s busy) go at once, never more, and every lead goes exactly once."""
    allowed = in_flight or 10
    block = "destinations:\n  - name: crm\n    type: hubspot\n    batch_size: 10\n"
    block += f"    in_flight: {in_flight}\n" if in_flight else ""
    set_destinations(rally, applied, block)
    far_hubspot.hold_until_in_flight(allowed)  # answers none until that many are in flight
    make_leads(engine, SLUG, 10 * allowed + 25, prefix="far-")

    report = sync(engine)

    assert (report.sent, report.dead, report.errors) == (10 * allowed + 25, 0, [])
    assert far_hubspot.most_in_flight == allowed
    upserts = far_hubspot.requests_to("/crm/v3/objects/contacts/batch/upsert")
    assert len(upserts) == allowed + 3  # batches of 10, none sent twice
    assert len(far_hubspot.contacts) == 10 * allowed + 25


def test_calls_at_once_follow_the_rate_and_the_campaign_files_say():
    hubspot = Destination(name="crm", type="hubspot")
    assert in_flight(hubspot, DESTINATIONS["hubspot"].rate) == 10  # 100 per 10 s, 1 s each
    assert in_flight(Destination(name="an", type="action_network"), (4, 1.0)) == 4
    assert in_flight(Destination(name="out", type="csv"), None) == 1
    fast = Destination.model_validate({"name": "crm", "type": "hubspot", "rate": RATE_1000})
    assert in_flight(fast, DESTINATIONS["hubspot"].rate) == 10  # never more than ten
    own = Destination(name="crm", type="hubspot", in_flight=2)
    assert in_flight(own, DESTINATIONS["hubspot"].rate) == 2
    with pytest.raises(ValueError, match="in_flight"):
        Destination(name="crm", type="hubspot", in_flight=0)


RATE_1000 = {"requests": 1000, "per_seconds": 1}


def two_messages_for_one_person(engine, rally, applied, in_flight: int) -> None:
    """A destination taking one message a call, and a person with two messages waiting, as
    when they changed again while the first was being sent."""
    from tasks.leads.records import UPSERT, destination_key, sync_message
    from tasks.outbox import enqueue

    block = "destinations:\n  - name: crm\n    type: hubspot\n    batch_size: 1\n"
    set_destinations(rally, applied, block + f"    in_flight: {in_flight}\n")
    [person] = make_leads(engine, SLUG, 1, prefix="once-")
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        assert campaign.id is not None
        again = sync_message(
            destination_key(campaign.id, "crm"), person, {"action": UPSERT}, now=utcnow()
        )
        assert enqueue(session, [again]) == 1


def test_one_persons_messages_go_one_after_the_other_whatever_the_calls_at_once(
    engine, rally, applied, far_hubspot
):
    """Two lanes of a drain never send one person's messages at once: the second is left
    until the first is recorded, so it reads the person as the first left them (and an
    erasure is never overtaken by an upsert that left before it)."""
    two_messages_for_one_person(engine, rally, applied, in_flight=2)
    far_hubspot.hold_seconds = 1.0  # how long the fake waits for a second call at once
    far_hubspot.hold_until_in_flight(2)

    report = sync(engine)

    assert (report.sent, report.dead) == (2, 0), report.errors
    assert far_hubspot.most_in_flight == 1  # never both at once
    assert len(far_hubspot.requests_to("/crm/v3/objects/contacts/batch/upsert")) == 2


def test_a_drain_passes_over_a_person_another_drain_is_sending(engine, rally, applied, far_hubspot):
    """Two drains at once, as on two machines, share nothing but the store: while one sends a
    person's message, the other leaves that person's next message alone, and the first sends
    it once its call is answered."""
    two_messages_for_one_person(engine, rally, applied, in_flight=1)
    far_hubspot.hold_until_in_flight(2)  # the first call waits for a second one at once

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(sync, engine)
        far_hubspot.wait_for_in_flight(1)
        other = sync(engine)
        far_hubspot.open_gate()
        report = first.result(timeout=60)

    assert (other.sent, other.dead, other.errors) == (0, 0, [])  # nothing it could take
    assert (report.sent, report.dead) == (2, 0), report.errors
    assert far_hubspot.most_in_flight == 1
    assert len(far_hubspot.requests_to("/crm/v3/objects/contacts/batch/upsert")) == 2


def test_an_erasure_waits_for_the_persons_upsert_already_on_its_way(
    engine, rally, applied, far_hubspot
):
    """A person is forgotten while a change of theirs is being sent: the upsert, withdrawn, is
    still on its way, so their erasure is not sent beside it by another drain (it could reach
    HubSpot first and be undone by the upsert); it goes once the upsert is answered."""
    from tasks.leads.forget import forget

    two_messages_for_one_person(engine, rally, applied, in_flight=1)
    first = sync_leads(engine, get_settings(), now=utcnow, limit=1)[f"{SLUG}/crm"]
    assert first.sent == 1  # synced before: HubSpot knows them by id
    far_hubspot.hold_until_in_flight(2)  # the change waits for a second call at once

    with ThreadPoolExecutor(1) as pool:
        changing = pool.submit(sync, engine)
        far_hubspot.wait_for_in_flight(1)
        forget(engine, "once-0@example.org", actor="staff", now=utcnow())
        other = sync(engine)
        far_hubspot.open_gate()
        report = changing.result(timeout=60)

    assert (other.sent, other.errors) == (0, [])  # it left the erasure alone
    assert (report.sent, report.errors) == (1, [])  # the erasure, after the upsert's answer
    assert far_hubspot.most_in_flight == 1
    paths = [r.path for r in far_hubspot.requests if r.path.startswith("/crm/v3/objects")]
    assert paths[-2:] == ["/crm/v3/objects/contacts/batch/upsert", GDPR_DELETE]


def test_a_person_forgotten_before_hubspot_answered_their_first_upsert_is_deleted_there(
    engine, rally, applied, far_hubspot
):
    """Forgotten while their first upsert is on its way, a person has no HubSpot id yet: the
    erasure still goes to HubSpot, once the upsert is answered, and deletes the contact that
    upsert made, so no erased person stays there."""
    from tasks.leads.forget import forget

    block = "destinations:\n  - name: crm\n    type: hubspot\n    batch_size: 1\n"
    set_destinations(rally, applied, block + "    in_flight: 1\n")
    make_leads(engine, SLUG, 1, prefix="first-")
    far_hubspot.hold_until_in_flight(2)  # the upsert waits for a second call at once

    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(sync, engine)
        far_hubspot.wait_for_in_flight(1)
        forgotten = forget(engine, "first-0@example.org", actor="staff", now=utcnow())
        far_hubspot.open_gate()
        report = sending.result(timeout=60)

    assert len(forgotten.deletions) == 1  # asked of HubSpot, though it had no id for them yet
    assert (report.sent, report.errors) == (1, [])  # the erasure, after the upsert's answer
    assert far_hubspot.contacts == {}
    assert len(far_hubspot.requests_to(GDPR_DELETE)) == 1
    assert len(far_hubspot.requests_to("/crm/v3/objects/contacts/batch/upsert")) == 1


def test_a_login_refused_on_an_erasure_stops_the_pass_before_any_upsert_goes(
    engine, rally, applied, far_hubspot
):
    """A batch holds one person's erasure and another's first upsert, and HubSpot refuses the
    token on the erasure: the pass stops before the upsert goes, so no answer HubSpot gave
    is dropped with the batch (an upsert answered and dropped, of a person forgotten
    meanwhile, would leave them there with no id to delete them by). The next pass sends
    both."""
    from tasks.leads.forget import forget

    block = "destinations:\n  - name: crm\n    type: hubspot\n    batch_size: 2\n"
    set_destinations(rally, applied, block + "    in_flight: 1\n")
    make_leads(engine, SLUG, 1, prefix="gone-")
    assert sync(engine).sent == 1
    forget(engine, "gone-0@example.org", actor="staff", now=utcnow())
    make_leads(engine, SLUG, 1, prefix="new-")  # the erasure and this upsert: one batch
    far_hubspot.fail_next(1, status=401)

    stopped = sync(engine)
    assert stopped.stopped and stopped.sent == 0
    assert len(far_hubspot.requests_to("/crm/v3/objects/contacts/batch/upsert")) == 1  # before

    then = sync(engine)
    assert (then.sent, then.dead) == (2, 0), then.errors
    assert list(far_hubspot.contacts) == ["new-0@example.org"]


def test_an_erasure_whose_persons_upsert_got_no_answer_is_left_for_staff(
    engine, rally, applied, far_hubspot
):
    """Forgotten while their first upsert was on its way, and that upsert's connection lost
    with no answer: Rally cannot know whether HubSpot took them, or by what id. The erasure
    is not counted as done: it is a dead letter that says to delete them there by hand."""
    from tasks.leads.forget import forget
    from tasks.leads.sync_state import dead_letters

    block = "destinations:\n  - name: crm\n    type: hubspot\n    batch_size: 1\n"
    set_destinations(rally, applied, block + "    in_flight: 1\n")
    make_leads(engine, SLUG, 1, prefix="lost-")
    far_hubspot.hold_until_in_flight(2)  # the upsert waits...
    far_hubspot.drop_next(1)  # ...then its connection closes without an answer

    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(sync, engine)
        far_hubspot.wait_for_in_flight(1)
        forget(engine, "lost-0@example.org", actor="staff", now=utcnow())
        far_hubspot.open_gate()
        report = sending.result(timeout=60)

    assert (report.sent, report.dead) == (0, 1)
    assert far_hubspot.requests_to(GDPR_DELETE) == []
    with transaction(engine, write=False) as session:
        [letter] = dead_letters(session, destination="crm")
    assert "no id" in letter.last_error and "by hand" in letter.last_error
