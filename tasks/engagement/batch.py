"""One batch of engagement events decided and written in the caller's transaction: the
people behind the events, consent commands (STOP / START, and YES to confirm), each rule that
fires, its verdict
(queued, delayed or withheld and why), the follow-ups and their outbox rows, the leads whose
record changed, and the events marked processed.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, String, bindparam, delete, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, col

from config.followups import Rule
from store.bulk import insert_rows
from store.db import Lock, advisory_lock
from store.models import (
    ConsentStatus,
    Contact,
    EngagementEvent,
    FollowUp,
    FollowUpStatus,
    OutboxMessage,
)
from tasks.engagement import consent as consent_rules
from tasks.engagement.confirm import confirm, help_text, last_asked_by, subscribed_text
from tasks.engagement.messages import (
    OUTBOX_CHANNEL,
    Recipient,
    channel_messages,
    followup_messages,
    no_address,
    platform_limit,
    too_late,
)
from tasks.engagement.rules import (
    RENDER_ERRORS,
    CampaignRules,
    Event,
    Sent,
    Slot,
    due_at,
    greeting,
    minute,
    public_handle,
    quiet_hours_of,
)
from tasks.engagement.signups import CampaignSignup, record_signups
from tasks.leads.contacts import (
    ContactError,
    add_tags,
    consent_changed,
    consents,
    contacts_by_handle,
    set_consent,
)
from tasks.leads.opt_out import withdraw_queued
from tasks.leads.records import queue_sync
from tasks.webhooks.events import Event as Happened
from tasks.webhooks.events import emit

SOCIAL = {"tiktok", "instagram", "youtube"}
EVENTS = EngagementEvent.__table__  # type: ignore[attr-defined]
_EVENTS = EVENTS.c
FOLLOWUPS = FollowUp.__table__  # type: ignore[attr-defined]
_FOLLOWUPS = FOLLOWUPS.c
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_OUTBOX = OUTBOX.c


def _take_back(counts: Counter[str], kind: str) -> None:
    """Count one `kind` fewer (a decision made again), none left kept as no entry."""
    counts[kind] -= 1
    if counts[kind] <= 0:
        del counts[kind]


def _unnested(*columns: tuple[str, list[Any], Any]) -> Any:
    """Rows given as one PostgreSQL array a column (`name`, values, element type), to join a
    table to in one statement whatever their number."""
    arrays = [
        bindparam(f"given_{name}", values, type_=ARRAY(kind)) for name, values, kind in columns
    ]
    names = [name for name, _, _ in columns]
    return func.unnest(*arrays).table_valued(*names).render_derived(name="given")


@dataclass
class ProcessReport:
    events: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # queued, delayed, withheld reasons
    by_rule: Counter[str] = field(default_factory=Counter)
    opted_out: int = 0
    opted_in: int = 0

    def add(self, other: "ProcessReport") -> None:
        self.events += other.events
        self.outcomes.update(other.outcomes)
        self.by_rule.update(other.by_rule)
        self.opted_out += other.opted_out
        self.opted_in += other.opted_in

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "outcomes": dict(self.outcomes),
            "by_rule": dict(self.by_rule),
            "opted_out": self.opted_out,
            "opted_in": self.opted_in,
        }


def _signup(event: Event) -> CampaignSignup:
    """The signup an event carries (its payload's `contact`), from a social account or not."""
    social = event.source in SOCIAL
    # What the consent records keep of a page's signup comes only from the page itself, never
    # from an event's payload (a file could claim any words or address).
    values = {k: v for k, v in event.contact.items() if not str(k).startswith("_")}
    return CampaignSignup(
        event.campaign_id,
        values,
        event.contact.get("source_code"),
        f"{event.source}:{event.external_id}",
        member_id=event.member_id,
        platform=event.source if social else None,
        handle=event.actor if social else None,
        confirmed=event.contact.get("confirmed") is not False,  # the signup page's wait
    )


@dataclass(frozen=True)
class Placed:
    """A follow-up queued under its campaign's rate limit, with what placed it in its minute,
    to place it again (`Batch._hold_slots`)."""

    row: dict[str, Any]
    rules: CampaignRules
    rule: Rule
    event: Event


class Batch:
    """One batch of events, decided and written in the caller's transaction."""

    def __init__(self, session: Session, rules: dict[int, CampaignRules], now: datetime) -> None:
        self.session, self.rules, self.now = session, rules, now
        self.campaigns: set[int] = set()  # whose rules fired on this batch's events
        self.report = ProcessReport()
        self.outbox: list[dict[str, Any]] = []
        self.followups: list[dict[str, Any]] = []
        self.reopened: list[dict[str, Any]] = []
        self.event_contacts: dict[int, int] = {}
        self.leads: dict[int, set[int]] = {}  # campaign -> people whose consent or tags changed
        self.tags: dict[int, set[str]] = {}  # contact -> tags the rules add
        self.tagged_on: dict[int, set[int]] = {}  # contact -> campaigns whose rules tagged them
        self.again: set[int] = set()  # events withheld here for a consent confirmed since
        self.happened: dict[int, list[Happened]] = {}  # campaign -> its webhook events
        self.rows: dict[tuple[int, str, int], dict[str, Any]] = {}  # follow-ups decided here
        self.placed: list[Placed] = []  # follow-ups queued under a rate limit, in order
        self.counted: Counter[Slot] = Counter()  # others' follow-ups a minute, before deciding

    def run(self, events: list[Event]) -> ProcessReport:
        self.report.events = len(events)
        fired = {e.id: self.rules[e.campaign_id].matching(e) for e in events if e.campaign_id}
        self.campaigns = {e.campaign_id for e in events if e.campaign_id and fired.get(e.id)}
        commands = {
            e.id: cmd
            for e in events
            if consent_rules.event_channel(e.source, e.type)
            and (cmd := consent_rules.command(e.text))
        }
        yes, helps = set(), set()
        for e in events:
            channel = consent_rules.event_channel(e.source, e.type)
            if consent_rules.confirms(e.text, channel):
                yes.add(e.id)
            elif consent_rules.asks_for_help(e.text, channel):
                helps.add(e.id)
        contacts = self._contacts(
            [e for e in events if fired.get(e.id) or e.id in commands or e.id in yes | helps]
        )
        self._lock_people(set(contacts.values()))
        self._load_state(set(contacts.values()))
        for event in events:
            contact_id = contacts.get(event.id)
            if contact_id is None:
                continue
            self.event_contacts[event.id] = contact_id
            if event.id in commands:
                self._consent(event, contact_id, commands[event.id])
                continue
            if event.id in yes and self._confirm(event, contact_id):
                continue  # a YES to anything else is a message like any other
            if event.id in helps:
                self._help(event, contact_id)
                continue
            for rule in fired.get(event.id, []):
                self._decide(event, rule, contact_id)
        self._write([e.id for e in events])
        self._hold_slots()
        return self.report

    # --- loading -------------------------------------------------------------------------

    def _contacts(self, events: list[Event]) -> dict[int, int]:
        """The contact of each event's actor: by platform handle, or from the signup form it
        carries, which makes them a lead of the event's campaign (`record_signups`)."""
        found: dict[int, int] = {}
        social: dict[str, list[Event]] = {}
        signups: list[Event] = []
        for event in events:
            if isinstance(event.contact, dict):
                signups.append(event)
            elif event.actor and event.source in SOCIAL:
                social.setdefault(event.source, []).append(event)
        recorded = record_signups(self.session, [_signup(e) for e in signups], now=self.now)
        for event, contact_id in zip(signups, recorded, strict=True):
            if isinstance(contact_id, ContactError):
                self.report.outcomes[f"unusable contact: {contact_id}"] += 1
            elif contact_id is not None:
                found[event.id] = contact_id
        for platform, group in social.items():
            ids = contacts_by_handle(
                self.session, platform, {e.actor for e in group if e.actor}, now=self.now
            )
            found |= {e.id: ids[e.actor] for e in group if e.actor in ids}
        return found

    def _lock_people(self, contact_ids: set[int]) -> None:
        """Hold the people's rows until the batch commits, in id order (so two batches never
        wait on each other in a circle): what another batch decides for them meanwhile is
        read after it commits. SQLite's one writer needs no such lock."""
        if contact_ids and self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(
                sa_select(col(Contact.id))
                .where(col(Contact.id).in_(sorted(contact_ids)))
                .order_by(col(Contact.id))
                .with_for_update()
            ).all()

    def _load_state(self, contact_ids: set[int]) -> None:
        self.consent = consents(self.session, contact_ids)
        self.people = {
            row[0]: Recipient(*row)
            for row in self.session.execute(
                sa_select(*(col(getattr(Contact, name)) for name in Recipient._fields)).where(
                    col(Contact.id).in_(contact_ids)
                )
            )
        }
        rows = self.session.execute(
            sa_select(
                col(FollowUp.campaign_id),
                col(FollowUp.rule_id),
                col(FollowUp.contact_id),
                col(FollowUp.status),
                col(FollowUp.channel),
                col(FollowUp.due_at),
                col(FollowUp.id),
            ).where(col(FollowUp.contact_id).in_(contact_ids))
        ).all()
        self.decided = {(c, r, p): (s, i) for c, r, p, s, _, _, i in rows}
        self.waiting = {(p, ch) for _, _, p, s, ch, _, _ in rows if s == FollowUpStatus.QUEUED}
        self.sent = Sent()
        horizon = self.now - timedelta(days=8)
        for _, _, contact_id, status, channel, due, _ in rows:
            if status in (FollowUpStatus.QUEUED, FollowUpStatus.SENT) and due > horizon:
                self.sent.remember(contact_id, channel, due)
        self._count_slots()

    def _count_slots(self) -> None:
        """Every follow-up queued or sent from this minute on in the campaigns whose rules fired
        on this batch (everyone's, not only its own people's), so that their rate limits hold
        across batches. SQLite's one writer makes these counts exact until the batch commits;
        on PostgreSQL another worker's batch may take some of the same minutes meanwhile, so
        there the batch places its follow-ups again at its end (`_hold_slots`)."""
        limited = self._limited()
        self.counted = self._slots_taken(limited) if limited else Counter()
        self.sent.per_minute.update(self.counted)

    def _limited(self) -> set[tuple[int, str]]:
        """The (campaign, channel) rate limits of the campaigns whose rules fired."""
        return {
            (campaign_id, channel)
            for campaign_id in self.campaigns
            for channel in self.rules[campaign_id].followups.spec.rate_limits
        }

    def _slots_taken(self, limited: set[tuple[int, str]]) -> Counter[Slot]:
        """How many follow-ups are queued or sent in each minute from this one on, for the
        `limited` campaigns' channels, as the store has them now (counted by the store: a busy
        campaign has thousands waiting)."""
        due = col(FollowUp.due_at)
        postgres = self.session.get_bind().dialect.name == "postgresql"
        # SQLite keeps times as text, `2027-02-03 18:04:05.000000` in UTC
        at = func.date_trunc("minute", due) if postgres else func.substr(due, 1, 16)
        rows = self.session.execute(
            sa_select(col(FollowUp.campaign_id), col(FollowUp.channel), at, func.count())
            .where(
                col(FollowUp.status).in_((FollowUpStatus.QUEUED, FollowUpStatus.SENT)),
                due >= minute(self.now),
                col(FollowUp.campaign_id).in_(sorted({c for c, _ in limited})),
            )
            .group_by(col(FollowUp.campaign_id), col(FollowUp.channel), at)
        )
        taken: Counter[Slot] = Counter()
        for campaign_id, channel, start, count in rows:
            if (campaign_id, channel) in limited:
                start = start if postgres else datetime.fromisoformat(start).replace(tzinfo=UTC)
                taken[(campaign_id, channel, start.astimezone(UTC))] += count
        return taken

    # --- deciding ------------------------------------------------------------------------

    def _actor(self, event: Event, contact_id: int) -> dict[str, Any]:
        person = self.people.get(contact_id)
        name = " ".join(filter(None, (person.given_name, person.family_name))) if person else ""
        handle = (
            event.handle
            or public_handle(event.actor)
            or public_handle(person.handle if person else None)
        )
        return {"handle": handle or "", "name": name, "greeting": greeting(name, handle)}

    def _decide(self, event: Event, rule: Rule, contact_id: int) -> None:
        rules = self.rules[event.campaign_id or 0]
        key = (rules.campaign_id, rule.id, contact_id)
        previous = self.decided.get(key)
        if previous and previous[0] != FollowUpStatus.WITHHELD:
            self.report.outcomes["already followed up"] += 1
            return
        channel = (
            rule.action
            if rule.action in OUTBOX_CHANNEL
            else ("staff" if rule.action == "notify_staff" else "tag")
        )
        status, reason, due, message = self._verdict(event, rule, channel, contact_id, rules)
        row = {
            "campaign_id": rules.campaign_id,
            "rule_id": rule.id,
            "event_id": event.id,
            "contact_id": contact_id,
            "channel": channel,
            "status": status,
            "reason": reason,
            "due_at": due,
            "outbox_id": None,
            "created_at": self.now,
            "updated_at": self.now,
        }
        if message is not None:
            row["_messages"] = [m | {"available_at": due} for m in message]
        earlier = self.rows.get(key)
        if earlier is not None:  # withheld for an earlier event of this batch: decided anew
            outcome = self._outcome(earlier["status"], earlier["reason"], earlier["due_at"])
            _take_back(self.report.outcomes, outcome)
            _take_back(self.report.by_rule, rule.id)
            earlier.pop("_messages", None)
            earlier.update({k: v for k, v in row.items() if k != "created_at"})
            row = earlier
        else:
            row["_id"] = previous and previous[1]  # a new one's once it is written
            (self.reopened if previous else self.followups).append(row)
            self.rows[key] = row
        self.decided[key] = (status, previous[1] if previous else 0)
        self.report.outcomes[self._outcome(status, reason, due)] += 1
        self.report.by_rule[rule.id] += 1
        limited = channel in rules.followups.spec.rate_limits
        if status == FollowUpStatus.QUEUED and channel != "staff" and limited:
            self.placed.append(Placed(row, rules, rule, event))

    def _outcome(self, status: str, reason: str | None, due: datetime) -> str:
        """What a report counts a verdict as: queued, delayed, or the kind of reason."""
        if status == FollowUpStatus.WITHHELD:
            return consent_rules.outcome_kind(reason or "withheld")
        return "delayed" if due > self.now + timedelta(minutes=1) else str(status)

    def _zone(self, contact_id: int) -> ZoneInfo | None:
        person = self.people.get(contact_id)
        return ZoneInfo(person.timezone) if person and person.timezone else None

    def _verdict(
        self, event: Event, rule: Rule, channel: str, contact_id: int, rules: CampaignRules
    ) -> tuple[str, str | None, datetime, list[dict[str, Any]] | None]:
        """(status, reason, due, outbox messages) of one rule firing for one person."""
        member = rules.members.get(event.member_id or 0)
        if channel == "tag":  # written with the batch; a lead whose tags change is synced
            self.tags.setdefault(contact_id, set()).update(rule.tags)
            if event.campaign_id:
                self.tagged_on.setdefault(contact_id, set()).add(event.campaign_id)
            return FollowUpStatus.DONE, None, self.now, None
        if channel != "staff" and member is not None and member.holdout:
            return (
                FollowUpStatus.WITHHELD,
                "holdout: this creator's audience gets no follow-ups",
                self.now,
                None,
            )
        person = self.people.get(contact_id)
        if channel != "staff":
            why = consent_rules.withheld_for(
                channel,
                self.consent.get((contact_id, channel)),
                they_wrote_first=event.type == "dm",
            ) or no_address(channel, event, person)
            if why:
                return FollowUpStatus.WITHHELD, why, self.now, None
        zone = self._zone(contact_id)
        due = due_at(rules, rule, channel, event, self.sent, now=self.now, zone=zone)
        if channel != "staff" and (
            cap := self.sent.cap_reason(rules.followups, contact_id, channel, due)
        ):
            return FollowUpStatus.WITHHELD, cap, self.now, None
        actor = self._actor(event, contact_id)
        try:
            text = rules.render(f"{rule.id}.message", event, actor)
            subject = rules.render(f"{rule.id}.subject", event, actor) if rule.subject else ""
        except RENDER_ERRORS as exc:
            return FollowUpStatus.WITHHELD, f"cannot render: {exc}", self.now, None
        if channel != "staff" and (why := platform_limit(channel, event, text, due)):
            return FollowUpStatus.WITHHELD, why, self.now, None
        messages = followup_messages(rule, channel, event, person, rules, text, subject)
        if not messages:
            return (
                FollowUpStatus.WITHHELD,
                "no staff to notify: the approver group is empty",
                self.now,
                None,
            )
        if channel != "staff":
            self.sent.add(rules.campaign_id, contact_id, channel, due)
            kept = quiet_hours_of(rules.followups.spec.quiet_hours, zone or rules.zone)
            for message in messages if kept else []:
                message["payload"]["quiet"] = kept
        return FollowUpStatus.QUEUED, None, due, messages

    def _confirm(self, event: Event, contact_id: int) -> bool:
        """The person's YES (or START) to the text asking them to confirm: their pending consent
        on the channel is granted (`confirm`), answered with the carriers' opt-in confirmation
        on SMS. False when nothing there was pending."""
        channel = consent_rules.event_channel(event.source, event.type)
        if channel is None or self.consent.get((contact_id, channel)) != ConsentStatus.PENDING:
            return False
        source = f"{event.source}:{event.external_id}"
        spec = confirm(
            self.session,
            contact_id,
            channel,
            source=source,
            now=self.now,
            wording=event.text,
            origin=self._sender(event, contact_id, channel),
        )
        self.consent[(contact_id, channel)] = ConsentStatus.GRANTED
        self.again |= {
            row["event_id"]
            for row in self.followups + self.reopened
            if (row["contact_id"], row["channel"]) == (contact_id, channel)
            and (row["reason"] or "").startswith(f"unconfirmed {channel}")
        }
        self._lead_changed(event, contact_id)
        self.report.opted_in += 1
        if spec is None or channel != "sms":
            return True
        self._answer(event, contact_id, subscribed_text(spec))
        return True

    def _help(self, event: Event, contact_id: int) -> None:
        """Answer HELP by text, as the carriers require, whatever the person's consent: for
        the event's campaign, else the one that last asked them to confirm."""
        rules = self.rules.get(event.campaign_id or 0)
        spec = rules.spec if rules else last_asked_by(self.session, contact_id)
        if spec is not None:
            self._answer(event, contact_id, help_text(spec))

    def _answer(self, event: Event, contact_id: int, text: str) -> None:
        """Answer a person's consent command on the channel they used, once per command."""
        channel = consent_rules.event_channel(event.source, event.type)
        assert channel is not None
        person = self.people.get(contact_id)
        for message in channel_messages(channel, event, person, text, ""):
            self.outbox.append(
                message
                | {
                    "idempotency_key": f"consent:{event.source}:{event.external_id}",
                    "subject_type": "consent",
                    "subject_id": str(contact_id),
                    "available_at": self.now,
                }
            )

    def _sender(self, event: Event, contact_id: int, channel: str) -> str | None:
        """Who a STOP, START or YES came from, for its consent record: the handle that wrote,
        else the phone or address it came from."""
        person = self.people.get(contact_id)
        if event.actor or person is None:
            return event.actor
        return person.phone if channel == "sms" else person.email

    def _consent(self, event: Event, contact_id: int, status: ConsentStatus) -> None:
        channel = consent_rules.event_channel(event.source, event.type)
        assert channel is not None
        pending = self.consent.get((contact_id, channel)) == ConsentStatus.PENDING
        if status == ConsentStatus.GRANTED and pending and self._confirm(event, contact_id):
            return
        source = f"{event.source}:{event.external_id}"
        changed = set_consent(
            self.session,
            contact_id,
            channel,
            status,
            source=source,
            now=self.now,
            wording=event.text,
            origin=self._sender(event, contact_id, channel),
        )
        self.consent[(contact_id, channel)] = status
        if not changed:
            return
        self._lead_changed(event, contact_id)
        if event.campaign_id:
            person = self.people.get(contact_id)
            said = consent_changed(
                contact_id, channel, status, source=source, now=self.now, person=person
            )
            self.happened.setdefault(event.campaign_id, []).append(said)
        if status == ConsentStatus.REVOKED:
            self.report.opted_out += 1
            self._withdraw(contact_id, channel)
        else:
            self.report.opted_in += 1
        rules = self.rules.get(event.campaign_id or 0)
        kind = "stop" if status == ConsentStatus.REVOKED else "start"
        if rules is None or f"{kind}.{channel}" not in rules.templates:
            return
        try:
            text = rules.render(f"{kind}.{channel}", event, self._actor(event, contact_id))
        except RENDER_ERRORS:
            return
        self._answer(event, contact_id, text)

    def _withdraw(self, contact_id: int, channel: str) -> None:
        """Cancel what is still waiting to go to this person on this channel, both decided in
        this batch and stored before."""
        for row in self.followups + self.reopened:
            mine = row["contact_id"] == contact_id and row["channel"] == channel
            if mine and row["status"] == FollowUpStatus.QUEUED:
                row.update(status=FollowUpStatus.CANCELLED, reason=f"opted out of {channel}")
                row.pop("_messages", None)
        if (contact_id, channel) not in self.waiting:  # nothing stored waits for them there
            return
        withdraw_queued(self.session, contact_id, channel, now=self.now)

    def _lead_changed(self, event: Event, contact_id: int) -> None:
        if event.campaign_id:
            self.leads.setdefault(event.campaign_id, set()).add(contact_id)

    # --- writing -------------------------------------------------------------------------

    def _write(self, event_ids: list[int]) -> None:
        for contact_id in add_tags(self.session, self.tags, now=self.now):
            for campaign_id in self.tagged_on.get(contact_id, ()):
                self.leads.setdefault(campaign_id, set()).add(contact_id)
        for campaign_id, people in self.leads.items():
            destinations = self.rules[campaign_id].spec.destinations
            queue_sync(self.session, campaign_id, destinations, people, now=self.now)
        for campaign_id, happened in self.happened.items():  # a query a campaign, not a person
            emit(self.session, campaign_id, happened, at=self.now)
        rows = self.followups + self.reopened
        messages = [m for row in rows for m in row.get("_messages") or []]
        ids = insert_rows(
            self.session, OutboxMessage, self.outbox + messages, key=("idempotency_key",)
        )
        for row in rows:
            first = (row.get("_messages") or [None])[0]
            row["outbox_id"] = ids.get((first["idempotency_key"],)) if first else None
        clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.followups]
        key = ("campaign_id", "rule_id", "contact_id")
        made = insert_rows(self.session, FollowUp, clean, key=key) if clean else {}
        for row in self.followups:
            row["_id"] = made[tuple(row[k] for k in key)]
        for row in self.reopened:
            values = {k: v for k, v in row.items() if not k.startswith("_") and k != "created_at"}
            self.session.execute(
                update(FollowUp).where(col(FollowUp.id) == row["_id"]).values(**values)
            )
        self._mark_processed(event_ids)
        if self.again:  # decided again by the next batch, now that the consent is confirmed
            self.session.execute(
                update(EVENTS).where(_EVENTS.id.in_(sorted(self.again))).values(processed_at=None)
            )

    def _hold_slots(self) -> None:
        """On PostgreSQL, place the batch's follow-ups under a rate limit again once it holds
        its campaigns' slots, which it takes last and keeps until it commits: their due times
        came from counts read before its decisions, and another worker's batch may have taken
        some of those minutes since. So batches decide and write side by side and take turns
        only here. A follow-up that moves is checked again at its new time (`_still_goes`)
        and updated with its outbox messages, or withheld."""
        placed = [p for p in self.placed if p.row["status"] == FollowUpStatus.QUEUED]
        if not placed or self.session.get_bind().dialect.name != "postgresql":
            return
        limited = {(p.rules.campaign_id, p.row["channel"]) for p in placed}
        # in the order of the locks' own keys (16 bits of the campaign's id): never a circle
        for part in sorted({campaign_id & 0xFFFF for campaign_id, _ in limited}):
            advisory_lock(self.session, Lock.FOLLOWUP_SLOTS, part=part)
        others = self._slots_taken(limited)  # this batch's own included, as first placed
        others.subtract(
            (p.rules.campaign_id, p.row["channel"], minute(p.row["due_at"])) for p in placed
        )
        counted = Counter({slot: n for slot, n in self.counted.items() if slot[:2] in limited})
        if +others == +counted:
            return  # nobody took a minute meanwhile: each is where it would go again
        sent = Sent(per_minute=others)
        moved: list[tuple[Placed, datetime, str | None]] = []
        for p in placed:
            row = p.row
            zone = self._zone(row["contact_id"])
            due = due_at(p.rules, p.rule, row["channel"], p.event, sent, now=self.now, zone=zone)
            if due != row["due_at"]:
                why = self._still_goes(p, due)
                moved.append((p, due, why))
                if why:
                    continue  # withheld: it takes no slot
            sent.count(p.rules.campaign_id, row["channel"], due)
        if moved:
            self._move(moved)

    def _still_goes(self, placed: Placed, due: datetime) -> str | None:
        """Why a follow-up moved to `due` may no longer go, or None: a DM past TikTok's 48
        hours, or the person's cap, counted around its new time (their others as they stand
        in this batch, earlier moves included)."""
        row = placed.row
        times = self.sent.times[(row["contact_id"], row["channel"])]
        times.remove(row["due_at"])  # its own, as first placed
        why = too_late(row["channel"], placed.event, due) or self.sent.cap_reason(
            placed.rules.followups, row["contact_id"], row["channel"], due
        )
        if why is None:
            times.append(due)
        return why

    def _move(self, moved: list[tuple[Placed, datetime, str | None]]) -> None:
        """Give follow-ups their new due times, theirs and their outbox messages', or withhold
        those that may no longer go (`why`), with their messages gone (this batch made them)."""
        due_ids, dues, keys, key_dues = [], [], [], []
        for p, due, why in moved:
            row = p.row
            _take_back(self.report.outcomes, self._outcome(row["status"], None, row["due_at"]))
            if why:
                self.report.outcomes[self._outcome(FollowUpStatus.WITHHELD, why, due)] += 1
                self._withhold(row, why)
                continue
            self.report.outcomes[self._outcome(row["status"], None, due)] += 1
            row["due_at"] = due
            due_ids.append(row["_id"])
            dues.append(due)
            for message in row.get("_messages") or []:
                keys.append(message["idempotency_key"])
                key_dues.append(due)
        if due_ids:
            given = _unnested(("id", due_ids, Integer), ("due", dues, _FOLLOWUPS.due_at.type))
            self.session.execute(
                update(FOLLOWUPS).where(_FOLLOWUPS.id == given.c.id).values(due_at=given.c.due)
            )
        if keys:
            given = _unnested(("key", keys, String), ("due", key_dues, _OUTBOX.available_at.type))
            self.session.execute(
                update(OUTBOX)
                .where(_OUTBOX.idempotency_key == given.c.key)
                .values(available_at=given.c.due)
            )

    def _withhold(self, row: dict[str, Any], why: str) -> None:
        """Withhold a follow-up this batch wrote as queued, its outbox messages gone."""
        row.update(status=FollowUpStatus.WITHHELD, reason=why, due_at=self.now, outbox_id=None)
        self.session.execute(
            update(FOLLOWUPS)
            .where(_FOLLOWUPS.id == row["_id"])
            .values(status=row["status"], reason=why, due_at=self.now, outbox_id=None)
        )
        made = [m["idempotency_key"] for m in row.pop("_messages", None) or []]
        self.session.execute(delete(OUTBOX).where(_OUTBOX.idempotency_key.in_(made)))

    def _mark_processed(self, event_ids: list[int]) -> None:
        """The batch's events are processed, each with its actor's contact."""
        if self.session.get_bind().dialect.name == "postgresql":  # one statement, two arrays
            contacts = [self.event_contacts.get(e) for e in event_ids]
            given = _unnested(("id", event_ids, Integer), ("contact", contacts, Integer))
            self.session.execute(
                update(EVENTS)
                .where(_EVENTS.id == given.c.id)
                .values(
                    processed_at=self.now,
                    contact_id=func.coalesce(given.c.contact, _EVENTS.contact_id),
                )
            )
            return
        if self.event_contacts:
            self.session.execute(
                update(EVENTS)
                .where(_EVENTS.id == bindparam("event"))
                .values(contact_id=bindparam("contact")),
                [{"event": e, "contact": c} for e, c in self.event_contacts.items()],
            )
        for i in range(0, len(event_ids), 1000):
            self.session.execute(
                update(EVENTS)
                .where(_EVENTS.id.in_(event_ids[i : i + 1000]))
                .values(processed_at=self.now)
            )
