"""The public's ways in: TikTok's signed webhooks, creators' `/t/<code>` tracking links and the
campaign signup page `/join/<slug>` (and `/healthz` for whatever watches the server). Each
stores its event before answering (see `tasks.engagement.writer`); rules and follow-ups run
later, in batches.
"""

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import Engine

from config.campaign import CampaignSpec
from integrations.tiktok import (
    SIGNATURE_HEADER,
    SignatureError,
    parse_webhook,
    verify_signature,
)
from store.db import transaction
from tasks.engagement.inbound import LinkTarget, click_event, link_target, webhook_event
from tasks.engagement.signups import sign_up, signup_page_campaign
from tasks.engagement.writer import EventWriter
from tasks.formats import plain_text
from tasks.leads.contacts import ContactError, normalize_email, normalize_phone
from web.deps import Clock, Store, Writer, app_state_of
from web.pages import not_found, page_response

router = APIRouter()
MAX_WEBHOOK_BYTES = 64 * 1024  # TikTok's notifications are a few hundred bytes


@router.get("/healthz")
def health() -> dict[str, str]:
    """Answers while the server runs, for whatever checks that it is up."""
    return {"status": "ok"}


@router.post("/webhooks/tiktok")
async def tiktok_webhook(request: Request) -> Response:
    """A notification TikTok signed with our client secret, stored as an event (a redelivery
    is only counted; the account's own comments and messages echoed back and read receipts are
    answered and not stored); 401 for a bad or stale signature, 400 for a body Rally cannot
    read."""
    state = app_state_of(request)  # read directly: the busiest route, spared Depends' cost
    settings, clock, writer = state.settings, state.clock, state.writer
    body = await bounded_body(request, MAX_WEBHOOK_BYTES)
    if body is None:
        return JSONResponse({"error": "the body is too large"}, status_code=413)
    secret = settings.tiktok_client_secret.get_secret_value()
    if not secret:
        return JSONResponse({"error": "webhooks are not configured"}, status_code=503)
    now = clock()
    try:
        verify_signature(request.headers.get(SIGNATURE_HEADER), body, secret, now=now.timestamp())
        notification = parse_webhook(body, settings.tiktok_client_key, now=now)
    except SignatureError as exc:
        return JSONResponse({"error": f"signature: {exc}"}, status_code=401)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    if notification.ignored:  # the account's own comment or message echoed, a read receipt
        return JSONResponse({"ok": True, "ignored": notification.ignored})
    await _stored(writer, webhook_event(notification, received_at=now))
    return JSONResponse({"ok": True})


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it says or proves to be over `limit` bytes (it
    is never read, or kept, past that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


@router.get("/t/{code}")
async def tracking_link(
    request: Request, code: str, engine: Store, clock: Clock, writer: Writer
) -> Response:
    """A creator's short link: the click is stored, then the landing page with their UTM tags."""
    target = await asyncio.to_thread(_link_target, engine, code)
    if target is None:
        return not_found(request)
    await _stored(writer, click_event(target, code, request.query_params, now=clock()))
    return RedirectResponse(target.landing_url, status_code=302)


@router.get("/join/{slug}")
def join_page(request: Request, slug: str, engine: Store, code: str = "") -> Response:
    """The campaign's signup form; `code` (a creator's promo code) comes filled in."""
    spec = _signup_page_spec(engine, slug)
    if spec is None:
        return not_found(request)
    form = {"code": code[:32]}
    return page_response(request, "join.html", {"spec": spec, "form": form, "problems": {}})


@router.post("/join/{slug}")
async def join(request: Request, slug: str, engine: Store, clock: Clock) -> Response:
    """A signup from the page: the problems shown beside their fields, or the person recorded
    as a lead with their consents and the creator whose code they gave."""
    spec = await asyncio.to_thread(_signup_page_spec, engine, slug)
    if spec is None:
        return not_found(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    values, problems = signup_values(form)
    if problems:
        context = {"spec": spec, "form": form, "problems": problems}
        return page_response(request, "join.html", context, status_code=400)
    await asyncio.to_thread(_sign_up, engine, slug, values, form.get("code", ""), clock())
    return page_response(request, "joined.html", {"spec": spec})


def signup_values(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The signup form's contact, or the problems by field (shown beside each field)."""
    problems: dict[str, str] = {}
    values: dict[str, Any] = {"name": " ".join(plain_text(form.get("name", "")).split())[:200]}
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
    values["zip"] = plain_text(form.get("zip", "")).strip()[:10] or None
    values["consent"] = {
        channel: form.get(f"consent_{channel}") == "yes" for channel in ("email", "sms")
    }
    if values["consent"]["sms"] and not values.get("phone"):
        problems["phone"] = "Give a phone number to get texts, or untick texts."
    return values, problems


async def _stored(writer: EventWriter, row: dict[str, Any]) -> None:
    """Wait until the writer has committed this event row."""
    await asyncio.wrap_future(writer.submit(row))


def _signup_page_spec(engine: Engine, slug: str) -> CampaignSpec | None:
    with transaction(engine, write=False) as session:
        return signup_page_campaign(session, slug)


def _sign_up(engine: Engine, slug: str, values: dict[str, Any], code: str, now: datetime) -> None:
    with transaction(engine) as session:
        sign_up(session, slug, values, code, now=now)


def _link_target(engine: Engine, code: str) -> LinkTarget | None:
    with transaction(engine, write=False) as session:
        return link_target(session, code)
