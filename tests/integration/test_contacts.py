"""Signups in a batch: one contact per person however often they sign up, keys never taken
from someone else, a bad row named and the rest kept, a STOP never undone by a form."""

from datetime import UTC, datetime, timedelta

import pytest
from psycopg.errors import LockNotAvailable
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import select

from store.db import transaction
from store.models import ConsentStatus, Contact, ContactConsent
from tasks.leads.contacts import (
    MOST_PEOPLE_LOCKS,
    ContactError,
    Signup,
    contacts_by_handle,
    record_people,
    set_consent,
)

NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)


def signup(address: str = "", phone: str = "", code: str = "", **consent: bool) -> Signup:
    values = {"email": address, "phone": phone, "source_code": code, "consent": consent}
    return Signup({k: v for k, v in values.items() if v}, source="test:form")


def contacts(engine: Engine) -> list[Contact]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(Contact).order_by(Contact.id)))  # type: ignore[arg-type]


def test_one_person_signing_up_twice_in_a_batch_is_one_contact_with_both_touches(engine):
    with transaction(engine) as session:
        ids = record_people(
            session,
            [
                signup("Ana@Example.org", code="FIRST", email=True),
                signup("ana@example.org", "215-555-0101", code="SECOND", sms=True),
            ],
            now=NOW,
        )
    assert ids[0] == ids[1] and isinstance(ids[0], int)
    (ana,) = contacts(engine)
    assert (ana.email_normalized, ana.phone_normalized) == ("ana@example.org", "+12155550101")
    assert (ana.first_source_code, ana.last_source_code) == ("FIRST", "SECOND")


def test_a_phone_match_does_not_take_an_email_another_contact_holds(engine):
    with transaction(engine) as session:
        record_people(session, [signup("bo@example.org"), signup(phone="2155550102")], now=NOW)
    with transaction(engine) as session:
        (found,) = record_people(
            session, [signup("bo@example.org", "2155550102")], now=NOW + timedelta(days=1)
        )
    bo, phone_only = contacts(engine)
    assert found == bo.id  # the email is matched first
    assert phone_only.email_normalized is None and bo.phone_normalized is None


def test_a_bad_email_is_named_and_the_other_signups_are_kept(engine):
    with transaction(engine) as session:
        first, bad, last = record_people(
            session,
            [signup("cy@example.org"), signup("not-an-address"), signup("di@example.org")],
            now=NOW,
        )
    assert isinstance(bad, ContactError) and bad.field == "email"
    assert "not-an-address" in str(bad)
    assert [c.id for c in contacts(engine)] == [first, last]


def test_a_signup_without_email_phone_or_handle_makes_no_contact(engine):
    with transaction(engine) as session:
        assert record_people(session, [Signup({"name": "Ed"}, source="test:form")], now=NOW) == [
            None
        ]
    assert contacts(engine) == []


def test_a_form_grants_consent_once_and_never_undoes_a_stop(engine):
    with transaction(engine) as session:
        (fay,) = record_people(session, [signup("fay@example.org", email=True)], now=NOW)
        assert isinstance(fay, int)
        set_consent(session, fay, "email", ConsentStatus.REVOKED, source="reply", now=NOW)
    with transaction(engine) as session:
        record_people(
            session,
            [signup("fay@example.org", email=True, sms=True), signup("fay@example.org", sms=True)],
            now=NOW + timedelta(days=1),
        )
        rows = session.exec(select(ContactConsent.channel, ContactConsent.status)).all()
    assert sorted(rows) == [("email", ConsentStatus.REVOKED), ("sms", ConsentStatus.GRANTED)]


def test_fans_by_handle_are_one_contact_each_however_many_come_at_once(engine):
    """A batch of commenters' handles: each new one becomes a contact once, with no tags, and a
    fan already known keeps their contact, whatever the batch's size (on PostgreSQL the handles
    go as one array, whatever their number)."""
    with transaction(engine) as session:
        first = contacts_by_handle(session, "tiktok", ["ana", "ben"], now=NOW)
    fans = [f"fan{i}" for i in range(1500)]
    with transaction(engine) as session:
        second = contacts_by_handle(session, "tiktok", ["ben", *fans, "ana"], now=NOW)
        other_platform = contacts_by_handle(session, "instagram", ["ana"], now=NOW)
    assert (second["ana"], second["ben"]) == (first["ana"], first["ben"])
    assert len(set(second.values())) == len(fans) + 2
    assert other_platform["ana"] not in second.values()
    stored = contacts(engine)
    assert len(stored) == len(fans) + 3
    fan = next(c for c in stored if c.handle == "fan7")
    assert (fan.platform, fan.tags, fan.created_at) == ("tiktok", [], NOW)


def test_on_postgresql_a_batch_of_signups_holds_up_only_the_people_in_it(engine):
    """Two batches of signups wait on each other only for someone in both: a signup of someone
    else goes at once while a batch of 200 is in progress (workers on many machines), one of a
    person in that batch waits for it, and a batch too big to lock person by person holds
    everyone's (a bounded share of the server's lock table)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: every batch waits for the one before it by design")

    def signs_up_at_once(*people: Signup) -> bool:
        """Whether these people's signups go without waiting for the batch in progress."""
        try:
            with transaction(engine, take_turns=False) as other:
                other.execute(text("SET LOCAL lock_timeout = '200ms'"))
                record_people(other, list(people), now=NOW)
        except OperationalError as exc:
            assert isinstance(exc.orig, LockNotAvailable)
            return False
        return True

    batch = [signup(f"fan{i}@example.org", f"215555{i:04d}") for i in range(200)]
    with transaction(engine, take_turns=False) as first:
        record_people(first, batch, now=NOW)
        assert signs_up_at_once(signup("ana@example.org"), signup(phone="2155559999"))
        assert not signs_up_at_once(signup("fan7@example.org"))
        assert not signs_up_at_once(signup("bo@example.org", "2155550123"))  # fan123's phone
    assert len(contacts(engine)) == 202
    crowd = [signup(f"crowd{i}@example.org") for i in range(MOST_PEOPLE_LOCKS + 1)]
    with transaction(engine, take_turns=False) as big:
        record_people(big, crowd, now=NOW)
        assert not signs_up_at_once(signup("cy@example.org"))
    assert signs_up_at_once(signup("cy@example.org"))
