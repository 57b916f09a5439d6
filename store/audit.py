"""The append-only, hash-chained audit log.

Each entry's hash covers its own fields and the previous entry's hash, so editing, deleting or
reordering any entry breaks the chain at that entry. The one-row `audit_head` names the last
entry: appenders lock it (on PostgreSQL; SQLite has one writer at a time), which keeps the chain
linear under concurrent writers, and `verify` compares it so that deleting the newest entries
is caught too.

`record` collects a transaction's entries and they are written when it commits, in one insert:
a batch of a hundred decisions costs one append, and the head is locked only for the moment of
the commit. A transaction that rolls back leaves no entries.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, TextIO

import orjson
from pydantic_core import to_jsonable_python
from sqlalchemy import bindparam, insert, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.models import AuditEvent, AuditHead
from store.types import utcnow

GENESIS = "0" * 64


@dataclass(frozen=True)
class Change:
    """A state change to record: who did what to which entity, and what changed."""

    actor: str
    action: str
    entity_type: str
    entity_id: str | int
    summary: str
    changes: dict[str, Any] = field(default_factory=dict)


HASHED = (
    "seq",
    "at",
    "actor",
    "action",
    "entity_type",
    "entity_id",
    "summary",
    "changes",
    "prev_hash",
)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry: its fields and the previous hash, in canonical JSON (compact,
    keys sorted, UTF-8), written by orjson, several times faster than `json` (a payout run
    hashes an entry per posting). Where orjson cannot write a value (an integer beyond 64
    bits), it is `legacy_hash`."""
    body = _body(entry)
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return legacy_hash(entry)
    return hashlib.sha256(canonical).hexdigest()


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def legacy_hash(entry: Mapping[str, Any]) -> str:
    """The hash as Python's `json` writes the canonical JSON: the same bytes as orjson's but
    for some floats (`1.5e-07`, not `1.5e-7`); how entries written before `entry_hash` used
    orjson were hashed, and those orjson cannot write."""
    return hashlib.sha256(_CANONICAL.encode(_body(entry)).encode()).hexdigest()


def _body(entry: Mapping[str, Any]) -> list[Any]:
    body = [entry[name] for name in HASHED]
    body[1] = body[1].isoformat()
    return body


PENDING = "audit.pending"  # the key of a session's unwritten entries in `Session.info`


def record(session: Session, changes: Iterable[Change]) -> int:
    """Add entries for `changes` to the caller's transaction; they are written as it commits."""
    pending = list(changes)
    if pending:
        at = utcnow()
        session.info.setdefault(PENDING, []).extend((at, change) for change in pending)
    return len(pending)


@sa_event.listens_for(OrmSession, "before_commit")
def _write_pending(session: OrmSession) -> None:
    pending = session.info.pop(PENDING, None)
    if pending:
        _append(session, pending)


@sa_event.listens_for(OrmSession, "after_rollback")
def _drop_pending(session: OrmSession) -> None:
    session.info.pop(PENDING, None)


def _append(session: OrmSession, pending: list[tuple[datetime, Change]]) -> None:
    """Chain `pending` onto the newest entry, holding the head's lock (on PostgreSQL), and
    write them with one bulk insert."""
    lock = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
    seq, prev_hash = session.execute(lock).one()
    entries = []
    for at, change in pending:
        seq += 1
        entry = {
            "seq": seq,
            "at": at,
            "actor": change.actor,
            "action": change.action,
            "entity_type": change.entity_type,
            "entity_id": str(change.entity_id),
            "summary": change.summary,
            "changes": to_jsonable_python(change.changes),
            "prev_hash": prev_hash,
        }
        entry["hash"] = prev_hash = entry_hash(entry)
        entries.append(entry)
    connection = session.connection()  # Core: the ORM's bulk insert has nothing to add here
    connection.execute(_adding_entries(), entries)
    connection.execute(_moving_head(), {"seq": seq, "hash": prev_hash})


@cache
def _adding_entries() -> Any:
    return insert(AuditEvent.__table__)  # type: ignore[attr-defined]


@cache
def _moving_head() -> Any:
    head = AuditHead.__table__  # type: ignore[attr-defined]
    return update(head).where(head.c.id == 1).values(seq=bindparam("seq"), hash=bindparam("hash"))


@dataclass(frozen=True)
class Verification:
    entries: int
    first_bad: int | None = None
    problem: str | None = None
    last_hash: str = GENESIS

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def _entries(session: Session, *, after: int = 0) -> Iterator[AuditEvent | int]:
    """Entries in order, a page at a time; an entry whose stored values can no longer be read
    (a time or JSON edited into nonsense) comes as its bare sequence number instead."""
    seq = col(AuditEvent.seq)
    while seqs := session.exec(select(seq).where(seq > after).order_by(seq).limit(1000)).all():
        try:
            yield from session.exec(select(AuditEvent).where(seq.in_(seqs)).order_by(seq)).all()
        except (ValueError, TypeError):  # JSONDecodeError is a ValueError
            for number in seqs:
                try:
                    yield session.exec(select(AuditEvent).where(seq == number)).one()
                except (ValueError, TypeError):
                    yield number
        after = seqs[-1]


def verify(session: Session) -> Verification:
    """Walk the chain from the first entry; report the first entry that does not hold."""
    expected, prev_hash, count = 1, GENESIS, 0
    for event in _entries(session):
        if isinstance(event, int):
            if event == expected:
                return Verification(
                    count, event, "cannot be read (a stored value is malformed): edited"
                )
            return Verification(count, expected, "missing: deleted")
        what = f"{event.action} on {event.entity_type} {event.entity_id}"
        if event.seq != expected:
            gap = (
                "deleted"
                if event.seq == expected + 1
                else f"deleted with entries up to {event.seq - 1}"
            )
            return Verification(count, expected, f"missing: {gap}")
        if event.prev_hash != prev_hash:
            return Verification(
                count,
                event.seq,
                f"{what} does not follow the entry before it: replaced or reordered",
            )
        fields = {name: getattr(event, name) for name in HASHED}
        if entry_hash(fields) != event.hash and legacy_hash(fields) != event.hash:
            return Verification(
                count, event.seq, f"{what} does not match its hash: edited after it was written"
            )
        expected, prev_hash, count = event.seq + 1, event.hash, count + 1
    head = session.get(AuditHead, 1)
    if head is None:
        return Verification(count, expected, "the audit head row is missing: deleted")
    if head.seq > count:
        return Verification(
            count, expected, f"missing: deleted with entries up to {head.seq}, the newest"
        )
    if head.seq != count or head.hash != prev_hash:
        return Verification(
            count, head.seq, "the audit head does not match the newest entry: edited"
        )
    return Verification(count, last_hash=prev_hash)


def export(session: Session, out: TextIO, *, since: int = 0) -> int:
    """Write entries after `since` as JSON lines; return how many were written."""
    written = 0
    for event in _entries(session, after=since):
        if isinstance(event, int):
            raise RallyError(f"audit entry {event} cannot be read: run `rally audit verify`")
        out.write(json.dumps(event.model_dump(mode="json"), ensure_ascii=False) + "\n")
        written += 1
    return written
