"""A brief's email: rendered from the campaign's templates with the creator's link, queued once
per brief version, and withdrawn while still waiting when a newer version replaces it.
"""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from markupsafe import Markup
from sqlmodel import Session, col, select

from briefs.environment import BriefTemplates
from store.models import (
    Brief,
    OutboxMessage,
    OutboxStatus,
)
from tasks.briefs.run import (
    EMAIL_TEMPLATES,
    RENDER_ERRORS,
    BriefProblem,
    BriefRun,
    brief_problem,
    latest_briefs,
)
from tasks.outbox import cancel, enqueue


def brief_link(public_url: str, token: str) -> str:
    return f"{public_url}/briefs/{token}"


def email_payload(
    templates: BriefTemplates,
    names: tuple[str, str, str],
    context: dict[str, Any],
    brief: Brief,
    *,
    public_url: str,
) -> dict[str, Any]:
    """Subject, text and HTML of an email about `brief`, rendered from `names`' templates."""
    full = {
        **context,
        "brief": {
            "link": brief_link(public_url, brief.token),
            "version": brief.version,
            "markdown": brief.content_markdown,
            "html": Markup(brief.content_html),  # rendered by the sandbox with autoescaping
        },
    }
    subject, text, page = (templates.render(name, full) for name in names)
    creator = context["creator"]
    return {
        "to": creator["email"],
        "to_name": creator.get("name", ""),
        "subject": subject,
        "text": text,
        "html": page,
    }


def queue_emails(
    session: Session, run: BriefRun, member_ids: Sequence[int], contexts: dict[int, dict[str, Any]]
) -> tuple[int, list[BriefProblem]]:
    """Queue the email of each member's newest brief, unless that brief was queued before; an
    older version's email still waiting to go is withdrawn, so no creator gets stale terms."""
    latest = latest_briefs(session, member_ids)
    keys = {f"brief:{b.id}:email": b for b in latest.values() if b.member_id in contexts}
    already = set(
        session.exec(
            select(OutboxMessage.idempotency_key).where(
                col(OutboxMessage.idempotency_key).in_(list(keys))
            )
        )
    )
    messages, problems, queued_ids = [], [], []
    for key, brief in keys.items():
        if key in already:
            continue
        context = contexts[brief.member_id]
        try:
            payload = email_payload(
                run.templates, EMAIL_TEMPLATES, context, brief, public_url=run.public_url
            )
        except RENDER_ERRORS as exc:
            found = brief_problem(context["creator"]["handle"], exc)
            problems.append(replace(found, message=f"email: {found.message}"))
            continue
        messages.append(
            {
                "channel": "email",
                "destination": "creator",
                "idempotency_key": key,
                "subject_type": "brief",
                "subject_id": str(brief.id),
                "payload": payload,
            }
        )
        queued_ids.append(brief.id or 0)
    queued = enqueue(session, messages)
    _withdraw_older(session, queued_ids)
    return queued, problems


def _withdraw_older(session: Session, brief_ids: list[int]) -> None:
    """Cancel the pending emails and reminders of earlier versions of these briefs."""
    if not brief_ids:
        return
    newest = select(Brief.member_id, Brief.version).where(col(Brief.id).in_(brief_ids)).subquery()
    older = select(Brief.id).join(
        newest,
        (col(Brief.member_id) == newest.c.member_id) & (col(Brief.version) < newest.c.version),
    )
    older_ids = [str(i) for i in session.exec(older)]
    if not older_ids:
        return
    pending = session.exec(
        select(OutboxMessage.id).where(
            col(OutboxMessage.subject_type).in_(("brief", "brief_reminder")),
            col(OutboxMessage.subject_id).in_(older_ids),
            OutboxMessage.status == OutboxStatus.PENDING,
        )
    )
    cancel(session, [i for i in pending if i is not None], "replaced by a newer version")
