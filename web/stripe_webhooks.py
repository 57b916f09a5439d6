"""Stripe's signed webhooks at `/webhooks/stripe`: a `transfer.created` for one of Rally's
payouts settles it (`tasks.payments.payouts`), whether it comes before or after Stripe's answer
to the transfer itself. Every other event is answered 200 and left alone, so that Stripe does
not send it again. A bad or stale signature is 401, a body that is not an event 400, one over
`MAX_BYTES` 413, and without the endpoint's secret (`RALLY_STRIPE_WEBHOOK_SECRET`) 503.
"""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from integrations.stripe import (
    SIGNATURE_HEADER,
    SignatureError,
    StripeSettings,
    parse_event,
    verify_signature,
)
from store.db import transaction
from tasks.payments.payouts import on_transfer_created
from web.deps import AppState, app_state_of
from web.pages import bounded_body

router = APIRouter()
PATH = "/webhooks/stripe"
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
    if kind != "transfer.created":
        return JSONResponse({"ok": True, "ignored": kind})
    settled = await asyncio.to_thread(_settle, state, found)
    return JSONResponse({"ok": True, "settled": settled})


def _settle(state: AppState, transfer: dict[str, Any]) -> bool:
    with transaction(state.engine) as session:
        return on_transfer_created(session, transfer, actor="stripe", now=state.clock())
