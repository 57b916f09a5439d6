"""Creator contracts as staff offer them: made from the brief's clauses and the creator's
terms, a new version only when the text changes (a signed one stays as signed), none for a
creator without a brief or a fee, and a countersignature only on a signed contract."""

import hashlib

from sqlmodel import col, select

from config.errors import RallyError
from config.settings import get_settings
from store.db import transaction
from store.models import Contract, RosterMember
from store.types import utcnow
from tasks.briefs.contracts import Signature, latest, offer, sign
from tasks.campaigns.campaign import get_campaign
from tests.conftest import SLUG
from tests.helpers import generate

HANDLE = "jordanreyes_phl"


def offered(engine) -> dict[str, int]:
    with transaction(engine) as session:
        return offer(session, get_campaign(session, SLUG), actor="staff:test", now=utcnow())


def contracts(engine) -> list[Contract]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(Contract).order_by(col(Contract.version))))


def test_a_contract_is_offered_once_per_text_and_a_new_fee_asks_for_a_new_signature(
    engine, running, rally
) -> None:
    assert offered(engine)["no_brief"] == 50  # no briefs yet: nothing to sign
    assert not generate(get_settings(), engine, SLUG, handles=[HANDLE]).failed
    assert offered(engine) == {"offered": 1, "unchanged": 0, "no_brief": 49, "no_fee": 0}
    assert offered(engine)["unchanged"] == 1
    (first,) = contracts(engine)
    assert first.text_hash == hashlib.sha256(first.text.encode()).hexdigest()
    assert "Jordan Reyes (@jordanreyes_phl on tiktok" in first.text
    assert "## Contract clauses" in first.text and "## Payment terms" in first.text
    with transaction(engine) as session:
        signature = Signature(first.version, first.text_hash, "Jordan Reyes", True, "::1", "t")
        sign(session, first.member_id, signature, now=utcnow())
    with transaction(engine) as session:  # their fee changes, as a roster import would
        member = session.get(RosterMember, first.member_id)
        assert member is not None
        member.rate_cents = 300_000
        session.add(member)
    assert offered(engine)["offered"] == 1
    signed, second = contracts(engine)
    assert (signed.version, signed.signed_name) == (1, "Jordan Reyes")  # kept as signed
    assert second.version == 2 and second.signed_at is None
    assert "3,000.00 USD" in second.text and "3,000.00 USD" not in signed.text
    with transaction(engine, write=False) as session:
        assert latest(session, first.member_id).version == 2  # type: ignore[union-attr]
    run = rally("contracts", "countersign", SLUG, f"@{HANDLE}", "--by", "dana")
    assert run.code != 0 and "no signed contract to countersign" in run.err
    with transaction(engine) as session:
        try:
            sign(session, first.member_id, signature, now=utcnow())  # the old text's hash
        except RallyError as exc:
            assert "it changed since the page was opened" in str(exc)
        else:
            raise AssertionError("a signature of version 1 signed version 2")
    listed = rally("contracts", "list", SLUG)
    assert f"@{HANDLE}: version 2, waiting for the creator's signature" in listed.out
