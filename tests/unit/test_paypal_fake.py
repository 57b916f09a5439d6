"""The PayPal fake keeps what PayPal's Payouts API does: a token from the client credentials, an
idempotent retry that replays the first answer and pays once, a sender_batch_id refused the
second time, items that settle later with a webhook that PayPal's verify endpoint vouches for,
PayPal's 429 over the rate limit, and a lost answer recovered by retrying with the same id."""

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.fakes.http_server import FakeHttpServer, ManualClock, Response, serving
from tests.fakes.paypal_api import FakePayPal


@pytest.fixture
def paypal() -> Iterator[FakePayPal]:
    yield from serving(FakePayPal(rate=None))


def token(fake: FakePayPal) -> str:
    answer = httpx.post(
        f"{fake.url}/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(fake.client_id, fake.client_secret),
    )
    assert answer.status_code == 200
    return str(answer.json()["access_token"])


def batch(sender_batch_id: str, *items: tuple[str, str]) -> dict[str, Any]:
    return {
        "sender_batch_header": {"sender_batch_id": sender_batch_id, "email_subject": "Paid"},
        "items": [
            {"amount": {"value": value, "currency": "USD"}, "receiver": receiver}
            for receiver, value in items
        ],
    }


def create(
    fake: FakePayPal, bearer: str, body: dict[str, Any], request_id: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"}
    if request_id is not None:
        headers["PayPal-Request-Id"] = request_id
    return httpx.post(f"{fake.url}/v1/payments/payouts", json=body, headers=headers)


def test_a_token_then_a_retry_with_the_same_request_id_replays_and_creates_one_batch(paypal):
    receiver = paypal.add_receiver()
    bearer = token(paypal)
    body = batch("week-7", (receiver, "12.34"))

    first = create(paypal, bearer, body, "payout-7")
    again = create(paypal, bearer, body, "payout-7")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    header = first.json()["batch_header"]
    assert re.fullmatch(r"[A-Z0-9]{13}", header["payout_batch_id"])
    assert header["batch_status"] == "PENDING"
    assert header["sender_batch_header"] == body["sender_batch_header"]
    assert first.json()["links"][0]["href"].endswith(
        f"/v1/payments/payouts/{header['payout_batch_id']}"
    )
    assert len(paypal.batches) == 1 and len(paypal.items) == 1
    other = create(paypal, bearer, batch("week-8", (receiver, "1.00")), "payout-7")
    assert other.status_code == 422 and other.json()["name"] == "DUPLICATE_REQUEST_ID"


def test_credentials_and_tokens_are_checked(paypal):
    wrong = httpx.post(
        f"{paypal.url}/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(paypal.client_id, "nope"),
    )
    bearer = token(paypal)
    paypal.expire_tokens()
    expired = create(paypal, bearer, batch("b1", ("a@example.com", "1.00")))

    assert wrong.status_code == 401
    assert wrong.json() == {
        "error": "invalid_client",
        "error_description": "Client Authentication failed",
    }
    assert expired.status_code == 401 and expired.json()["name"] == "AUTHENTICATION_FAILURE"
    assert paypal.batches == []


def test_a_sender_batch_id_used_before_is_a_user_business_error(paypal):
    receiver = paypal.add_receiver()
    bearer = token(paypal)
    first = create(paypal, bearer, batch("week-9", (receiver, "5.00")), "r1")

    again = create(paypal, bearer, batch("week-9", (receiver, "5.00")), "r2")

    assert again.status_code == 400
    error = again.json()
    assert (error["name"], error["message"]) == ("USER_BUSINESS_ERROR", "User business error.")
    detail = error["details"][0]
    assert (detail["field"], detail["issue"]) == (
        "SENDER_BATCH_ID",
        "Batch with given sender_batch_id already exists",
    )
    assert detail["link"][0]["href"] == first.json()["links"][0]["href"]
    assert len(paypal.batches) == 1


def test_validation_errors_name_each_bad_field_and_funds_are_checked(paypal):
    bearer = token(paypal)
    paypal.balance["USD"] = Decimal("10.00")
    body = {
        "sender_batch_header": {"sender_batch_id": "v1"},
        "items": [
            {"amount": {"value": "12.3", "currency": "USD"}, "receiver": "a@example.com"},
            {"amount": {"value": "1.00", "currency": "XXX"}},
        ],
    }

    invalid = create(paypal, bearer, body)
    poor = create(paypal, bearer, batch("v2", ("a@example.com", "10.01")))

    assert invalid.status_code == 400 and invalid.json()["name"] == "VALIDATION_ERROR"
    assert [d["field"] for d in invalid.json()["details"]] == [
        "items[0].amount.value",
        "items[1].amount.currency",
        "items[1].receiver",
    ]
    assert poor.status_code == 422 and poor.json()["name"] == "INSUFFICIENT_FUNDS"
    assert paypal.batches == []


def test_settled_items_succeed_and_their_webhook_verifies_only_unaltered(paypal):
    receiver = FakeHttpServer()
    receiver.route("POST", "/paypal", lambda request: Response(200))
    with receiver:
        paypal.webhook_url = f"{receiver.url}/paypal"
        creator = paypal.add_receiver()
        bearer = token(paypal)
        created = create(paypal, bearer, batch("week-10", (creator, "20.00"))).json()
        batch_id = created["batch_header"]["payout_batch_id"]
        assert paypal.webhooks_sent == []

        paypal.settle(batch_id)
        [delivery] = paypal.wait_for_webhooks(1)
        shown = httpx.get(
            f"{paypal.url}/v1/payments/payouts/{batch_id}",
            headers={"Authorization": f"Bearer {bearer}"},
        ).json()
        sent = receiver.requests[0]

    item = shown["items"][0]
    assert shown["batch_header"]["batch_status"] == "SUCCESS"
    assert shown["batch_header"]["amount"] == {"currency": "USD", "value": "20.00"}
    assert item["transaction_status"] == "SUCCESS"
    assert re.fullmatch(r"[A-Z0-9]{17}", item["transaction_id"])
    assert [i["payout_item_id"] for i in paypal.paid_to(creator)] == [item["payout_item_id"]]
    event = json.loads(sent.body)
    assert event["event_type"] == "PAYMENT.PAYOUTS-ITEM.SUCCEEDED"
    assert event["resource"]["transaction_id"] == item["transaction_id"]
    assert sent.headers["paypal-auth-algo"] == "SHA256withRSA"
    assert delivery.status == 200

    verification = {
        "auth_algo": sent.headers["paypal-auth-algo"],
        "cert_url": sent.headers["paypal-cert-url"],
        "transmission_id": sent.headers["paypal-transmission-id"],
        "transmission_sig": sent.headers["paypal-transmission-sig"],
        "transmission_time": sent.headers["paypal-transmission-time"],
        "webhook_id": paypal.webhook_id,
        "webhook_event": event,
    }
    altered_event = json.loads(sent.body)
    altered_event["resource"]["payout_item"]["amount"]["value"] = "2000.00"
    statuses = []
    for altered in (
        {},
        {"webhook_event": altered_event},
        {"webhook_id": "9XL90610J3647323C"},
        {"transmission_time": "2020-01-01T00:00:00Z"},
    ):
        answer = httpx.post(
            f"{paypal.url}/v1/notifications/verify-webhook-signature",
            json={**verification, **altered},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        statuses.append(answer.json()["verification_status"])
    assert statuses == ["SUCCESS", "FAILURE", "FAILURE", "FAILURE"]


def test_an_unknown_receiver_is_unclaimed_and_a_webhook_first_event_precedes_the_answer():
    receiver = FakeHttpServer()
    receiver.route("POST", "/paypal", lambda request: Response(200))
    with receiver:
        url = f"{receiver.url}/paypal"
        with FakePayPal(
            webhook_url=url, webhook_first=True, settle_on_create=True, rate=None
        ) as paypal:
            known = paypal.add_receiver("FAILED")
            body = batch("week-11", (known, "3.00"), ("stranger@example.com", "4.00"))
            answer = create(paypal, paypal.issue_token(), body)
            delivered = receiver.requests  # before any wait: they came before the answer

    assert answer.status_code == 201
    events = [json.loads(request.body) for request in delivered]
    assert [e["event_type"] for e in events] == [
        "PAYMENT.PAYOUTS-ITEM.FAILED",
        "PAYMENT.PAYOUTS-ITEM.UNCLAIMED",
    ]
    assert [e["resource"]["errors"]["name"] for e in events] == [
        "RECEIVER_ACCOUNT_LOCKED",
        "RECEIVER_UNREGISTERED",
    ]
    assert paypal.paid_to(known) == []


def test_over_the_rate_limit_paypal_answers_429_rate_limit_reached_without_retry_after():
    clock = ManualClock()
    with FakePayPal(rate=(2, 1.0), clock=clock) as paypal:
        auth = {"Authorization": f"Bearer {paypal.issue_token()}"}
        answers = [
            httpx.get(f"{paypal.url}/v1/payments/payouts/NOSUCHBATCH01", headers=auth)
            for _ in range(3)
        ]
        clock.advance(1.0)
        later = httpx.get(f"{paypal.url}/v1/payments/payouts/NOSUCHBATCH01", headers=auth)

    assert [a.status_code for a in answers] == [404, 404, 429]
    assert answers[0].json()["name"] == "INVALID_RESOURCE_ID"
    error = answers[2].json()
    assert (error["name"], error["message"]) == (
        "RATE_LIMIT_REACHED",
        "Too many requests. Blocked due to rate limiting.",
    )
    assert error["debug_id"] == answers[2].headers["Paypal-Debug-Id"]
    assert "Retry-After" not in answers[2].headers
    assert later.status_code == 404


def test_a_lost_answer_is_recovered_by_retrying_with_the_same_request_id(paypal):
    creator = paypal.add_receiver()
    bearer = token(paypal)
    body = batch("week-12", (creator, "8.00"))
    paypal.fail_next()
    failed = create(paypal, bearer, body, "r3")
    paypal.lose_answers(1)

    with pytest.raises(httpx.RemoteProtocolError):
        create(paypal, bearer, body, "r3")
    retried = create(paypal, bearer, body, "r3")

    assert failed.status_code == 500 and failed.json()["name"] == "INTERNAL_SERVICE_ERROR"
    assert retried.status_code == 201
    assert [b["batch_header"]["payout_batch_id"] for b in paypal.batches] == [
        retried.json()["batch_header"]["payout_batch_id"]
    ]


def test_a_body_over_64_kib_is_refused_unread(paypal):
    answer = httpx.post(
        f"{paypal.url}/v1/payments/payouts",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Authorization": f"Bearer {paypal.issue_token()}"},
    )

    assert answer.status_code == 413
    assert paypal.requests[-1].status == 413
