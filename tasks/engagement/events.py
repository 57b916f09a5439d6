"""Engagement events: one shape for every source, stored once per (source, external id).

A record from a webhook, a poll, a file or the simulator becomes a row here; a redelivery of a
record already stored only counts (`deliveries`) and is never processed twice. A record that
cannot be used is an `EventError` naming the record and the field; the rest of its batch goes on.
"""

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Engine, bindparam, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from config.errors import RallyError
from config.followups import EVENT_TYPES
from store.bulk import copy_rows, one_of, sqlite_insert
from store.models import Campaign, Creative, Creator, EngagementEvent, RosterMember
from tasks.campaigns.configs import campaign_followups
from tasks.engagement import consent

FIELDS = ("source", "external_id", "type", "actor", "creator", "video", "text", "time")


EMPTY_EVENT: dict[str, Any] = {
    "campaign_id": None,
    "member_id": None,
    "contact_id": None,
    "actor": None,
    "video_id": None,
    "text": None,
    "deliveries": 1,
    "payload": {},
    "processed_at": None,
}


def new_event(
    *,
    source: str,
    external_id: str,
    type: str,
    occurred_at: datetime,
    received_at: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """An `engagement_events` row: every column, so a batch of them inserts as one statement."""
    return (
        EMPTY_EVENT
        | fields
        | {
            "source": source,
            "external_id": external_id,
            "type": type,
            "occurred_at": occurred_at,
            "received_at": received_at,
        }
    )


class EventError(ValueError):
    """A record that cannot be an event; `where` names the record, `field` the field."""

    def __init__(self, where: str, field: str, message: str) -> None:
        super().__init__(f"{where}: {field}: {message}")
        self.where, self.field, self.message = where, field, message


@dataclass(frozen=True)
class Member:
    campaign_id: int
    member_id: int


class Resolver:
    """Finds an event's campaign and roster member from its campaign slug, creator handle or
    video id; the lookups are loaded once per ingest."""

    def __init__(self, session: Session) -> None:
        self.campaigns = dict(session.exec(select(Campaign.slug, Campaign.id)).all())
        self._listened: dict[int | None, set[str] | None] = {}
        for campaign in session.exec(select(Campaign)):
            with contextlib.suppress(RallyError):  # processing will report it
                rules = campaign_followups(session, campaign).spec.rules
                self._listened[campaign.id] = {k for rule in rules for k in rule.when.types}
        self._members: dict[tuple[Any, int | None], tuple[int | None, int | None]] = {}
        self.by_handle: dict[str, list[Member]] = {}
        query = select(Creator.handle, RosterMember.campaign_id, RosterMember.id).join(
            Creator, col(Creator.id) == col(RosterMember.creator_id)
        )
        for handle, campaign_id, member_id in session.exec(query):
            self.by_handle.setdefault(handle.lower(), []).append(
                Member(campaign_id, member_id or 0)
            )
        self.by_video = {
            video: Member(campaign_id, member_id)
            for video, campaign_id, member_id in session.exec(
                select(Creative.platform_video_id, Creative.campaign_id, Creative.member_id).where(
                    col(Creative.platform_video_id).is_not(None)
                )
            )
        }

    def listened(self, campaign_id: int | None) -> set[str] | None:
        """The event types some follow-up rule of the campaign fires on (None: any type, as
        when its rules cannot be read, which processing will then report)."""
        return self._listened.get(campaign_id)

    def member(self, record: Mapping[str, Any], where: str) -> tuple[int | None, int | None]:
        slug = record.get("campaign")
        campaign_id = self.campaigns.get(slug) if slug else None
        if slug and campaign_id is None:
            raise EventError(where, "campaign", f"no campaign {slug!r}")
        video = record.get("video")
        if video and str(video) in self.by_video:
            found = self.by_video[str(video)]
            return found.campaign_id, found.member_id
        creator = record.get("creator")
        known = self._members.get((creator, campaign_id)) if isinstance(creator, str) else None
        if known is not None:
            return known
        handle = str(creator or "").removeprefix("@").lower()
        if not handle:
            if campaign_id is None:
                raise EventError(where, "creator", "give the creator's handle or the campaign")
            return campaign_id, None
        members = [
            m for m in self.by_handle.get(handle, []) if campaign_id in (None, m.campaign_id)
        ]
        if not members:
            raise EventError(where, "creator", f"@{handle} is on no campaign's roster")
        if len(members) > 1:
            raise EventError(where, "campaign", f"@{handle} is on several campaigns: name one")
        resolved = members[0].campaign_id, members[0].member_id
        if isinstance(creator, str):
            self._members[(creator, campaign_id)] = resolved
        return resolved


def parse_time(value: Any, where: str) -> datetime:
    """ISO 8601 with a zone (`2027-02-03T18:04:05Z`) or unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_unix(value, where)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.isascii() and text.isdigit():
            return _from_unix(float(text), where)
        try:
            moment = datetime.fromisoformat(text)  # takes a trailing Z as UTC
        except ValueError:
            raise EventError(where, "time", f"not a time: {value!r}") from None
        if moment.tzinfo is None:
            raise EventError(where, "time", f"give a time zone (Z or +hh:mm): {value!r}")
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    raise EventError(where, "time", "missing")


def _from_unix(seconds: float, where: str) -> datetime:
    if not 0 <= seconds < 253_402_300_800:  # 1970 to the year 9999 (NaN fails too)
        raise EventError(where, "time", f"unix seconds from 1970 expected, got {seconds!r:.40}")
    return datetime.fromtimestamp(seconds, UTC)


def _text(record: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> Any:
    value = record.get(name)
    if type(value) is str and value:
        return value
    if value is None or value == "":
        if required:
            raise EventError(where, name, "missing")
        return None
    if not isinstance(value, str | int):
        raise EventError(where, name, f"must be text, not {type(value).__name__}")
    return str(value)


def event_row(
    record: Mapping[str, Any], where: str, resolver: Resolver, *, now: datetime
) -> dict[str, Any]:
    """The `engagement_events` row of one record, or an `EventError`."""
    if not isinstance(record, Mapping):
        raise EventError(where, "record", "must be an object of event fields")
    kind = _text(record, "type", where, required=True)
    if kind not in EVENT_TYPES:
        raise EventError(where, "type", f"{kind!r} is not one of {', '.join(EVENT_TYPES)}")
    campaign_id, member_id = resolver.member(record, where)
    payload = record.get("payload")
    source, text = _text(record, "source", where, required=True), _text(record, "text", where)
    listened = resolver.listened(campaign_id)
    return new_event(
        source=source,
        external_id=_text(record, "external_id", where, required=True),
        type=kind,
        occurred_at=parse_time(record.get("time"), where),
        received_at=now,
        campaign_id=campaign_id,
        member_id=member_id,
        actor=(_text(record, "actor", where) or "").removeprefix("@") or None,
        video_id=_text(record, "video", where),
        text=text,
        payload=dict(payload) if isinstance(payload, Mapping) else dict(record),
        # Nothing to decide (no rule fires on its type, and it is no STOP, START, YES or HELP):
        # stored processed, so the rules' pass never has to read and mark it.
        processed_at=None
        if listened is None or kind in listened or consent_command(source, kind, text)
        else now,
    )


def consent_command(source: str, kind: str, text: str | None) -> bool:
    """Whether the event is a person's STOP, START, YES or HELP on the channel they used."""
    channel = consent.event_channel(source, kind)
    return bool(
        channel
        and (
            consent.command(text)
            or consent.confirms(text, channel)
            or consent.asks_for_help(text, channel)
        )
    )


@dataclass
class IngestReport:
    received: int = 0
    stored: int = 0
    repeated: int = 0  # redeliveries of events already stored: counted, not processed again
    errors: list[EventError] = field(default_factory=list)

    def add(self, other: "IngestReport") -> None:
        self.received += other.received
        self.stored += other.stored
        self.repeated += other.repeated
        self.errors += other.errors


def store_events(
    session: Session, rows: Sequence[dict[str, Any]], *, count: bool = True
) -> tuple[int, int]:
    """Insert rows new on (source, external id); a repeat adds to the stored row's
    `deliveries`. One statement per batch. Returns (new, repeated); without `count` (the
    webhooks' writer, which needs no figures) SQLite is spared the two queries that count, and
    the figures are (0, 0)."""
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["source"], row["external_id"])
        first = unique.get(key)
        unique[key] = row if first is None else first | {"deliveries": first["deliveries"] + 1}
    if not unique:
        return 0, 0
    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        new = _store_new(session, unique)
        return new, len(rows) - new
    # SQLite has one writer: the rows new to it are the ones past its newest id.
    newest = (session.execute(sa_select(func.max(table.c.id))).scalar() or 0) if count else 0
    # Multi-row INSERTs (`new_event`'s rows, every column each), not one step per row: the
    # webhooks' writer thread gives up the GIL at each SQLite call and may wait for the event
    # loop to hand it back; one call a group keeps a commit from queueing behind the requests.
    sqlite_insert(session, table, list(unique.values()), then=_ADD_DELIVERIES)
    if not count:
        return 0, 0
    new = session.execute(sa_select(func.count()).where(table.c.id > newest)).scalar_one()
    return new, len(rows) - new


_ADD_DELIVERIES = (
    " ON CONFLICT (source, external_id) DO UPDATE"
    " SET deliveries = engagement_events.deliveries + excluded.deliveries"
)


@cache
def _upsert(dialect: Any) -> Any:
    """The insert that adds a stored event's deliveries instead of a second row, built once
    per dialect: building `excluded` copies the whole table's columns, which cost the busiest
    writer more than the insert itself."""
    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(
        index_elements=["source", "external_id"],
        set_={"deliveries": table.c.deliveries + statement.excluded.deliveries},
    )


def _store_new(session: Session, unique: dict[tuple[str, str], dict[str, Any]]) -> int:
    """PostgreSQL: the events not stored yet go in by COPY (an upsert would cost each row a
    speculative insertion, and an insert a statement), the redelivered ones are counted with
    one update; if another writer stored one of them meanwhile, the batch goes again as an
    upsert. Returns how many were new."""
    import psycopg  # PostgreSQL only: SQLite stores never load it

    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    stored = _stored(session, list(unique))
    fresh = [row for key, row in unique.items() if key not in stored]
    try:
        with session.begin_nested():
            if fresh:
                copy_rows(session, table, fresh)
    except (IntegrityError, psycopg.IntegrityError):
        stored = _stored(session, list(unique))
        session.execute(_upsert(postgresql), list(unique.values()))
        return len(unique) - len(stored)
    if stored:
        session.execute(
            update(table)
            .where(
                table.c.source == bindparam("b_source"),
                table.c.external_id == bindparam("b_id"),
            )
            .values(deliveries=table.c.deliveries + bindparam("b_more")),
            [{"b_source": s, "b_id": e, "b_more": unique[(s, e)]["deliveries"]} for s, e in stored],
        )
    return len(fresh)


def _stored(session: Session, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of `keys` are stored already: one query per source, the ids as one array."""
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    return {
        (source, external_id)
        for source, ids in by_source.items()
        for external_id in session.execute(
            sa_select(table.c.external_id).where(
                table.c.source == source,
                one_of(session, table.c.external_id, ids),
            )
        ).scalars()
    }


def ingest(
    engine: Engine,
    records: Iterable[tuple[str, Any]],
    *,
    now: datetime,
    batch: int = 2000,
    campaign_id: int | None = None,
) -> IngestReport:
    """Store `(where, record)` pairs in batches, each its own transaction; bad records are
    reported and the good ones kept. With `campaign_id`, an event of any other campaign is
    one of the bad records (the API's campaign-scoped ingest)."""
    from store.db import transaction

    report = IngestReport()
    with transaction(engine, write=False) as session:
        resolver = Resolver(session)
    rows: list[dict[str, Any]] = []
    wheres: list[str] = []
    campaigns: dict[tuple[str, str], int | None] = {}  # this batch's keys -> their campaign

    def flush() -> None:
        with transaction(engine) as session:
            theirs = _theirs(session, rows)
            report.errors.extend(
                _not_a_repeat(where) for where, row in zip(wheres, rows, strict=True)
                if (row["source"], row["external_id"]) in theirs
            )  # fmt: skip
            ours = [row for row in rows if (row["source"], row["external_id"]) not in theirs]
            new, repeated = store_events(session, ours)
        report.stored += new
        report.repeated += repeated
        rows.clear()
        wheres.clear()
        campaigns.clear()  # a stored batch's keys are found by `_theirs`

    for where, record in records:
        report.received += 1
        try:
            if isinstance(record, EventError):
                raise record
            row = event_row(record, where, resolver, now=now)
            if campaign_id is not None and row["campaign_id"] != campaign_id:
                raise EventError(where, "campaign", "the event is another campaign's")
            first = campaigns.setdefault((row["source"], row["external_id"]), row["campaign_id"])
            if _apart(first, row["campaign_id"]):
                raise _not_a_repeat(where)
            rows.append(row)
            wheres.append(where)
        except EventError as exc:
            report.errors.append(exc)
        if len(rows) >= batch:
            flush()
    if rows:
        flush()
    return report


def _not_a_repeat(where: str) -> EventError:
    return EventError(
        where,
        "external_id",
        "another campaign's event has this source and id; ids must differ across campaigns "
        "(prefix them with the campaign's)",
    )


def _theirs(session: Session, rows: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """The (source, id) keys of `rows` stored already for another campaign than the row's.
    A key is stored once in the whole store, so such a row is no repeat: counting it as one
    would lose it without a word."""
    by_source: dict[str, dict[str, int | None]] = {}
    for row in rows:
        by_source.setdefault(row["source"], {})[row["external_id"]] = row["campaign_id"]
    table = EngagementEvent.__table__  # type: ignore[attr-defined]
    found = set()
    for source, ids in by_source.items():
        stored = session.execute(
            sa_select(table.c.external_id, table.c.campaign_id).where(
                table.c.source == source, one_of(session, table.c.external_id, ids)
            )
        )
        found |= {(source, key) for key, campaign in stored if _apart(campaign, ids[key])}
    return found


def _apart(one: int | None, other: int | None) -> bool:
    """Whether two events' campaigns are two different ones (an event of none may be one
    whose campaign is known now)."""
    return one is not None and other is not None and one != other
