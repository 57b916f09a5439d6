"""The public's ways in: TikTok's signed webhooks, creators' `/t/<code>` tracking links and the
campaign signup page `/join/<slug>`. Each stores its event before answering (see
`tasks.engagement.writer`); rules and follow-ups run later, in batches.
"""

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import col, select

from config.campaign import CampaignSpec
from config.settings import Settings
from integrations.tiktok import SignatureError, verify_signature
from store.db import transaction
from store.models import Campaign, Creator, RosterMember
from tasks.campaigns.campaign import campaign_spec
from tasks.campaigns.tracking import tracking_url
from tasks.engagement.events import new_event, store_events
from tasks.engagement.writer import EventWriter
from tasks.leads.contacts import ContactError, normalize_email, normalize_phone, record_person
from tasks.leads.records import queue_sync

WEBHOOK_TYPES = {  # TikTok event -> Rally's event type; anything else is kept as "platform"
    "comment.create": "comment",
    "comment.reply": "reply",
    "direct_message.receive": "dm",
    "message.receive": "dm",
    "mention.create": "mention",
}
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


def add_engagement_routes(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    clock: Callable[[], datetime],
    page: Callable[..., Response],
) -> EventWriter:
    writer = EventWriter(engine)

    async def stored(row: dict[str, Any]) -> None:
        await asyncio.wrap_future(writer.submit(row))

    @app.post("/webhooks/tiktok")
    async def tiktok_webhook(request: Request) -> Response:
        body = await request.body()
        secret = settings.tiktok_client_secret.get_secret_value()
        if not secret:
            return JSONResponse({"error": "webhooks are not configured"}, status_code=503)
        try:
            verify_signature(request.headers.get("TikTok-Signature"), body, secret, now=time.time())
            row = webhook_row(body, settings.tiktok_client_key, now=clock())
        except SignatureError as exc:
            return JSONResponse({"error": f"signature: {exc}"}, status_code=401)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        await stored(row)
        return JSONResponse({"ok": True})

    @app.get("/t/{code}")
    async def tracking_link(request: Request, code: str) -> Response:
        found = await asyncio.to_thread(_member_by_code, engine, code)
        if found is None:
            return page(request, "not_found.html", {}, status_code=404)
        spec, campaign_id, member_id, platform, handle = found
        query = {k: v for k, v in request.query_params.items() if k in UTM}
        now = clock()
        await stored(
            new_event(
                source="rally",
                external_id=uuid.uuid4().hex,
                type="link_click",
                occurred_at=now,
                received_at=now,
                campaign_id=campaign_id,
                member_id=member_id,
                payload={"code": code, **query},
            )
        )
        return RedirectResponse(tracking_url(spec, platform, handle), status_code=302)

    @app.get("/join/{slug}")
    def join_page(request: Request, slug: str, code: str = "") -> Response:
        spec = _campaign_spec(engine, slug)
        if spec is None:
            return page(request, "not_found.html", {}, status_code=404)
        form = {"code": code[:32]}
        return page(request, "join.html", {"spec": spec, "form": form, "problems": {}})

    @app.post("/join/{slug}")
    async def join(request: Request, slug: str) -> Response:
        spec = _campaign_spec(engine, slug)
        if spec is None:
            return page(request, "not_found.html", {}, status_code=404)
        form = {k: str(v) for k, v in (await request.form()).items()}
        values, problems = signup_values(form)
        if problems:
            context = {"spec": spec, "form": form, "problems": problems}
            return page(request, "join.html", context, status_code=400)
        await asyncio.to_thread(record_signup, engine, slug, values, form.get("code", ""), clock())
        return page(request, "joined.html", {"spec": spec})

    return writer


def _campaign_spec(engine: Engine, slug: str) -> CampaignSpec | None:
    with transaction(engine, write=False) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    return campaign_spec(campaign) if campaign else None


def record_signup(
    engine: Engine, slug: str, values: dict[str, Any], code: str, now: datetime
) -> int | None:
    """The signup's lead (with its consents and source code) and its event, in one
    transaction; returns the contact's id (the form has made sure there is a way to reach them)."""
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
        code = code.strip().upper()[:32]
        member_id = (
            session.exec(
                select(RosterMember.id).where(
                    RosterMember.campaign_id == campaign.id, RosterMember.source_code == code
                )
            ).first()
            if code
            else None
        )
        person = {**values, "source_code": code or None}
        contact_id = record_person(
            session,
            person,
            source=f"join:{slug}",
            member_id=member_id,
            now=now,
        )
        store_events(
            session,
            [
                new_event(
                    source="web",
                    external_id=uuid.uuid4().hex,
                    type="signup",
                    occurred_at=now,
                    received_at=now,
                    campaign_id=campaign.id,
                    member_id=member_id,
                    contact_id=contact_id,
                    payload={
                        "form": f"/join/{slug}",
                        "contact": {**values, "source_code": code or None},
                    },
                )
            ],
        )
        if contact_id is not None and campaign.id is not None:
            destinations = campaign_spec(campaign).destinations
            queue_sync(session, campaign.id, destinations, [contact_id], now=now)
        return contact_id


def webhook_row(body: bytes, client_key: str, *, now: datetime) -> dict[str, Any]:
    """The event row of a TikTok webhook body; its id is the body's hash, so the platform's
    redelivery of the same notification is recognised."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict) or "event" not in data:
        raise ValueError("the body has no event")
    if client_key and data.get("client_key") not in (None, client_key):
        raise ValueError("the notification is for another app")
    content = data.get("content")
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            content = {"text": content}
    content = content if isinstance(content, dict) else {}
    created = data.get("create_time")
    occurred = (
        datetime.fromtimestamp(created, now.tzinfo) if isinstance(created, int | float) else now
    )
    return new_event(
        source="tiktok",
        external_id="webhook:" + hashlib.sha256(body).hexdigest()[:40],
        type=WEBHOOK_TYPES.get(str(data["event"]), "platform"),
        occurred_at=occurred,
        received_at=now,
        actor=content.get("username") or data.get("user_openid"),
        video_id=content.get("video_id"),
        text=content.get("text"),
        payload={**data, "content": content},
    )


def _member_by_code(engine: Engine, code: str) -> tuple[CampaignSpec, int, int, str, str] | None:
    with transaction(engine, write=False) as session:
        row = session.exec(
            select(Campaign, RosterMember.id, Creator.platform, Creator.handle)
            .join(RosterMember, col(RosterMember.campaign_id) == col(Campaign.id))
            .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
            .where(RosterMember.tracking_code == code)
        ).first()
    if row is None:
        return None
    campaign, member_id, platform, handle = row
    return campaign_spec(campaign), campaign.id or 0, member_id or 0, platform, handle


def signup_values(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The signup form's contact, or the problems by field (shown beside each field)."""
    problems: dict[str, str] = {}
    values: dict[str, Any] = {"name": " ".join(form.get("name", "").split())[:200]}
    try:
        values["email"] = normalize_email(form.get("email"))
    except ContactError:
        problems["email"] = "That does not look like an email address."
    try:
        values["phone"] = normalize_phone(form.get("phone"))
    except ContactError:
        problems["phone"] = "That does not look like a phone number."
    if not values.get("email") and not values.get("phone") and not problems:
        problems["email"] = "Give an email address or a phone number so we can reach you."
    if not values["name"]:
        problems["name"] = "Tell us your name."
    values["zip"] = form.get("zip", "").strip()[:10] or None
    values["consent"] = {
        channel: form.get(f"consent_{channel}") == "yes" for channel in ("email", "sms")
    }
    if values["consent"]["sms"] and not values.get("phone"):
        problems["phone"] = "Give a phone number to get texts, or untick texts."
    return values, problems
