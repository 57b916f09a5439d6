"""Approvers' credentials: a sign-in link (single use, expiring) sent by email, the browser
session it opens, and API tokens. Only a SHA-256 of each secret is stored."""

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session

from store.models import ApproverCredential

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
    token = issue(session, email, kind="link", lifetime=LINK_LIFETIME, now=now)
    return f"{public_url}/review/signin/{token}?next={next_path}"


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
