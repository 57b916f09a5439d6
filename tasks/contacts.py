"""Contacts (leads): one row per person, found by normalized email, phone or platform handle.

Consent is kept per channel in `contact_consents`; no row means no consent. A person who said
STOP on a channel stays revoked there until they say START, whatever a later form says.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, update
from sqlmodel import Session, col, select

from store.bulk import insert_rows
from store.models import ConsentStatus, Contact, ContactConsent

CHANNELS = ("reply", "dm", "email", "sms")
EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


class ContactError(ValueError):
    """A contact field that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def normalize_email(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    email = value.strip().lower()
    if not EMAIL.fullmatch(email):
        raise ContactError("email", f"not an email address: {value!r}")
    return email


def normalize_phone(value: str | None, *, country_code: str = "1") -> str | None:
    """E.164 (`+12155550123`); ten digits are taken as a US/Canada number."""
    if not value or not value.strip():
        return None
    digits = re.sub(r"\D", "", value)
    if value.strip().startswith("+"):
        phone = "+" + digits
    elif len(digits) == 10:
        phone = f"+{country_code}{digits}"
    elif len(digits) == 11 and digits.startswith(country_code):
        phone = "+" + digits
    else:
        phone = ""
    if not 9 <= len(phone) <= 16:
        raise ContactError("phone", f"not a phone number: {value!r}")
    return phone


@dataclass(frozen=True)
class Person:
    """What a signup form or an event tells us about someone."""

    email: str | None = None
    phone: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    postal_code: str | None = None
    platform: str | None = None
    handle: str | None = None


def find_or_create(session: Session, person: Person, *, now: datetime) -> Contact:
    """The one contact for `person` (matched on email, then phone, then handle), updated with
    whatever it newly tells us."""
    clauses = []
    if person.email:
        clauses.append(col(Contact.email_normalized) == person.email)
    if person.phone:
        clauses.append(col(Contact.phone_normalized) == person.phone)
    if person.handle and person.platform:
        clauses.append(
            (col(Contact.platform) == person.platform) & (col(Contact.handle) == person.handle)
        )
    found = list(session.exec(select(Contact).where(or_(*clauses)))) if clauses else []
    contact = next(
        (c for key in ("email", "phone", "handle") for c in found if _matches(c, person, key)),
        None,
    )
    if contact is None:
        contact = Contact(created_at=now, updated_at=now)
        session.add(contact)
    taken = {c.id for c in found} - {contact.id}
    for name, value in _new_fields(contact, person, taken, found).items():
        setattr(contact, name, value)
    contact.updated_at = now
    session.flush()
    return contact


def _matches(contact: Contact, person: Person, key: str) -> bool:
    if key == "email":
        return bool(person.email) and contact.email_normalized == person.email
    if key == "phone":
        return bool(person.phone) and contact.phone_normalized == person.phone
    return bool(person.handle) and (contact.platform, contact.handle) == (
        person.platform,
        person.handle,
    )


def _new_fields(
    contact: Contact, person: Person, taken: set[int | None], found: list[Contact]
) -> dict[str, Any]:
    """Fields to set: what `person` adds, except keys another contact already holds."""
    others = [c for c in found if c.id in taken]
    values: dict[str, Any] = {}
    if person.email and not any(c.email_normalized == person.email for c in others):
        values |= {"email": person.email, "email_normalized": person.email}
    if person.phone and not any(c.phone_normalized == person.phone for c in others):
        values |= {"phone": person.phone, "phone_normalized": person.phone}
    handle = (person.platform, person.handle)
    if (
        person.handle
        and not contact.handle
        and all((c.platform, c.handle) != handle for c in others)
    ):
        values |= {"platform": person.platform, "handle": person.handle}
    for name in ("given_name", "family_name", "postal_code"):
        if getattr(person, name):
            values[name] = getattr(person, name)
    return values


def contacts_by_handle(
    session: Session, platform: str, handles: Iterable[str], *, now: datetime
) -> dict[str, int]:
    """The contact id of each platform handle, creating contacts for new ones (in bulk)."""
    wanted = set(handles)
    if not wanted:
        return {}
    found = dict(
        session.exec(
            select(Contact.handle, Contact.id).where(
                col(Contact.platform) == platform, col(Contact.handle).in_(wanted)
            )
        ).all()
    )
    missing = sorted(wanted - set(found))
    if missing:
        rows = [
            {"platform": platform, "handle": h, "created_at": now, "updated_at": now}
            for h in missing
        ]
        made = insert_rows(session, Contact, rows, key=("handle",))
        found |= {handle: id_ for (handle,), id_ in made.items()}
    return {h: i for h, i in found.items() if h is not None and i is not None}


def consents(session: Session, contact_ids: Iterable[int]) -> dict[tuple[int, str], str]:
    """(contact id, channel) -> granted or revoked, for the contacts given."""
    ids = list(set(contact_ids))
    if not ids:
        return {}
    rows = session.exec(
        select(ContactConsent.contact_id, ContactConsent.channel, ContactConsent.status).where(
            col(ContactConsent.contact_id).in_(ids)
        )
    )
    return {(contact_id, channel): status for contact_id, channel, status in rows}


def set_consent(
    session: Session,
    contact_id: int,
    channel: str,
    status: ConsentStatus,
    *,
    source: str,
    now: datetime,
    keep_revoked: bool = False,
) -> bool:
    """Record consent on a channel; return whether it changed. With `keep_revoked` (a form, not
    the person's own START), a STOP already on record is left as it is."""
    row = session.exec(
        select(ContactConsent).where(
            ContactConsent.contact_id == contact_id, ContactConsent.channel == channel
        )
    ).first()
    if row is None:
        values = {"contact_id": contact_id, "channel": channel, "status": status}
        session.execute(
            insert(ContactConsent.__table__),  # type: ignore[attr-defined]
            [{**values, "source": source, "changed_at": now}],
        )
        return True
    if row.status == status or (keep_revoked and row.status == ConsentStatus.REVOKED):
        return False
    session.execute(
        update(ContactConsent)
        .where(col(ContactConsent.id) == row.id)
        .values(status=status, source=source, changed_at=now)
    )
    return True


def add_tags(session: Session, contact_id: int, tags: Iterable[str], *, now: datetime) -> bool:
    contact = session.get(Contact, contact_id)
    if contact is None:
        return False
    merged = sorted(set(contact.tags) | set(tags))
    if merged == sorted(contact.tags):
        return False
    contact.tags, contact.updated_at = merged, now
    session.add(contact)
    return True


def touch(
    session: Session,
    contact_id: int,
    *,
    source_code: str | None,
    member_id: int | None,
    now: datetime,
) -> None:
    """Keep first and last touch: the first source code and creator stay, the last move on."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        return
    if source_code:
        contact.first_source_code = contact.first_source_code or source_code
        contact.last_source_code = source_code
    if member_id:
        contact.first_member_id = contact.first_member_id or member_id
        contact.last_member_id = member_id
    contact.updated_at = now
    session.add(contact)


def consent_flags(values: Mapping[str, Any]) -> dict[str, bool]:
    """`{"email": true, "sms": "yes"}` -> channel -> bool, for the channels Rally knows."""
    truthy = {"1", "true", "yes", "on", "y"}
    return {
        channel: value is True or str(value).strip().lower() in truthy
        for channel, value in values.items()
        if channel in CHANNELS
    }


def record_person(
    session: Session,
    values: Mapping[str, Any],
    *,
    source: str,
    member_id: int | None,
    now: datetime,
    platform: str | None = None,
    handle: str | None = None,
) -> int | None:
    """The contact a signup form describes (`name`, `email`, `phone`, `zip`, `source_code`,
    `consent` per channel), found or created, with the consents it grants (never undoing a
    STOP) and its touch. None when it gives no way to reach the person; a bad email or phone
    raises `ContactError`."""
    name = str(values.get("name") or "").split()
    person = Person(
        email=normalize_email(values.get("email")),
        phone=normalize_phone(values.get("phone")),
        given_name=values.get("given_name") or (name[0] if name else None),
        family_name=values.get("family_name") or (" ".join(name[1:]) or None),
        postal_code=values.get("zip") or values.get("postal_code"),
        platform=platform,
        handle=handle,
    )
    if not (person.email or person.phone or person.handle):
        return None
    contact = find_or_create(session, person, now=now)
    assert contact.id is not None
    for channel, granted in consent_flags(values.get("consent") or {}).items():
        if granted:
            set_consent(
                session,
                contact.id,
                channel,
                ConsentStatus.GRANTED,
                source=source,
                now=now,
                keep_revoked=True,
            )
    touch(session, contact.id, source_code=values.get("source_code"), member_id=member_id, now=now)
    return contact.id
