"""A creator signs their contract on their brief page, on a phone, in a real browser against
`rally serve`: the exact text shown, the name typed, their consent, their address and browser
are kept; a text changed meanwhile is not signed; staff countersign and the signed PDF goes to
the creator and the staff by email."""

import email
import email.policy
import hashlib
import json
from pathlib import Path

import pytest
from sqlmodel import select

from config.settings import get_settings
from store.db import transaction
from store.models import AuditEvent, Contract
from store.types import utcnow
from tasks.campaigns.campaign import campaign_spec, get_campaign, staff
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits
from tests.e2e.test_creator_portal import HANDLE, brief_link, on_phone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]
STAFF = "dana.okafor@keystoneyouthvote.example.org"


def contract_of(engine) -> Contract:
    with transaction(engine, write=False) as session:
        return session.exec(select(Contract)).one()


def test_a_creator_signs_their_contract_and_both_get_the_signed_copy(
    server: Server, rally, running: Path, engine, tabs
) -> None:
    link = brief_link(rally, engine)
    run = rally("contracts", "offer", SLUG)
    assert "1 contract(s) offered" in run.out, run.out
    page = on_phone(tabs().page, link)
    shown = page.inner_text("#contract-text")
    assert "Creator agreement: First Vote PA 2027" in shown and "Payment terms" in shown
    assert "Disclosure." in shown  # the brief's own contract clauses
    assert_page_fits(page, "creator-contract")

    # Without the box ticked the browser asks for it; a name of spaces is refused by Rally.
    page.fill("#signed-name", "   ")
    page.check("#agree")
    page.click("#sign-contract")
    assert "Not signed. name: type your full name" in page.inner_text("#contract-error")
    assert contract_of(engine).signed_at is None

    page.fill("#signed-name", "Jordan  Reyes")
    page.check("#agree")
    page.click("#sign-contract")
    assert "You signed version 1 as Jordan Reyes" in page.inner_text("#contract-signed")
    signed = contract_of(engine)
    agent = page.evaluate("navigator.userAgent")
    assert (signed.signed_name, signed.signed_address) == ("Jordan Reyes", "127.0.0.1")
    assert signed.signed_user_agent == agent
    assert signed.text_hash == hashlib.sha256(signed.text.encode()).hexdigest()
    assert_page_fits(page, "creator-contract-signed")
    # A second tap on Sign, its first answer slow on a phone: the contract as signed, once.
    form = {"version": "1", "text_hash": signed.text_hash, "name": "J R", "agree": "true"}
    again = page.request.post(f"{link}/contract", form=form)
    assert again.ok and "You signed version 1 as Jordan Reyes" in again.text()
    assert contract_of(engine).signed_at == signed.signed_at
    with transaction(engine, write=False) as session:
        audited = session.exec(
            select(AuditEvent).where(AuditEvent.action == "contract.signed")
        ).one()
    assert audited.changes["text_sha256"] == signed.text_hash

    run = rally("contracts", "countersign", SLUG, f"@{HANDLE}", "--by", STAFF)
    assert run.code == 0, run.err
    pdf = get_settings().home / (contract_of(engine).pdf_file or "")
    assert pdf.read_bytes().startswith(b"%PDF-")
    deliver_email(engine, get_settings(), now=utcnow)
    mailed = {}
    for path in get_settings().mailbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["Subject"].startswith("Signed: your contract"):
            (part,) = list(message.iter_attachments())
            mailed[message["To"].addresses[0].addr_spec] = part.get_content()
    creator = next(
        c
        for c in json.loads(rally("creators", "list", SLUG, "--json").out)
        if c["handle"] == HANDLE
    )
    with transaction(engine, write=False) as session:
        team = staff(campaign_spec(get_campaign(session, SLUG)))
    assert STAFF in team and set(mailed) == {creator["email"], *team}
    assert all(content == pdf.read_bytes() for content in mailed.values())
    page.reload()
    assert "The campaign countersigned it" in page.inner_text("#contract-signed")


def test_a_contract_changed_after_the_page_was_opened_is_not_signed(
    server: Server, rally, running: Path, engine, tabs
) -> None:
    link = brief_link(rally, engine)
    assert rally("contracts", "offer", SLUG).code == 0
    page = on_phone(tabs().page, link)
    with transaction(engine) as session:  # a new version made meanwhile (a fee changed, say)
        old = session.exec(select(Contract)).one()
        session.add(
            Contract(
                campaign_id=old.campaign_id, member_id=old.member_id, version=2,
                text=old.text + "\nA new clause.\n", text_hash="0" * 64, created_at=utcnow(),
            )
        )  # fmt: skip
    page.fill("#signed-name", "Jordan Reyes")
    page.check("#agree")
    page.click("#sign-contract")
    assert "it changed since the page was opened" in page.inner_text("#contract-error")
    assert "Version 2" in page.inner_text("#contract")
    with transaction(engine, write=False) as session:
        assert all(c.signed_at is None for c in session.exec(select(Contract)))
