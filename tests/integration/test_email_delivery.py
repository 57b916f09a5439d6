"""Brief emails through the outbox to a real SMTP server (STARTTLS, login) or the mailbox folder.

The server is aiosmtpd on 127.0.0.1 with a certificate from a throwaway CA that Rally is told
to trust through `RALLY_SMTP_CA_FILE`, so the TLS check is the real one. Its handler can be
told to refuse an address (temporarily or for good) to see what the outbox does with that.
"""

import asyncio
import email
import email.policy
import html
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
import tenacity
import trustme
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import Engine
from sqlmodel import col, select

import tasks.outbox
from config.campaign import CampaignSpec
from config.settings import Settings, get_settings
from store.db import open_store, transaction
from store.models import AuditEvent, Campaign
from store.types import utcnow
from tasks.briefs.reminders import send_reminders
from tasks.briefs.status import acknowledge, brief_status
from tasks.mail import deliver_email
from tasks.outbox import enqueue
from tests.conftest import ROOT, SLUG
from tests.helpers import generate

USER, PASSWORD = "rally-mailer", "s3cret-app-password"


@dataclass
class Received:
    """One message the server accepted, and how the client reached it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class Inbox:
    """The SMTP handler: keeps what it accepts, refuses what a test told it to refuse."""

    received: list[Received] = field(default_factory=list)
    # (stage, address) -> [reply, ...]: the next replies to give instead of accepting; a
    # reply in `always` is given every time.
    refusals: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    always: dict[tuple[str, str], str] = field(default_factory=dict)
    tried: list[tuple[str, str]] = field(default_factory=list)
    logins: list[bool] = field(default_factory=list)
    delay: float = 0.0  # seconds each message takes to be accepted, as a slow server's do

    def refuse(self, stage: str, address: str, reply: str, *, times: int | None = None) -> None:
        if times is None:
            self.always[(stage, address)] = reply
        else:
            self.refusals.setdefault((stage, address), []).extend([reply] * times)

    def _refusal(self, stage: str, address: str) -> str | None:
        self.tried.append((stage, address))
        if (stage, address) in self.always:
            return self.always[(stage, address)]
        queued = self.refusals.get((stage, address))
        return queued.pop(0) if queued else None

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            mechanism in ("LOGIN", "PLAIN")
            and isinstance(auth_data, LoginPassword)
            and auth_data == (USER.encode(), PASSWORD.encode())
        )
        self.logins.append(ok)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        refusal = self._refusal("RCPT", address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        for address in envelope.rcpt_tos:
            refusal = self._refusal("DATA", address)
            if refusal:
                return refusal
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, bool(session.ssl), login)
        )
        return "250 2.0.0 OK: queued"

    def recipients(self) -> list[str]:
        return [address for r in self.received for address in r.rcpt_tos]

    def to(self, address: str) -> list[EmailMessage]:
        return [r.message for r in self.received if address in r.rcpt_tos]


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int
    settings: Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[SmtpServer]:
    """A real SMTP server requiring STARTTLS and login; Rally configured for it by env vars."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_tls)
    ca_file = tmp_path / "smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        authenticator=inbox.authenticate,
    )
    controller.start()
    try:
        monkeypatch.setenv("RALLY_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("RALLY_SMTP_PORT", str(port))
        monkeypatch.setenv("RALLY_SMTP_SECURITY", "starttls")
        monkeypatch.setenv("RALLY_SMTP_USERNAME", USER)
        monkeypatch.setenv("RALLY_SMTP_PASSWORD", PASSWORD)
        monkeypatch.setenv("RALLY_SMTP_CA_FILE", str(ca_file))
        get_settings.cache_clear()
        yield SmtpServer(inbox, port, get_settings())
    finally:
        controller.stop()
        get_settings.cache_clear()


@pytest.fixture
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries inside a pass happen at once instead of after a jittered half second or more."""
    monkeypatch.setattr(tasks.outbox, "wait_exponential_jitter", lambda **_: tenacity.wait_none())


def roster(rally: Callable[..., Any]) -> list[dict[str, Any]]:
    run = rally("creators", "list", SLUG, "--json")
    assert run.code == 0, run.err
    rows: list[dict[str, Any]] = json.loads(run.out)
    return rows


def a_few(rally: Callable[..., Any]) -> list[dict[str, Any]]:
    """Every tenth creator: enough to see a pass carry on around a failure, and quicker."""
    return roster(rally)[::10]


def generate_for(settings: Settings, engine: Engine, creators: list[dict[str, Any]]) -> None:
    report = generate(settings, engine, SLUG, send=True, handles=[c["handle"] for c in creators])
    assert report.queued == len(creators)


def status(engine: Engine, settings: Settings) -> dict[str, dict[str, Any]]:
    """brief_status by handle, for the creators who have a brief."""
    with transaction(engine, write=False) as session:
        rows = brief_status(session, SLUG, public_url=settings.public_url)
    return {row["handle"]: row for row in rows if row["version"] is not None}


def audited(engine: Engine, action: str) -> list[AuditEvent]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))


def bodies(message: EmailMessage) -> tuple[str, str]:
    """The text part and the HTML part (entities resolved, so URLs read as written)."""
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    text, page = (p.get_content() for p in parts)
    return text, html.unescape(page)


def short_links(body: str) -> set[str]:
    """The creators' short links (`/t/<code>`) a body names."""
    return set(re.findall(r"https?://[^\s\"'<>]+/t/[\w-]+", body))


def clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def test_each_creator_gets_their_own_brief_email_once_over_starttls(
    smtp: SmtpServer, engine: Engine, applied: Path, rally: Callable[..., Any]
) -> None:
    settings, inbox = smtp.settings, smtp.inbox
    creators = roster(rally)
    assert len(creators) == 50
    campaign_name = yaml.safe_load((applied / "campaign.yaml").read_text())["name"]

    assert generate(settings, engine, SLUG, send=True).queued == 50
    report = deliver_email(engine, settings, now=utcnow)

    assert (report.sent, report.dead, report.retrying, report.errors) == (50, 0, 0, [])
    assert sorted(inbox.recipients()) == sorted(c["email"] for c in creators)
    assert all(r.tls and r.login == USER for r in inbox.received)
    assert {r.mail_from for r in inbox.received} == {parseaddr(settings.mail_from)[1]}
    assert len({r.message["Message-ID"] for r in inbox.received}) == 50
    links = status(engine, settings)
    for creator in creators:
        [message] = inbox.to(creator["email"])
        assert message["To"].addresses[0].addr_spec == creator["email"]
        assert campaign_name in message["Subject"]
        own_url = creator["tracking_link"]  # Rally's own short link, which counts clicks
        link = links[creator["handle"]]["link"]
        assert re.search(r"/briefs/[\w-]+$", link)
        for body in bodies(message):
            assert own_url in body
            assert short_links(body) == {own_url}, "no one else's link"
            assert "utm_" not in body, "the short link, not the long one"
            assert link in body

    assert generate(settings, engine, SLUG, send=True).queued == 0
    again = deliver_email(engine, settings, now=utcnow)
    assert (again.sent, again.errors) == (0, [])
    assert len(inbox.received) == 50

    after = status(engine, settings)
    assert {row["email_status"] for row in after.values()} == {"sent"}
    assert all(row["sent_at"] for row in after.values())
    sent = audited(engine, "brief.sent")
    assert sorted(e.changes["to"] for e in sent) == sorted(c["email"] for c in creators)
    assert len({e.entity_id for e in sent}) == 50


DRAIN = (
    "from config.settings import get_settings\n"
    "from store.db import open_store\n"
    "from store.types import utcnow\n"
    "from tasks.mail import deliver_email\n"
    "settings = get_settings()\n"
    "deliver_email(open_store(settings), settings, now=utcnow)\n"
)


@pytest.mark.slow
def test_what_a_killed_drain_held_goes_out_within_a_lease_of_its_death_once(
    smtp: SmtpServer, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RALLY_OUTBOX_LEASE_SECONDS", "2")
    get_settings.cache_clear()
    settings, inbox = get_settings(), smtp.inbox
    fans = [f"fan{n}@example.org" for n in range(30)]
    with transaction(engine) as session:
        enqueue(
            session,
            [
                {
                    "channel": "email",
                    "destination": "fan",
                    "idempotency_key": f"welcome:{fan}",
                    "subject_type": "test",
                    "subject_id": fan,
                    "payload": {"to": fan, "subject": "Welcome", "text": "Hi", "html": ""},
                }
                for fan in fans
            ],
        )
    inbox.delay = 0.1
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-c", DRAIN], env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while len(inbox.received) < 5 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()  # kill -9 in the middle of its batch: it holds every message it took
    first.wait()
    killed_at = time.monotonic()
    assert 5 <= len(inbox.received) < len(fans)

    inbox.delay = 0.0
    while len({r.rcpt_tos[0] for r in inbox.received}) < len(fans):
        assert time.monotonic() - killed_at < 60, "what the killed drain held is still waiting"
        if deliver_email(engine, settings, now=utcnow).sent == 0:
            time.sleep(0.1)  # its lease runs out by itself: nothing to wait on but the clock
    ids = [r.message["Message-ID"] for r in inbox.received]
    assert sorted({r.rcpt_tos[0] for r in inbox.received}) == sorted(fans)
    # Only the message in flight at the kill may go twice, under the same Message-ID.
    assert len(ids) - len(set(ids)) <= 1 and len(set(ids)) == len(fans)


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_a_temporary_refusal_is_retried_and_delivered_once(
    smtp: SmtpServer,
    engine: Engine,
    applied: Path,
    rally: Callable[..., Any],
    no_retry_wait: None,
    stage: str,
) -> None:
    settings, inbox = smtp.settings, smtp.inbox
    creators = a_few(rally)
    unlucky = creators[2]
    inbox.refuse(stage, unlucky["email"], "451 4.3.0 try later", times=1)

    generate_for(settings, engine, creators)
    report = deliver_email(engine, settings, now=utcnow)

    assert (report.sent, report.retrying, report.dead, report.errors) == (len(creators), 0, 0, [])
    assert inbox.tried.count((stage, unlucky["email"])) == 2, "refused once, then accepted"
    assert len(inbox.to(unlucky["email"])) == 1
    assert sorted(inbox.recipients()) == sorted(c["email"] for c in creators)
    row = status(engine, settings)[unlucky["handle"]]
    assert (row["email_status"], row["email_error"]) == ("sent", None)
    assert row["sent_at"]


def test_a_permanent_refusal_parks_that_email_and_the_others_go_out(
    smtp: SmtpServer, engine: Engine, applied: Path, rally: Callable[..., Any]
) -> None:
    settings, inbox = smtp.settings, smtp.inbox
    creators = roster(rally)
    bounced = creators[3]
    inbox.refuse("RCPT", bounced["email"], "550 5.1.1 mailbox does not exist")

    generate(settings, engine, SLUG, send=True)
    report = deliver_email(engine, settings, now=utcnow)

    assert (report.sent, report.dead, report.retrying) == (49, 1, 0)
    assert inbox.tried.count(("RCPT", bounced["email"])) == 1, "not retried"
    assert sorted(inbox.recipients()) == sorted(c["email"] for c in creators if c is not bounced)
    rows = status(engine, settings)
    failed = rows.pop(bounced["handle"])
    assert failed["email_status"] == "failed"
    assert "550" in failed["email_error"] and "mailbox does not exist" in failed["email_error"]
    assert failed["sent_at"] is None
    assert {row["email_status"] for row in rows.values()} == {"sent"}

    later = deliver_email(engine, settings, now=lambda: utcnow() + timedelta(days=1))
    assert (later.sent, later.dead) == (0, 0), "a dead message waits to be redriven"
    assert inbox.tried.count(("RCPT", bounced["email"])) == 1


def wrong_password(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RALLY_SMTP_PASSWORD", "not-the-password")
    get_settings.cache_clear()
    return get_settings()


def right_password(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("RALLY_SMTP_PASSWORD", PASSWORD)
    get_settings.cache_clear()
    return get_settings()


def test_a_wrong_password_stops_each_pass_costs_no_email_and_once_fixed_all_go_out_once(
    smtp: SmtpServer,
    engine: Engine,
    applied: Path,
    rally: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    no_retry_wait: None,
) -> None:
    creators = a_few(rally)
    wrong = wrong_password(monkeypatch)
    generate_for(wrong, engine, creators)
    at = utcnow()
    for _ in range(tasks.outbox.MAX_ATTEMPTS + 1):  # hourly passes while the password is wrong
        report = deliver_email(engine, wrong, now=clock(at))
        assert report.stopped is not None and "login" in report.stopped
        assert (report.sent, report.dead) == (0, 0)
        at += timedelta(hours=1)
    assert smtp.inbox.received == []
    assert False in smtp.inbox.logins and True not in smtp.inbox.logins
    assert {row["email_status"] for row in status(engine, wrong).values()} == {"queued"}

    fixed = deliver_email(engine, right_password(monkeypatch), now=clock(at))

    assert fixed.stopped is None and fixed.errors == []
    assert (fixed.sent, fixed.dead) == (len(creators), 0)
    assert sorted(smtp.inbox.recipients()) == sorted(c["email"] for c in creators)
    assert {row["email_status"] for row in status(engine, wrong).values()} == {"sent"}


def test_without_smtp_settings_mail_lands_in_the_mailbox_folder_once(
    engine: Engine, applied: Path, rally: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RALLY_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    assert not settings.smtp_host
    creators = roster(rally)
    generate(settings, engine, SLUG, send=True)

    report = deliver_email(engine, settings, now=utcnow)

    assert (report.sent, report.errors) == (50, [])
    files = sorted(settings.mailbox.iterdir())
    assert [f.suffix for f in files] == [".eml"] * 50
    by_recipient: dict[str, EmailMessage] = {}
    for file in files:
        message = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        by_recipient[message["To"].addresses[0].addr_spec] = message
    assert sorted(by_recipient) == sorted(c["email"] for c in creators)
    for creator in creators:
        text, page = bodies(by_recipient[creator["email"]])
        assert creator["tracking_link"] in text and creator["tracking_link"] in page

    contents = {f.name: f.read_bytes() for f in files}
    generate(settings, engine, SLUG, send=True)
    again = deliver_email(engine, settings, now=utcnow)
    assert again.sent == 0
    assert {f.name: f.read_bytes() for f in settings.mailbox.iterdir()} == contents


def test_reminders_go_to_those_who_have_not_acknowledged_once_and_survive_a_restart(
    smtp: SmtpServer, engine: Engine, running: Path, rally: Callable[..., Any]
) -> None:
    settings, inbox = smtp.settings, smtp.inbox
    creators = {c["handle"]: c for c in roster(rally)}
    with transaction(engine, write=False) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        days = CampaignSpec.model_validate(campaign.spec).brief.reminder_after_days
    assert days > 0

    generate(settings, engine, SLUG, send=True)
    sent_at = utcnow()
    assert deliver_email(engine, settings, now=clock(sent_at)).sent == 50
    before = status(engine, settings)
    reader = next(iter(creators))
    token = before[reader]["link"].rsplit("/", 1)[1]
    with transaction(engine) as session:
        page = acknowledge(session, token, version=1, now=sent_at + timedelta(hours=1))
    assert page is not None and page.brief.acknowledged_at is not None

    due = sent_at + timedelta(days=days)
    assert send_reminders(engine, settings, now=due - timedelta(minutes=1)) == 0

    engine.dispose()  # a restart: nothing in memory survives, the timers are in the store
    engine = open_store(settings)
    assert send_reminders(engine, settings, now=due + timedelta(minutes=1)) == 49
    report = deliver_email(engine, settings, now=clock(due + timedelta(minutes=2)))
    assert (report.sent, report.errors) == (49, [])

    reminded = {handle for handle, c in creators.items() if len(inbox.to(c["email"])) == 2}
    assert reminded == set(creators) - {reader}
    assert len(inbox.to(creators[reader]["email"])) == 1
    for handle in reminded:
        reminder = inbox.to(creators[handle]["email"])[1]
        assert reminder["Subject"] != inbox.to(creators[handle]["email"])[0]["Subject"]
        for body in bodies(reminder):
            assert before[handle]["link"] in body

    assert send_reminders(engine, settings, now=due + timedelta(days=30)) == 0
    assert deliver_email(engine, settings, now=clock(due + timedelta(days=30))).sent == 0
    assert len(inbox.received) == 50 + 49
    after = status(engine, settings)
    assert after.pop(reader)["reminder_sent_at"] is None
    assert all(row["reminder_sent_at"] for row in after.values())
    assert len(audited(engine, "brief.reminded")) == 49
    with transaction(engine, write=False) as session:
        acked = session.exec(
            select(AuditEvent).where(col(AuditEvent.action) == "brief.acknowledged")
        ).all()
    assert len(acked) == 1
