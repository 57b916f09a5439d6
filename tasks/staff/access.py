"""Staff's way into the console: their single-use sign-in link, emailed or shown, for people a
campaign file lists under `staff:` only."""

from datetime import datetime

from sqlmodel import Session

from config.errors import RallyError
from store.audit import Change, record
from tasks.review.approvers import STAFF_PAGES, sign_in_link, staff_campaigns
from tasks.review.routing import notify


class NotStaff(RallyError):
    pass


def staff_sign_in(
    session: Session, email: str, *, public_url: str, now: datetime, send: bool, actor: str
) -> str:
    """A staff member's single-use sign-in link to the staff console, emailed to them through
    the outbox (the link is scrubbed from the store once sent) when `send`; audited."""
    email = email.strip().lower()
    campaigns = staff_campaigns(session, email)
    if not campaigns:
        raise NotStaff(
            f"{email} is not on the staff of any campaign: list them under `staff:` in the "
            "campaign file, apply it, then ask for their link again"
        )
    link = sign_in_link(session, email, public_url=public_url, now=now, next_path=STAFF_PAGES)
    names = ", ".join(c.name for c in campaigns)
    if send:
        text = (
            f"Your sign-in link to Rally's staff console ({names}). It works once, on one "
            f"browser, within 72 hours:\n{link}\n"
        )
        notify(
            session,
            [email],
            key=f"staff-link:{now.isoformat()}",
            subject="Rally: your sign-in link",
            text=text,
        )
    how = "emailed" if send else "shown"
    record(
        session,
        [Change(actor, "staff.sign_in_link", "staff", email, f"sign-in link for {email} {how}")],
    )
    return link
