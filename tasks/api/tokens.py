"""API tokens: made by staff with `rally tokens create`, each for one campaign (or, asked for
in so many words, all of them) and a set of scopes, shown once, kept as a SHA-256 only,
expiring, revocable with immediate effect, and named in the audit log for every change made
with it (`actor`).

A scope is `<resource>:read` or `<resource>:write`; write includes read.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Engine, bindparam, update
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record
from store.db import transaction
from store.models import ApiToken, ApproverCredential, Campaign

RESOURCES = {
    "campaign": "campaigns, their settings and sprint status",
    "creators": "rosters and creators",
    "briefs": "briefs and their delivery",
    "creatives": "creatives and drafts",
    "reviews": "review tasks and decisions",
    "events": "engagement events (ingest and read)",
    "leads": "contacts, leads, consent and forget requests",
    "followups": "follow-ups",
    "reports": "reports, KPIs and milestones",
    "payments": "the payments ledger and what each creator is owed",
    "runs": "flow runs (start one, see its state)",
    "webhooks": "outgoing webhook subscriptions",
}
SCOPES = tuple(f"{resource}:{access}" for resource in RESOURCES for access in ("read", "write"))
PREFIX = "rally_"  # makes a leaked token easy to recognise (secret scanners, logs)
MAX_DAYS = 365
USE_RECORDED_EVERY = timedelta(minutes=1)  # `last_used_at` is written at most this often


class TokenRefused(RallyError):
    """A request's token does not allow it. `status` is the HTTP answer the API gives:
    401 when the token itself is no good, 403 when it is good but not for this."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Granted:
    """What a valid token allows, for the request it came with."""

    token_id: int
    name: str
    scopes: frozenset[str]
    campaign_id: int | None
    use_to_record: bool = False  # the token's last use is due to be written (`record_use`)
    # Until when this grant stands without reading the token again, the store unchanged: its
    # expiry, or the minute its next use is due to be written (`web.kept_reads`).
    stands_until: datetime | None = None

    def check_campaign(self, campaign_id: int | None) -> None:
        """Refuse a campaign's token anything about another campaign, or about none."""
        if self.campaign_id is not None and campaign_id != self.campaign_id:
            raise TokenRefused("this API token is for another campaign", 403)

    @property
    def actor(self) -> str:
        """Who the audit log names for changes made with this token."""
        return f"token:{self.token_id}:{self.name}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: list[str]) -> list[str]:
    """The scopes, each once and in order, or an error naming the first unknown one."""
    kinds = "RESOURCE:read or RESOURCE:write, RESOURCE one of " + ", ".join(RESOURCES)
    if not scopes:
        raise RallyError(f"give at least one --scope ({kinds})")
    for scope in scopes:
        if scope not in SCOPES:
            from difflib import get_close_matches

            near = get_close_matches(scope, SCOPES, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise RallyError(f"scope {scope!r} is not one of Rally's: {hint}({kinds})")
    return list(dict.fromkeys(scopes))


def create_token(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    campaign: Campaign | None,
    days: int,
    actor: str,
    now: datetime,
) -> tuple[ApiToken, str]:
    """A new token and its secret (the only time the secret exists outside the caller)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise RallyError("a token's name is 1 to 100 characters (say what it is for)")
    if not 1 <= days <= MAX_DAYS:
        raise RallyError(f"--days must be 1 to {MAX_DAYS}; make a new token when it runs out")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        secret_hash=hash_secret(secret),
        name=name,
        scopes=check_scopes(scopes),
        campaign_id=campaign.id if campaign else None,
        created_by=actor,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(token)
    session.flush()
    where = f"campaign {campaign.slug}" if campaign else "every campaign"
    record(
        session,
        [
            Change(
                actor,
                "api_token.created",
                "api_token",
                token.id or 0,
                f"API token {token.name!r} made for {where}: " + ", ".join(token.scopes),
                {"scopes": token.scopes, "campaign_id": token.campaign_id, "days": days},
            )
        ],
    )
    return token, secret


def revoke_token(session: Session, token_id: int, *, actor: str, now: datetime) -> ApiToken:
    """Revoke a token: every request with it is refused from the moment this commits."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise RallyError(f"no API token {token_id} (`rally tokens list` shows them)")
    if token.revoked_at is None:
        token.revoked_at, token.revoked_by = now, actor
        session.add(token)
        record(
            session,
            [
                Change(
                    actor,
                    "api_token.revoked",
                    "api_token",
                    token_id,
                    f"API token {token.name!r} revoked",
                )
            ],
        )
    return token


def revoke_sign_ins(session: Session, email: str, *, actor: str, now: datetime) -> int:
    """End a person's sign-ins: their browser sessions, unused sign-in links and approver API
    tokens stop working at once. Returns how many were ended."""
    email = email.strip().lower()
    if "@" not in email:
        raise RallyError(f"{email!r} is not an email address: give the person's email")
    ended: int = session.execute(  # type: ignore[attr-defined]  # an UPDATE's CursorResult
        update(ApproverCredential)
        .where(
            col(ApproverCredential.email) == email,
            col(ApproverCredential.expires_at) > now,
            col(ApproverCredential.used_at).is_(None),
        )
        .values(expires_at=now)
    ).rowcount
    if ended:
        record(
            session,
            [
                Change(
                    actor,
                    "sign_in.revoked",
                    "approver",
                    email,
                    f"{ended} sign-in(s) of {email} ended",
                    {"ended": ended},
                )
            ],
        )
    return ended


def list_tokens(session: Session, *, now: datetime) -> list[dict[str, Any]]:
    """Every token, newest first, without its secret (which Rally does not have)."""
    slugs = {
        id_: slug for id_, slug in session.execute(select(col(Campaign.id), col(Campaign.slug)))
    }
    tokens = session.exec(select(ApiToken).order_by(col(ApiToken.id).desc())).all()
    return [
        {
            "id": t.id,
            "name": t.name,
            "scopes": t.scopes,
            "campaign": slugs.get(t.campaign_id) if t.campaign_id else None,
            "state": _state(t, now),
            "created_by": t.created_by,
            "created_at": t.created_at.isoformat(),
            "expires_at": t.expires_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        }
        for t in tokens
    ]


def _state(token: ApiToken, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if token.expires_at <= now else "active"


def authenticate(session: Session, secret: str | None, *, scope: str, now: datetime) -> Granted:
    """What `secret` allows for a request needing `scope`, or `TokenRefused` saying why not.
    A campaign's token is kept to its campaign by `Granted.check_campaign`, once the request's
    campaign is known.

    Read on every request (revocation and expiry take effect at once), in a reading
    transaction: the last use is written apart, at most once a minute (`record_use`)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    token = session.exec(_by_secret(), params={"b_hash": hash_secret(secret or "")}).first()
    if not secret or token is None:
        raise TokenRefused("no valid API token given (Authorization: Bearer rally_...)", 401)
    if token.revoked_at is not None:
        raise TokenRefused("this API token was revoked", 401)
    if token.expires_at <= now:
        raise TokenRefused("this API token has expired", 401)
    if not allows(token.scopes, scope):
        raise TokenRefused(f"this API token lacks the scope {scope}", 403)
    assert token.id is not None
    last = token.last_used_at
    used = last is None or now - last >= USE_RECORDED_EVERY
    next_use = (now if used or last is None else last) + USE_RECORDED_EVERY
    stands = min(token.expires_at, next_use)
    return Granted(token.id, token.name, frozenset(token.scopes), token.campaign_id, used, stands)


@cache
def _by_secret() -> Any:
    """The token of a secret's hash, as a statement built once: every API request asks."""
    return select(ApiToken).where(col(ApiToken.secret_hash) == bindparam("b_hash"))


def record_use(engine: Engine, grant: Granted, now: datetime) -> None:
    """Note when the token was last used, if `authenticate` found the note a minute old."""
    if grant.use_to_record:
        with transaction(engine, take_turns=False) as session:
            session.execute(
                update(ApiToken).where(col(ApiToken.id) == grant.token_id).values(last_used_at=now)
            )


def allows(scopes: list[str] | frozenset[str], scope: str) -> bool:
    """Whether `scopes` cover `scope`: the scope itself, or write where read is asked."""
    resource, _, access = scope.partition(":")
    return scope in scopes or (access == "read" and f"{resource}:write" in scopes)
