"""The payout providers' webhooks, which settle Rally's payouts (`tasks.payments.payouts`)
whether they come before or after the provider's answer to the payout itself:

- Stripe's at `/webhooks/stripe`, signed with the endpoint's secret: a `transfer.created` for
  one of Rally's payouts settles it, and a `transfer.reversed` takes back what it reversed (to
  be approved again). A bad or stale signature is 401; without the secret
  (`RALLY_STRIPE_WEBHOOK_SECRET`), 503.
- PayPal's at `/webhooks/paypal`, each proved genuine by asking PayPal
  (`/v1/notifications/verify-webhook-signature`): a `PAYMENT.PAYOUTS-ITEM.*` event settles the
  item's payout, returns its amount to approved, or, for one paid and then refunded or
  returned, takes it back. One PayPal does not vouch for is 401; without the app's credentials
  and webhook id (`RALLY_PAYPAL_*`), 503.

Every other event is answered 200 and left alone, so that it is not sent again. A body that is
not an event is 400, and one over `MAX_BYTES` 413.
"""

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from integrations.errors import IntegrationError
from integrations.http import http_client, json_body
from integrations.paypal import TRANSMISSION, PayPal, PayPalSettings
from integrations.stripe import (
    SIGNATURE_HEADER,
    SignatureError,
    StripeSettings,
    parse_event,
    verify_signature,
)
from store.db import transaction
from tasks.payments.payouts import (
    on_paypal_item,
    on_transfer_created,
    on_transfer_reversed,
    paypal_for,
)
from web.deps import AppState, app_state_of
from web.pages import bounded_body

router = APIRouter()
PATH, PAYPAL_PATH = "/webhooks/stripe", "/webhooks/paypal"
MAX_BYTES = 64 * 1024  # Stripe's transfer events are a few kilobytes


@router.post(PATH, include_in_schema=False)
async def stripe_webhook(request: Request) -> JSONResponse:
    state = app_state_of(request)
    body = await bounded_body(dict(request.scope["headers"]), request.receive, MAX_BYTES)
    if body is None:
        return JSONResponse({"error": "the body is too large"}, status_code=413)
    secret = state.settings.section(StripeSettings).webhook_secret.get_secret_value()
    if not secret:
        return JSONResponse({"error": "webhooks are not configured"}, status_code=503)
    try:
        verify_signature(
            request.headers.get(SIGNATURE_HEADER), body, secret, now=state.clock().timestamp()
        )
        kind, found = parse_event(body)
    except SignatureError as exc:
        return JSONResponse({"error": f"signature: {exc}"}, status_code=401)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    if kind not in STRIPE_HANDLERS:
        return JSONResponse({"ok": True, "ignored": kind})
    done = await asyncio.to_thread(_told, state, kind, found)
    said = "settled" if kind == "transfer.created" else "taken_back"
    return JSONResponse({"ok": True, said: done})


STRIPE_HANDLERS = {
    "transfer.created": on_transfer_created,  # settles a payout whose answer has not come
    "transfer.reversed": on_transfer_reversed,  # takes back what a paid payout lost
}


def _told(state: AppState, kind: str, transfer: dict[str, Any]) -> bool:
    with transaction(state.engine) as session:
        return STRIPE_HANDLERS[kind](session, transfer, actor="stripe", now=state.clock())


@router.post(PAYPAL_PATH, include_in_schema=False)
async def paypal_webhook(request: Request) -> JSONResponse:
    state = app_state_of(request)
    body = await bounded_body(dict(request.scope["headers"]), request.receive, MAX_BYTES)
    if body is None:
        return JSONResponse({"error": "the body is too large"}, status_code=413)
    paypal = state.settings.section(PayPalSettings)
    if not (paypal.client_id and paypal.client_secret.get_secret_value() and paypal.webhook_id):
        return JSONResponse({"error": "webhooks are not configured"}, status_code=503)
    try:
        event = json_body(body)
    except ValueError as exc:
        return JSONResponse({"error": f"the body: {exc}"}, status_code=400)
    resource = event.get("resource") if isinstance(event, dict) else None
    if not isinstance(resource, dict) or not isinstance(event.get("event_type"), str):
        return JSONResponse({"error": "not a PayPal event"}, status_code=400)
    headers = {name: request.headers.get(name, "") for name in TRANSMISSION}
    try:
        paypal_api = _paypal_of(request.app.state, state)
        done = await asyncio.to_thread(_paypal_event, state, paypal_api, headers, event)
    except IntegrationError as exc:  # PayPal could not be asked: it will send the event again
        return JSONResponse({"error": str(exc)}, status_code=503)
    if done is False:
        return JSONResponse({"error": "PayPal does not vouch for this event"}, status_code=401)
    return JSONResponse({"ok": True, "done": done})


def _paypal_of(app_state: Any, state: AppState) -> PayPal:
    """The app's PayPal client, made on the first event and kept, with its access token, for
    the next ones (a token per event would double PayPal's calls)."""
    found = getattr(app_state, "paypal", None)
    if found is None:
        client = http_client(timeout=httpx.Timeout(10.0, connect=5.0))
        found = app_state.paypal = paypal_for(state.settings, client, None)
    return found


def _paypal_event(
    state: AppState, paypal: PayPal, headers: dict[str, str], event: dict[str, Any]
) -> Any:
    """False for an event PayPal does not vouch for; else what it did to a payout."""
    webhook_id = state.settings.section(PayPalSettings).webhook_id
    if not paypal.verify_webhook(headers, event, webhook_id):
        return False
    if not str(event["event_type"]).startswith("PAYMENT.PAYOUTS-ITEM."):
        return None
    with transaction(state.engine) as session:
        return on_paypal_item(session, event["resource"], actor="paypal", now=state.clock())
