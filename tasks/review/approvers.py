"""Approvers' and staff's credentials (a sign-in link, single use and expiring, sent by email;
the browser session it opens; API tokens, of each only a SHA-256 stored), and which review
tasks are theirs to see. One sign-in serves both: the session it opens is the same for the
review pages and the staff console; each page checks what the person may see."""

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from store.models import ApproverCredential, Campaign, Creative, CreativeDraft, ReviewTask
from tasks.campaigns.campaign import campaign_spec, on_team

LINK_LIFETIME = timedelta(hours=72)
SESSION_LIFETIME = timedelta(hours=12)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(session: Session, email: str, *, kind: str, lifetime: timedelta, now: datetime) -> str:
    secret = secrets.token_urlsafe(32)
    session.add(
        ApproverCredential(
            secret_hash=_hash(secret),
            email=email.lower(),
            kind=kind,
            expires_at=now + lifetime,
            created_at=now,
        )
    )
    return secret


def sign_in_link(
    session: Session, email: str, *, public_url: str, now: datetime, next_path: str
) -> str:
    """A single-use link that signs `email` in and goes on to `next_path`: staff's links open
    on the staff console's sign-in page, approvers' on the review pages' (the same sign-in)."""
    token = issue(session, email, kind="link", lifetime=LINK_LIFETIME, now=now)
    door = "staff" if next_path.startswith(STAFF_PAGES) else "review"
    return f"{public_url}/{door}/signin/{token}?next={next_path}"


STAFF_PAGES = "/staff"  # the staff console's pages
SIGNED_IN_PAGES = ("/review", "/reports", "/sprint/", STAFF_PAGES)  # where a sign-in may go on to


def page_after_sign_in(next_path: str, default: str = "/review") -> str:
    """Where a sign-in goes on to: one of Rally's own signed-in pages, never another site."""
    kept = next_path.startswith(SIGNED_IN_PAGES) and "//" not in next_path
    return next_path if kept else default


def link_is_valid(session: Session, token: str, *, now: datetime) -> bool:
    found = session.get(ApproverCredential, _hash(token))
    return bool(found and found.kind == "link" and not found.used_at and found.expires_at > now)


def redeem_link(session: Session, token: str, *, now: datetime) -> tuple[str, str] | None:
    """Use a sign-in link once: (email, new session secret), or None if unknown, used or old."""
    found = session.get(ApproverCredential, _hash(token))
    if found is None or found.kind != "link" or found.used_at or found.expires_at <= now:
        return None
    found.used_at = now
    session.add(found)
    return found.email, issue(
        session, found.email, kind="session", lifetime=SESSION_LIFETIME, now=now
    )


def who(
    session: Session, secret: str | None, *, kinds: tuple[str, ...], now: datetime
) -> str | None:
    """The approver a session cookie or API token belongs to, while it is valid."""
    if not secret:
        return None
    found = session.get(ApproverCredential, _hash(secret))
    if found is None or found.kind not in kinds or found.expires_at <= now:
        return None
    return found.email


def staff_campaigns(session: Session, email: str) -> list[Campaign]:
    """The campaigns whose file lists `email` under `staff:`: the staff console shows these
    and no others."""
    email = email.strip().lower()
    campaigns = session.exec(select(Campaign).order_by(col(Campaign.name))).all()
    return [c for c in campaigns if is_listed_staff(c, email)]


def is_listed_staff(campaign: Campaign, email: str) -> bool:
    """Whether the campaign file lists `email` under `staff:` (approvers alone are not)."""
    return email.strip().lower() in campaign_spec(campaign).staff


def reviews_anything(session: Session, email: str) -> bool:
    """Whether `email` is staff or an approver of any campaign: only they get credentials."""
    return any(on_team(campaign, email) for campaign in session.exec(select(Campaign)))


def is_approver_of_task(session: Session, task_id: int, email: str) -> bool:
    """Whether `email` is one of the approvers of the campaign this review task belongs to
    (False for an unknown task): only they may see the task and its creative."""
    campaign = session.exec(
        select(Campaign)
        .join(Creative, col(Creative.campaign_id) == col(Campaign.id))
        .join(CreativeDraft, col(CreativeDraft.creative_id) == col(Creative.id))
        .join(ReviewTask, col(ReviewTask.draft_id) == col(CreativeDraft.id))
        .where(ReviewTask.id == task_id)
    ).first()
    return campaign is not None and on_team(campaign, email)
