"""The TikTok business accounts Rally acts for: connected by OAuth (`authorization`,
`connect`), their tokens sealed in the store and refreshed ahead of expiry and whenever TikTok
says one has expired (`Accounts`), the app's webhooks registered (`subscribe`), and where it
all stands (`status`).

An access token lives about a day, its refresh token a year. Two processes may refresh one
account at once: each refreshes without holding a lock across TikTok's answer, and the store
keeps the first that lands (the other sees the refresh token it used has changed and takes the
stored one), so a refresh token TikTok replaced is never written back over the new one.
"""

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from config.errors import RallyError
from config.settings import Settings
from integrations.errors import IntegrationError, UnavailableError
from integrations.tiktok import (
    NO_DM_REGIONS,
    SCOPES,
    WEBHOOK_EVENT_TYPES,
    Subscription,
    TikTokApp,
    TikTokBusiness,
    TokenGrant,
    authorization_url,
)
from store.audit import Change, record
from store.crypto import Sealer
from store.db import transaction
from store.models import Campaign, Creator, RosterMember, TikTokAccount
from tasks.campaigns.campaign import get_campaign

REFRESH_AHEAD = timedelta(minutes=10)  # a token this close to expiry is refreshed before use


def tiktok_app(settings: Settings, http: httpx.Client) -> TikTokApp:
    """Rally's TikTok app, or a RallyError naming the settings it lacks."""
    missing = [
        name
        for name, value in (
            ("RALLY_TIKTOK_CLIENT_KEY", settings.tiktok_client_key),
            ("RALLY_TIKTOK_CLIENT_SECRET", settings.tiktok_client_secret.get_secret_value()),
        )
        if not value
    ]
    if missing:
        raise RallyError(f"set {' and '.join(missing)}: the TikTok app's key and secret")
    return TikTokApp(
        http,
        client_key=settings.tiktok_client_key,
        client_secret=settings.tiktok_client_secret.get_secret_value(),
        base_url=settings.tiktok_api_url,
    )


def sealer(settings: Settings) -> Sealer:
    return Sealer(settings.secret_key.get_secret_value())


# -- connecting --------------------------------------------------------------------------------


def authorization(settings: Settings) -> tuple[str, str]:
    """(the address where the account's owner grants Rally its scopes, the state to expect
    back with the code)."""
    if not settings.tiktok_client_key:
        raise RallyError("set RALLY_TIKTOK_CLIENT_KEY: the TikTok app's client key")
    if not settings.tiktok_redirect_uri:
        raise RallyError(
            "set RALLY_TIKTOK_REDIRECT_URI to the redirect URI registered for the TikTok app"
        )
    sealer(settings)  # no tokens taken that Rally could not keep
    state = secrets.token_urlsafe(16)
    url = authorization_url(
        settings.tiktok_client_key, redirect_uri=settings.tiktok_redirect_uri, state=state
    )
    return url, state


def code_from(answer: str, state: str | None) -> str:
    """The authorization code in what the person pasted: the code itself, or the whole address
    TikTok sent them to (whose `state`, when we know which to expect, must be ours)."""
    answer = answer.strip()
    if "://" not in answer and "code=" not in answer:
        if not answer:
            raise RallyError("no code given")
        return answer
    query = parse_qs(urlsplit(answer).query or answer)
    if "error" in query:
        reason = query.get("error_description", query["error"])[0]
        raise RallyError(f"TikTok did not authorize Rally: {reason}")
    if state is not None and query.get("state", [state])[0] != state:
        raise RallyError("that address answers another authorization (its state differs)")
    code = query.get("code", [""])[0]
    if not code:
        raise RallyError("that address carries no code")
    return code


@dataclass(frozen=True)
class Connected:
    business_id: str
    scopes: tuple[str, ...]
    missing_scopes: tuple[str, ...]
    access_expires_at: datetime
    refresh_expires_at: datetime
    campaign: str | None
    creator: str | None
    region: str | None


def connect(
    engine: Engine,
    settings: Settings,
    http: httpx.Client,
    code: str,
    *,
    now: datetime,
    actor: str,
    campaign: str | None = None,
    creator: str | None = None,
    region: str | None = None,
) -> Connected:
    """Exchange the code for the account's tokens and keep them, sealed: the account of
    `creator` on `campaign` (one who authorized their own), or the campaign's own account, or,
    with neither, an account for every campaign. Connecting an account again replaces its
    tokens."""
    seal = sealer(settings)
    if region is not None and not (len(region) == 2 and region.isalpha()):
        raise RallyError(f"--region: a two-letter country code (US, GB, ...), not {region!r}")
    if creator and not campaign:
        raise RallyError("--creator needs --campaign: the campaign they are on")
    with transaction(engine, write=False) as session:
        campaign_id, member_id = _place(session, campaign, creator)
    try:
        grant = tiktok_app(settings, http).exchange_code(
            code, redirect_uri=settings.tiktok_redirect_uri
        )
    except IntegrationError as exc:
        raise RallyError(f"TikTok did not grant the tokens: {exc}") from None
    row = _row(grant, seal, now) | {
        "campaign_id": campaign_id,
        "member_id": member_id,
        "region": region.upper() if region else None,
        "connected_at": now,
    }
    whose = f"@{creator}'s own" if creator else (f"{campaign}'s" if campaign else "the")
    with transaction(engine) as session:
        session.merge(TikTokAccount(**row))
        summary = f"TikTok business account {grant.business_id} connected as {whose} account"
        record(
            session,
            [Change(actor, "tiktok.connected", "tiktok_account", grant.business_id, summary)],
        )
    return Connected(
        grant.business_id,
        grant.scopes,
        tuple(s for s in SCOPES if s not in grant.scopes),
        row["access_expires_at"],
        row["refresh_expires_at"],
        campaign,
        creator,
        row["region"],
    )


def _place(session: Session, slug: str | None, handle: str | None) -> tuple[int | None, int | None]:
    """(campaign id, roster member id) an account is connected for."""
    if not slug:
        return None, None
    campaign = get_campaign(session, slug)
    if not handle:
        return campaign.id, None
    member = session.exec(
        select(RosterMember.id)
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(RosterMember.campaign_id == campaign.id, Creator.handle == handle.lstrip("@"))
    ).first()
    if member is None:
        raise RallyError(f"--creator: @{handle.lstrip('@')} is not on {slug}'s roster")
    return campaign.id, member


def _row(grant: TokenGrant, seal: Sealer, now: datetime) -> dict[str, Any]:
    return {
        "business_id": grant.business_id,
        "scopes": list(grant.scopes),
        "access_token": seal.seal(grant.access_token),
        "access_expires_at": now + timedelta(seconds=grant.expires_in),
        "refresh_token": seal.seal(grant.refresh_token),
        "refresh_expires_at": now + timedelta(seconds=grant.refresh_expires_in),
    }


# -- using them --------------------------------------------------------------------------------


class Accounts:
    """The connected accounts for one pass (a poll, a delivery), each with a client whose token
    is refreshed ahead of its expiry and when TikTok says it has expired."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        http: httpx.Client,
        *,
        now: Callable[[], datetime],
    ) -> None:
        self.engine, self.settings, self.http, self.now = engine, settings, http, now
        with transaction(engine, write=False) as session:
            self.rows = {
                row.business_id: row
                for row in session.exec(select(TikTokAccount).order_by(TikTokAccount.business_id))
            }
        self._clients: dict[str, TikTokBusiness] = {}
        self._seal: Sealer | None = None

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __iter__(self) -> Iterator[TikTokAccount]:
        return iter(self.rows.values())

    def client(self, business_id: str | None) -> TikTokBusiness:
        """The client of account `business_id`, or of the one account connected when the
        message names none; a RallyError when there is no such account."""
        if not business_id:
            if len(self.rows) != 1:
                raise RallyError(
                    f"{len(self.rows)} TikTok accounts are connected and this names none"
                )
            business_id = next(iter(self.rows))
        if business_id not in self.rows:
            raise RallyError(f"TikTok account {business_id} is not connected")
        if business_id not in self._clients:
            row = self.rows[business_id]
            self._clients[business_id] = TikTokBusiness(
                self.http,
                access_token=self.token(business_id),
                business_id=business_id,
                base_url=self.settings.tiktok_api_url,
                refresh=lambda stale: self.token(business_id, stale=stale),
                region=row.region,
            )
        return self._clients[business_id]

    def for_video(self, campaign_id: int, member_id: int | None) -> str | None:
        """The account a posted video is on: its creator's own if they connected it, else its
        campaign's, else the one connected for every campaign (None: no such account)."""
        rows = list(self.rows.values())
        for matches in (
            lambda r: member_id is not None and r.member_id == member_id,
            lambda r: r.campaign_id == campaign_id and r.member_id is None,
            lambda r: r.campaign_id is None,
        ):
            found = [r.business_id for r in rows if matches(r)]
            if found:
                return found[0]
        return None

    def token(self, business_id: str, *, stale: str | None = None) -> str:
        """A usable access token of the account: the stored one, unless it is `stale` (TikTok
        said it expired) or about to expire, when it is refreshed first. Rally set up so that
        it cannot use its tokens (the secret key changed, the app's key gone) makes TikTok
        unavailable: the messages waiting wait, rather than fail for no fault of theirs."""
        try:
            return self._token(business_id, stale)
        except RallyError as exc:
            raise UnavailableError(f"TikTok account {business_id}: {exc}") from None

    def _token(self, business_id: str, stale: str | None) -> str:
        seal = self._seal = self._seal or sealer(self.settings)
        row = self._read(business_id)
        token = seal.open(row.access_token, f"TikTok account {business_id}'s access token")
        if token != stale and row.access_expires_at - self.now() > REFRESH_AHEAD:
            return token
        refresh_token = seal.open(row.refresh_token, f"TikTok account {business_id}'s tokens")
        try:
            grant = tiktok_app(self.settings, self.http).refresh(refresh_token)
        except IntegrationError as exc:
            again = self._read(business_id)
            if again.refresh_token != row.refresh_token:  # refreshed meanwhile by another pass
                return seal.open(again.access_token, f"TikTok account {business_id}'s tokens")
            raise UnavailableError(
                f"TikTok refused to refresh account {business_id}'s token ({exc}): connect it "
                "again with `rally tiktok connect`"
            ) from None
        now = self.now()
        values = _row(grant, seal, now) | {"refreshed_at": now}
        del values["business_id"]
        with transaction(self.engine, take_turns=False) as session:
            changed = (
                session.connection()
                .execute(
                    update(TikTokAccount)
                    .where(
                        col(TikTokAccount.business_id) == business_id,
                        col(TikTokAccount.refresh_token) == row.refresh_token,
                    )
                    .values(**values)
                )
                .rowcount
            )
        if not changed:  # another pass refreshed first: its tokens stand
            again = self._read(business_id)
            return seal.open(again.access_token, f"TikTok account {business_id}'s tokens")
        return grant.access_token

    def _read(self, business_id: str) -> TikTokAccount:
        with transaction(self.engine, write=False) as session:
            row = session.get(TikTokAccount, business_id)
        if row is None:
            raise RallyError(f"TikTok account {business_id} is not connected")
        self.rows[business_id] = row
        return row


# -- webhooks and status -----------------------------------------------------------------------


def callback_url(settings: Settings) -> str:
    """Where TikTok is to send webhooks: Rally's public address; TikTok calls only HTTPS."""
    url = f"{settings.public_url}/webhooks/tiktok"
    if not url.startswith("https://"):
        raise RallyError(
            f"TikTok sends webhooks only to HTTPS addresses and RALLY_PUBLIC_URL is "
            f"{settings.public_url}: set it to Rally's public https:// address"
        )
    return url


def subscribe(settings: Settings, http: httpx.Client) -> list[Subscription]:
    """Register Rally's webhook address for comments and for direct messages."""
    app, url = tiktok_app(settings, http), callback_url(settings)
    try:
        return [app.subscribe(kind, url) for kind in WEBHOOK_EVENT_TYPES]
    except IntegrationError as exc:
        raise RallyError(f"TikTok did not register the webhooks: {exc}") from None


@dataclass
class Status:
    accounts: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)


def status(engine: Engine, settings: Settings, http: httpx.Client, *, now: datetime) -> Status:
    """Each connected account (whose, its scopes, when its tokens expire, whether it may send
    DMs) and where TikTok sends each kind of webhook (asked of TikTok)."""
    report = Status()
    with transaction(engine, write=False) as session:
        rows = session.exec(
            select(TikTokAccount, Campaign.slug, Creator.handle)
            .join(Campaign, col(Campaign.id) == col(TikTokAccount.campaign_id), isouter=True)
            .join(RosterMember, col(RosterMember.id) == col(TikTokAccount.member_id), isouter=True)
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id), isouter=True)
            .order_by(col(TikTokAccount.business_id))
        ).all()
    for row, slug, handle in rows:
        report.accounts.append(
            {
                "business_id": row.business_id,
                "campaign": slug,
                "creator": handle,
                "region": row.region,
                "scopes": row.scopes,
                "missing_scopes": [s for s in SCOPES if s not in row.scopes],
                "access_expires_at": row.access_expires_at,
                "access_expired": row.access_expires_at <= now,
                "refresh_expires_at": row.refresh_expires_at,
                "refresh_expired": row.refresh_expires_at <= now,
                "dms": row.region not in NO_DM_REGIONS,
            }
        )
    try:
        app = tiktok_app(settings, http)
    except RallyError as exc:
        report.subscriptions = {k: {"error": str(exc)} for k in WEBHOOK_EVENT_TYPES}
        return report
    expected = f"{settings.public_url}/webhooks/tiktok"
    for kind in WEBHOOK_EVENT_TYPES:
        try:
            found = app.subscription(kind)
        except IntegrationError as exc:
            report.subscriptions[kind] = {"error": str(exc)}
            continue
        report.subscriptions[kind] = {
            "callback_url": found.callback_url,
            "ours": found.callback_url == expected,
        }
    return report
