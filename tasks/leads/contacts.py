"""Contacts (leads): one row per person, found by normalized email, phone or platform handle.

Consent is kept per channel in `contact_consents`; no row means no consent. A person who said
STOP on a channel stays revoked there until they say START, whatever a later form says. A form
that is not itself proof of the person (the public signup page) records the consent it asks
for as pending, until the person confirms it.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import ARRAY, bindparam, func, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session, col, select

from store.audit import Change, record
from store.bulk import insert_rows, one_of
from store.db import Lock, advisory_locks_by_name
from store.models import ConsentRecord, ConsentStatus, Contact, ContactConsent
from tasks.webhooks.events import Event, iso, occurrence

CHANNELS = ("reply", "dm", "email", "sms")
# An address mail goes to as written: letters, digits and the few marks addresses use (no
# comments, quotes or controls, which mail systems read differently), at most 254 characters.
EMAIL = re.compile(r"(?=.{3,254}$)[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]+(\.[\w-]+)+")

# A signup's values may carry, beside the form's fields, what each consent box said and the
# network address the form came from, for the consent records (never stored with the event).
CONSENT_WORDING = "_consent_wording"
CONSENT_ORIGIN = "_consent_origin"


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


MOST_PEOPLE_LOCKS = 512  # a batch with more emails, phones and handles takes all of them


class KnownContacts:
    """The contacts a batch of people may be, loaded in one query and kept up to date as the
    batch finds and creates them, so that two signups of one person make one contact.

    Signups do not take turns with every other change (the public page would wait behind
    imports and drains), so on PostgreSQL the batch first takes the locks of its people's
    emails, phones and handles (each its own, up to `MOST_PEOPLE_LOCKS`; all of them beyond),
    which keeps two transactions from both adding one person, and locks the contacts it loads,
    which keeps a change made meanwhile (a STOP, an erasure) from being written over."""

    def __init__(self, session: Session, people: Iterable[Person]) -> None:
        emails, phones, handles = set(), set(), set()
        for person in people:
            emails.add(person.email)
            phones.add(person.phone)
            if person.handle and person.platform:
                handles.add((person.platform, person.handle))
        postgresql = session.get_bind().dialect.name == "postgresql"
        if postgresql:
            keys = [f"e:{e}" for e in emails - {None}] + [f"p:{p}" for p in phones - {None}]
            keys += [f"h:{platform}:{handle}" for platform, handle in handles]
            advisory_locks_by_name(session, Lock.PEOPLE, keys, most=MOST_PEOPLE_LOCKS)
        clauses: list[Any] = [col(Contact.email_normalized).in_(emails - {None})]
        clauses.append(col(Contact.phone_normalized).in_(phones - {None}))
        clauses += [
            (col(Contact.platform) == platform) & col(Contact.handle).in_(names)
            for platform, names in _by_platform(handles).items()
        ]
        self.by_key: dict[tuple[str, Any], Contact] = {}
        if emails - {None} or phones - {None} or handles:
            query = select(Contact).where(or_(*clauses)).order_by(col(Contact.id))
            for contact in session.exec(query.with_for_update() if postgresql else query):
                self._index(contact)

    def _index(self, contact: Contact) -> None:
        for key in _keys(contact.email_normalized, contact.phone_normalized, contact):
            self.by_key[key] = contact

    def find_or_add(self, session: Session, person: Person, *, now: datetime) -> Contact:
        """The one contact for `person` (matched on email, then phone, then handle), updated
        with whatever it newly tells us; a new one is added to the session, not yet flushed."""
        found: list[Contact] = []
        for key in _keys(person.email, person.phone, person):
            contact = self.by_key.get(key)
            if contact is not None and all(contact is not c for c in found):
                found.append(contact)
        contact = found[0] if found else Contact(created_at=now, updated_at=now)
        if not found:
            session.add(contact)
        others = [c for c in found if c is not contact]
        for key in _keys(contact.email_normalized, contact.phone_normalized, contact):
            del self.by_key[key]  # an email or phone it gives up is free for someone else
        values, withheld = _new_fields(contact, person, others)
        for name, value in values.items():
            setattr(contact, name, value)
        if withheld and contact.id is not None:
            summary = (
                f"contact {contact.id}: a signup gave another {', '.join(withheld)}; the ones "
                "given before are kept (the signup's own values stay with its event)"
            )
            record(session, [Change("public form", "contact.change_withheld", "contact",
                                    contact.id, summary, {"fields": withheld})])  # fmt: skip
        contact.updated_at = now
        self._index(contact)
        return contact


def _by_platform(handles: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for platform, handle in handles:
        grouped.setdefault(platform, set()).add(handle)
    return grouped


def _keys(email: str | None, phone: str | None, who: Contact | Person) -> list[tuple[str, Any]]:
    """A contact's or person's keys, in the order they are matched on."""
    keys: list[tuple[str, Any]] = []
    if email:
        keys.append(("email", email))
    if phone:
        keys.append(("phone", phone))
    if who.handle and who.platform:
        keys.append(("handle", (who.platform, who.handle)))
    return keys


def _new_fields(
    contact: Contact, person: Person, others: list[Contact]
) -> tuple[dict[str, Any], list[str]]:
    """Fields to set, and the names of those withheld. A form is not verified: it fills what
    the contact lacks, and never replaces what the person gave before (else anyone could move
    someone's texts to their own phone by signing up with their email); keys another contact
    already holds are left to it."""
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
    kept = {k: v for k, v in values.items() if getattr(contact, k) in (None, "", v)}
    withheld = sorted({k.removesuffix("_normalized") for k in values.keys() - kept.keys()})
    return kept, withheld


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
                col(Contact.platform) == platform, one_of(session, col(Contact.handle), wanted)
            )
        ).all()
    )
    missing = sorted(wanted - set(found))
    if missing:
        if session.get_bind().dialect.name == "postgresql":
            # Another batch may be adding the same people right now: wait for it and keep
            # its rows (in handle order, so two batches never wait on each other in a circle).
            session.execute(
                _adding_handles(), {"platform": platform, "handles": missing, "now": now}
            )
            found |= dict(
                session.exec(
                    select(Contact.handle, Contact.id).where(
                        col(Contact.platform) == platform,
                        one_of(session, col(Contact.handle), missing),
                    )
                ).all()
            )
        else:
            rows = [
                {"platform": platform, "handle": h, "created_at": now, "updated_at": now}
                for h in missing
            ]
            made = insert_rows(session, Contact, rows, key=("handle",))
            found |= {handle: id_ for (handle,), id_ in made.items()}
    return {h: i for h, i in found.items() if h is not None and i is not None}


@cache
def _adding_handles() -> Any:
    """PostgreSQL: a contact for each of the `handles` (in their order) on `platform` that has
    none yet, as one statement whose text is the same for any number of handles (built once)."""
    table = Contact.__table__  # type: ignore[attr-defined]
    handles = (
        func.unnest(bindparam("handles", type_=ARRAY(table.c.handle.type)))
        .table_valued("handle", with_ordinality="place")
        .render_derived()
    )
    now = bindparam("now", type_=table.c.created_at.type)
    rows = sa_select(
        bindparam("platform", type_=table.c.platform.type),
        handles.c.handle,
        bindparam("tags", [], type_=table.c.tags.type),  # the model's default: none
        now,
        now,
    ).order_by(handles.c.place)
    columns = ["platform", "handle", "tags", "created_at", "updated_at"]
    return (
        pg_insert(table)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["platform", "handle"])
    )


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
    wording: str | None = None,
    origin: str | None = None,
) -> bool:
    """Record the person's own consent command (STOP or START) or confirmation on a channel,
    and, when it changes, its `ConsentRecord` (`wording`: what they wrote or were shown;
    `origin`: where it came from); return whether it changed. Forms grant consent through
    `record_consents`, which never undoes a STOP."""
    row = session.exec(
        select(ContactConsent).where(
            ContactConsent.contact_id == contact_id, ContactConsent.channel == channel
        )
    ).first()
    if row is not None and row.status == status:
        return False
    if row is None:
        values = {"contact_id": contact_id, "channel": channel, "status": status}
        session.execute(
            insert(ContactConsent.__table__),  # type: ignore[attr-defined]
            [{**values, "source": source, "changed_at": now}],
        )
    else:
        session.execute(
            update(ContactConsent)
            .where(col(ContactConsent.id) == row.id)
            .values(status=status, source=source, changed_at=now)
        )
    keep_consent_records(
        session,
        [
            {
                "contact_id": contact_id,
                "channel": channel,
                "status": status,
                "source": source,
                "wording": wording,
                "origin": origin,
                "recorded_at": now,
            }
        ],
    )
    return True


def name_of(given_name: str | None, family_name: str | None) -> str | None:
    return " ".join(filter(None, (given_name, family_name))) or None


def lead_created(contact: Contact, *, source_code: str | None, now: datetime) -> Event:
    """`lead.created` for a person who signed up for a campaign or was imported into it: once
    per campaign's subscription, whichever signup it first hears of."""
    data = {"lead": contact.id, "email": contact.email}
    data |= {"name": name_of(contact.given_name, contact.family_name), "source_code": source_code}
    data |= {"first_seen": iso(contact.created_at), "at": iso(now)}
    return Event("lead.created", f"lead:{contact.id}:created", f"lead:{contact.id}", "leads", data)


class Named(Protocol):
    """A contact, or a row of one, with what an event may name them by."""

    @property
    def email(self) -> str | None: ...
    @property
    def given_name(self) -> str | None: ...
    @property
    def family_name(self) -> str | None: ...


def consent_changed(
    contact_id: int,
    channel: str,
    status: str,
    *,
    source: str,
    now: datetime,
    person: Named | None,
) -> Event:
    """`consent.changed`: the person's consent on `channel` is now `status` (`source`: the
    signup, message or link that changed it)."""
    email = person.email if person else None
    name = name_of(person.given_name, person.family_name) if person else None
    data = {"lead": contact_id, "email": email, "name": name, "channel": channel}
    data |= {"status": str(status), "at": iso(now)}
    key = occurrence("consent", contact_id, channel, status, f"{now:%Y%m%dT%H%M%S%f}", source)
    return Event("consent.changed", key, f"lead:{contact_id}", "leads", data)


def keep_consent_records(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append consent records (one statement for all of them)."""
    if rows:
        session.execute(insert(ConsentRecord.__table__), rows)  # type: ignore[attr-defined]


def add_tags(session: Session, tags: Mapping[int, Iterable[str]], *, now: datetime) -> set[int]:
    """Add tags to contacts (by id), in two statements; the ids whose tags changed."""
    if not tags:
        return set()
    changed = []
    for contact_id, current in session.execute(
        select(Contact.id, Contact.tags).where(col(Contact.id).in_(list(tags)))
    ):
        merged = sorted(set(current) | set(tags[contact_id or 0]))
        if merged != sorted(current):
            changed.append({"b_id": contact_id, "b_tags": merged})
    if changed:
        table = Contact.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(tags=bindparam("b_tags"), updated_at=now),
            changed,
        )
    return {row["b_id"] for row in changed}


def _touch(contact: Contact, source_code: str | None, member_id: int | None, now: datetime) -> None:
    """Keep first and last touch: the first source code and creator stay, the last move on."""
    if source_code:
        contact.first_source_code = contact.first_source_code or source_code
        contact.last_source_code = source_code
    if member_id:
        contact.first_member_id = contact.first_member_id or member_id
        contact.last_member_id = member_id
    contact.updated_at = now


def _own(signup: "Signup", contact: Contact, channel: str) -> bool:
    """Whether the signup gave the very address the consent is for: a form with someone's email
    and another phone grants no texts to the phone on record."""
    try:
        if channel == "email":
            return normalize_email(signup.values.get("email")) == contact.email_normalized
        if channel == "sms":
            return normalize_phone(signup.values.get("phone")) == contact.phone_normalized
    except ContactError:
        return False
    return True


def consent_flags(values: Mapping[str, Any]) -> dict[str, bool]:
    """`{"email": true, "sms": "yes"}` -> channel -> bool, for the channels Rally knows."""
    truthy = {"1", "true", "yes", "on", "y"}
    return {
        channel: value is True or str(value).strip().lower() in truthy
        for channel, value in values.items()
        if channel in CHANNELS
    }


@dataclass(frozen=True)
class Signup:
    """A signup form's values (`name`, `email`, `phone`, `zip`, `source_code`, `consent` per
    channel) and where they came from; `confirmed` False records the consents it grants as
    pending, to be confirmed by the person."""

    values: Mapping[str, Any]
    source: str
    member_id: int | None = None
    platform: str | None = None
    handle: str | None = None
    confirmed: bool = True


def person_of(signup: Signup) -> Person:
    """The person a signup describes; a bad email or phone raises `ContactError`."""
    values = signup.values
    name = str(values.get("name") or "").split()
    return Person(
        email=normalize_email(values.get("email")),
        phone=normalize_phone(values.get("phone")),
        given_name=values.get("given_name") or (name[0] if name else None),
        family_name=values.get("family_name") or (" ".join(name[1:]) or None),
        postal_code=values.get("zip") or values.get("postal_code"),
        platform=signup.platform,
        handle=signup.handle,
    )


def record_people(
    session: Session, signups: Sequence[Signup], *, now: datetime
) -> list[int | ContactError | None]:
    """For each signup in order: its contact's id, found or created, with the consents it
    grants (never undoing a STOP) and its touch; None when it gives no way to reach the person;
    or the `ContactError` of a bad email or phone. A batch costs a few statements, not a few
    per person."""
    return [
        c.id if isinstance(c, Contact) else c
        for c in record_contacts(session, signups, now=now).contacts
    ]


@dataclass(frozen=True)
class Recorded:
    """What `record_contacts` did: each signup's contact (or why there is none, as
    `record_people` says), and each consent newly on record as (the signup's place, channel,
    status)."""

    contacts: list[Contact | ContactError | None]
    granted: list[tuple[int, str, str]]


def record_contacts(session: Session, signups: Sequence[Signup], *, now: datetime) -> Recorded:
    """`record_people`, answered with the contacts themselves and the consents given."""
    people: list[Person | ContactError | None] = []
    for signup in signups:
        try:
            person = person_of(signup)
        except ContactError as exc:
            people.append(exc)
            continue
        people.append(person if person.email or person.phone or person.handle else None)
    known = KnownContacts(session, [p for p in people if isinstance(p, Person)])
    contacts: list[Contact | ContactError | None] = []
    for signup, who in zip(signups, people, strict=True):
        if not isinstance(who, Person):
            contacts.append(who)
            continue
        contact = known.find_or_add(session, who, now=now)
        _touch(contact, signup.values.get("source_code"), signup.member_id, now)
        contacts.append(contact)
    session.flush()
    return Recorded(contacts, _grant(session, signups, contacts, now=now))


def _grant(
    session: Session,
    signups: Sequence[Signup],
    contacts: Sequence[Contact | ContactError | None],
    *,
    now: datetime,
) -> list[tuple[int, str, str]]:
    """The consents the signups grant (pending, for a signup still to be confirmed), in bulk,
    as (the signup's place, channel, status). Consent on record stays as it is: granted
    already, pending, or revoked by the person's STOP, which a form never undoes."""
    ids = [c.id for c in contacts if isinstance(c, Contact) and c.id is not None]
    on_record = set(
        session.exec(
            select(ContactConsent.contact_id, ContactConsent.channel).where(
                col(ContactConsent.contact_id).in_(ids)
            )
        ).all()
    )
    new: dict[tuple[int, str], dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    given: list[tuple[int, str, str]] = []
    for place, (signup, contact) in enumerate(zip(signups, contacts, strict=True)):
        if not isinstance(contact, Contact) or contact.id is None:
            continue
        for channel, granted in consent_flags(signup.values.get("consent") or {}).items():
            key = (contact.id, channel)
            if (
                granted
                and key not in on_record
                and key not in new
                and _own(signup, contact, channel)
            ):
                new[key] = {
                    "contact_id": contact.id,
                    "channel": channel,
                    "status": ConsentStatus.GRANTED if signup.confirmed else ConsentStatus.PENDING,
                    "source": signup.source,
                    "changed_at": now,
                }
                given.append((place, channel, new[key]["status"]))
                wording = (signup.values.get(CONSENT_WORDING) or {}).get(channel)
                records.append(
                    {
                        **new[key],
                        "wording": wording,
                        "origin": signup.values.get(CONSENT_ORIGIN),
                        "recorded_at": now,
                    }
                )
    insert_rows(session, ContactConsent, list(new.values()))
    keep_consent_records(
        session, [{k: v for k, v in r.items() if k != "changed_at"} for r in records]
    )
    return given
