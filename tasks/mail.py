"""The one email drain: every ready email in the outbox, whatever it is for, sent over the
configured sender (SMTP, else the mailbox folder), and what each one sent or given up on means
recorded by the handler of its kind, in the transaction that marks it.

The handlers live with the capability whose messages they are; this is the one module that
knows them all. A message of a kind without a handler is sent and marked sent, nothing more.
"""

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.errors import HeaderParseError

from sqlalchemy import Engine
from sqlmodel import Session

from config.settings import Settings
from integrations.email import MailboxSender, build_message, sender_for
from integrations.errors import PermanentError
from tasks.briefs.reminders import BRIEF_EMAIL, REMINDER_EMAIL
from tasks.drain import DrainReport, Handler, drain, one_at_a_time, repeat_safe
from tasks.engagement.confirm import CONSENT_EMAIL
from tasks.engagement.delivery import FOLLOWUP, outside_quiet_hours
from tasks.outbox import Claimed
from tasks.review.routing import REVIEW_EMAIL

# Each kind of email (`subject_type`) and what its outcome means.
HANDLERS: Mapping[str, Handler] = {
    "brief": BRIEF_EMAIL,  # the brief marked sent and audited, its reminder timer set
    "brief_reminder": REMINDER_EMAIL,  # the brief's reminder marked sent and audited
    "review": REVIEW_EMAIL,  # the approver's sign-in link scrubbed from the store
    "followup": FOLLOWUP,  # the follow-up marked sent, or failed when given up on
    "consent": CONSENT_EMAIL,  # a signup's confirmation link scrubbed from the store
    "sprint": REVIEW_EMAIL,  # the staff member's sign-in link scrubbed from the store
}


def by_kind(handlers: Mapping[str, Handler]) -> Handler:
    """One handler that hands each message to the handler of its kind (`subject_type`)."""

    def sent(session: Session, messages: list[Claimed], at: datetime) -> None:
        kinds: dict[str, list[Claimed]] = {}
        for message in messages:
            kinds.setdefault(message.subject_type, []).append(message)
        for kind, group in kinds.items():
            handler = handlers.get(kind)
            if handler is not None and handler.sent is not None:
                handler.sent(session, group, at)

    def dead(session: Session, message: Claimed, error: str, at: datetime) -> None:
        handler = handlers.get(message.subject_type)
        if handler is not None and handler.dead is not None:
            handler.dead(session, message, error, at)

    return Handler(sent=sent, dead=dead)


def deliver_email(
    engine: Engine, settings: Settings, *, now: Callable[[], datetime], limit: int | None = None
) -> DrainReport:
    """Send every ready email in the outbox over the configured sender: one at a time over
    SMTP, a batch at a time into the mailbox folder (where a repeat rewrites the same file)."""
    mailer = sender_for(settings)

    def deliver(message: Claimed) -> str:
        try:
            email = build_message(
                message.payload,
                sender=settings.mail_from,
                key=message.idempotency_key,
                files=settings.home,
            )
        except (ValueError, TypeError, KeyError, HeaderParseError, OSError) as exc:
            raise PermanentError(f"cannot make an email of it: {exc}") from None
        return mailer.send(email)

    folder = isinstance(mailer, MailboxSender)
    try:
        return drain(
            engine,
            channel="email",
            sender=(repeat_safe if folder else one_at_a_time)(outside_quiet_hours(deliver, now)),
            handler=by_kind(HANDLERS),
            now=now,
            limit=limit,
            lease=timedelta(seconds=settings.outbox_lease_seconds),
        )
    finally:
        mailer.close()
