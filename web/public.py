"""The public's ways in: creators' `/t/<code>` tracking links and the campaign signup page
`/join/<slug>` with its confirmation links (and `/healthz` for whatever watches the server);
TikTok's webhooks are `web.webhooks`. Each stores its event before answering (see
`tasks.engagement.writer`); rules and follow-ups run later, in batches.

The signup page takes a few signups per network address and per email or phone (429 past
them), and a form that fills the field hidden from people is answered as a success but
recorded nowhere. The address is the request's peer as the server sees it: `rally serve`
takes a proxy's X-Forwarded-For only from the addresses uvicorn trusts (FORWARDED_ALLOW_IPS,
by default this machine).
"""

import asyncio
import ipaddress
import math
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from config.campaign import CampaignSpec
from store.db import transaction
from tasks.engagement.confirm import LINK_LIFETIME, check_link, confirm_link
from tasks.engagement.inbound import LinkTarget, click_event, link_target
from tasks.engagement.signups import (
    TooMany,
    consent_wording,
    count_signup,
    sign_up,
    signup_page_campaign,
)
from tasks.engagement.writer import EventWriter
from tasks.formats import plain_text
from tasks.leads.contacts import ContactError, normalize_email, normalize_phone
from web.deps import AppSettings, Clock, Store, Writer
from web.pages import TEMPLATES, form_fields, not_found, page_response, request_body

router = APIRouter()
MAX_FORM_BYTES = 8 * 1024  # the signup form's fields, filled, are a few hundred bytes
MAX_FORM_FIELDS = 20
MAX_FIELD_CHARS = 500
HONEYPOT = "website"  # the field hidden from people: only a machine fills it in
CONFIRM_STATUS = {"ready": 200, "used": 200, "confirmed": 200, "opted out": 200,
                  "expired": 410, "unknown": 404}  # fmt: skip
TEMPLATES.env.globals["consent_wording"] = consent_wording  # the words the records keep


@router.get("/healthz")
async def health() -> dict[str, str]:
    """Answers while the server runs, for whatever checks that it is up: from the event loop,
    so a check is not held up behind pages that have every worker thread busy."""
    return {"status": "ok"}


@router.get("/t/{code}")
async def tracking_link(
    request: Request, code: str, engine: Store, clock: Clock, writer: Writer
) -> Response:
    """A creator's short link: the click is stored, then the landing page with their UTM tags."""
    target = await run_in_threadpool(_link_target, engine, code)
    if target is None:  # the public never saw a brief: no word of expired brief links here
        return page_response(request, "unknown_link.html", {}, status_code=404)
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
async def join(
    request: Request, slug: str, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """A signup from the page: the problems shown beside their fields, "too many" (429), or the
    person recorded as a lead with the consents they ask for pending and asked to confirm, and
    the creator whose code they gave; then the page that says what to do next."""
    spec = await run_in_threadpool(_signup_page_spec, engine, slug)
    if spec is None:
        return not_found(request)
    body = await request_body(request, MAX_FORM_BYTES)
    if body is None:
        return PlainTextResponse("The form is too large.", status_code=413)
    form = form_fields(body, max_fields=MAX_FORM_FIELDS, max_chars=MAX_FIELD_CHARS)
    values, problems = signup_values(form)
    if form.get(HONEYPOT):
        return page_response(request, "joined.html", thanks(spec, values))
    if problems:
        context = {"spec": spec, "form": form, "problems": problems}
        return page_response(request, "join.html", context, status_code=400)
    refused = await run_in_threadpool(
        _sign_up,
        engine,
        slug,
        values,
        form.get("code", ""),
        client=client_address(request),
        public_url=settings.public_url,
        now=clock(),
    )
    if refused is not None:
        context = {"spec": spec, "form": form, "problems": {}, "too_many": too_many(refused)}
        response = page_response(request, "join.html", context, status_code=429)
        response.headers["Retry-After"] = str(math.ceil(refused.retry_after))
        return response
    return page_response(request, "joined.html", thanks(spec, values))


def client_address(request: Request) -> str:
    """The network address a signup is counted against: the peer's, an IPv6 one as its /64
    (what one household or phone is given)."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else str(address)


def too_many(refused: TooMany) -> str:
    """What the page says to a signup over the limits, in plain words."""
    minutes = max(1, round(refused.retry_after / 60))
    if refused.what == "client":
        wait = f"{minutes} minute{'s' if minutes > 1 else ''}"
        return f"Too many signups from this connection. Please try again in {wait}."
    hours = max(1, round(refused.retry_after / 3600))
    wait = f"{hours} hour{'s' if hours > 1 else ''}"
    return f"Too many signups for this email or phone today. Please try again in {wait}."


def thanks(spec: CampaignSpec, values: dict[str, Any]) -> dict[str, Any]:
    """What the thank-you page says: only what this form asked for, never what Rally knows of
    the address (a stranger may have typed it)."""
    consent = values.get("consent") or {}
    return {
        "spec": spec,
        "name": str(values.get("name") or "").split(" ")[0],
        "email": values.get("email") if consent.get("email") else None,
        "phone": readable_phone(values.get("phone")) if consent.get("sms") else None,
        "days": LINK_LIFETIME.days,
    } | next_step(spec)


def next_step(spec: CampaignSpec) -> dict[str, str | None]:
    """Where the pages send people next: the campaign's public site, named by its host."""
    website = spec.signup.website
    return {"website": website, "website_name": urlsplit(website).netloc if website else None}


def readable_phone(phone: str | None) -> str | None:
    """`+12155550123` -> `(215) 555-0123`; other countries' numbers as they are."""
    if phone and phone.startswith("+1") and len(phone) == 12:
        return f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"
    return phone


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
    if values["consent"]["email"] and not values.get("email") and "email" not in problems:
        problems["email"] = "Give an email address to get emails, or untick emails."
    if values["consent"]["sms"] and not values.get("phone"):
        problems["phone"] = "Give a phone number to get texts, or untick texts."
    return values, problems


@router.get("/join/{slug}/confirm/{token}")
def confirm_page(request: Request, slug: str, token: str, engine: Store, clock: Clock) -> Response:
    """A button, not a confirmation: mail scanners that fetch links confirm nothing."""
    with transaction(engine, write=False) as session:
        spec = signup_page_campaign(session, slug)
        if spec is None:
            return not_found(request)
        state = check_link(session, slug, token, now=clock()).state
    return _confirm_response(request, spec, state, token)


@router.post("/join/{slug}/confirm/{token}")
def confirm_email(request: Request, slug: str, token: str, engine: Store, clock: Clock) -> Response:
    """Spend the confirmation link: the person's email consent is granted."""
    with transaction(engine) as session:
        spec = signup_page_campaign(session, slug)
        if spec is None:
            return not_found(request)
        state = confirm_link(session, slug, token, now=clock(), origin=client_address(request))
    return _confirm_response(request, spec, state, token)


def _confirm_response(request: Request, spec: CampaignSpec, state: str, token: str) -> Response:
    context = {"spec": spec, "state": state, "token": token, "days": LINK_LIFETIME.days}
    context |= next_step(spec)
    return page_response(request, "confirm.html", context, status_code=CONFIRM_STATUS[state])


async def _stored(writer: EventWriter, row: dict[str, Any]) -> None:
    """Wait until the writer has committed this event row."""
    await asyncio.wrap_future(writer.submit(row))


def _signup_page_spec(engine: Engine, slug: str) -> CampaignSpec | None:
    with transaction(engine, write=False) as session:
        return signup_page_campaign(session, slug)


def _sign_up(
    engine: Engine,
    slug: str,
    values: dict[str, Any],
    code: str,
    *,
    client: str,
    public_url: str,
    now: datetime,
) -> TooMany | None:
    """Count the signup, then record it; neither takes turns with other changes."""
    addresses = [values.get("email"), values.get("phone")]
    with transaction(engine, take_turns=False) as session:
        refused = count_signup(session, slug, client, addresses)
    if refused is None:
        with transaction(engine, take_turns=False) as session:
            sign_up(session, slug, values, code, client=client, public_url=public_url, now=now)
    return refused


def _link_target(engine: Engine, code: str) -> LinkTarget | None:
    with transaction(engine, write=False) as session:
        return link_target(session, code)
