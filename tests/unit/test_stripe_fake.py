"""The Stripe fake keeps what Stripe's Transfers API does: an idempotent retry replays the first
answer and pays once, a key reused with other parameters is refused, an unknown destination is
`resource_missing`, the rate limit answers Stripe's 429, a lost answer is recovered by retrying
with the same key, and webhooks carry a `Stripe-Signature` that verifies."""

import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.http_server import FakeHttpServer, ManualClock, Response, serving
from tests.fakes.stripe_api import FakeStripe, sign


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    yield from serving(FakeStripe(rate=None))


def create(fake: FakeStripe, key: str | None = None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {fake.secret_key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{fake.url}/v1/transfers", data=params, headers=headers)


def test_a_retry_with_the_same_key_replays_the_first_answer_and_pays_once(stripe):
    account = stripe.add_account()
    params = {"amount": "1200", "currency": "USD", "destination": account}

    first = create(stripe, "payout-7", **params, **{"metadata[payout]": "7"})
    again = create(stripe, "payout-7", **params, **{"metadata[payout]": "7"})

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    transfer = first.json()
    assert transfer["id"].startswith("tr_") and len(transfer["id"]) == 27
    assert (transfer["amount"], transfer["currency"], transfer["metadata"]) == (
        1200,
        "usd",
        {"payout": "7"},
    )
    assert transfer["reversals"]["url"] == f"/v1/transfers/{transfer['id']}/reversals"
    assert [t["id"] for t in stripe.paid_to(account)] == [transfer["id"]]


def test_a_key_reused_with_other_parameters_is_an_idempotency_error(stripe):
    account = stripe.add_account()
    create(stripe, "k1", amount="100", currency="usd", destination=account)

    answer = create(stripe, "k1", amount="101", currency="usd", destination=account)

    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "idempotency_error"
    assert "other than 'k1'" in answer.json()["error"]["message"]
    assert len(stripe.transfers) == 1


def test_an_unknown_destination_is_resource_missing_and_its_answer_is_kept(stripe):
    answer = create(stripe, "k2", amount="100", currency="usd", destination="acct_x")
    stripe.accounts["acct_x"] = True
    again = create(stripe, "k2", amount="100", currency="usd", destination="acct_x")

    assert answer.status_code == again.status_code == 400
    error = answer.json()["error"]
    assert (error["code"], error["param"], error["message"]) == (
        "resource_missing",
        "destination",
        "No such destination: 'acct_x'",
    )
    assert again.json() == answer.json() and stripe.transfers == []


def test_refusals_of_capability_balance_amount_and_key(stripe):
    blocked = stripe.add_account(transfers=False)
    account = stripe.add_account()
    stripe.balance["usd"] = 500

    codes = [
        create(stripe, amount="100", currency="usd", destination=blocked).json()["error"]["code"],
        create(stripe, amount="501", currency="usd", destination=account).json()["error"]["code"],
        create(stripe, amount="1.5", currency="usd", destination=account).json()["error"]["code"],
        create(stripe, currency="usd", destination=account).json()["error"]["code"],
    ]
    wrong = httpx.post(
        f"{stripe.url}/v1/transfers", headers={"Authorization": "Bearer sk_test_1234abcd"}
    )

    assert codes == [
        "insufficient_capabilities_for_transfer",
        "balance_insufficient",
        "parameter_invalid_integer",
        "parameter_missing",
    ]
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "Invalid API Key provided: sk_test_****abcd"


def test_over_the_rate_limit_stripe_answers_429_rate_limit_without_retry_after():
    clock = ManualClock()
    with FakeStripe(rate=(2, 1.0), clock=clock) as stripe:
        auth = {"Authorization": f"Bearer {stripe.secret_key}"}
        answers = [httpx.get(f"{stripe.url}/v1/transfers", headers=auth) for _ in range(3)]
        clock.advance(1.0)
        later = httpx.get(f"{stripe.url}/v1/transfers", headers=auth)

    assert [a.status_code for a in answers] == [200, 200, 429]
    error = answers[2].json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit")
    assert answers[2].headers["Stripe-Should-Retry"] == "true"
    assert "Retry-After" not in answers[2].headers
    assert later.status_code == 200


def test_a_lost_answer_is_recovered_by_retrying_with_the_same_key(stripe):
    account = stripe.add_account()
    stripe.fail_next()
    failed = create(stripe, "k3", amount="300", currency="usd", destination=account)
    stripe.lose_answers(1)

    with pytest.raises(httpx.RemoteProtocolError):
        create(stripe, "k3", amount="300", currency="usd", destination=account)
    retried = create(stripe, "k3", amount="300", currency="usd", destination=account)

    assert failed.status_code == 500 and failed.json()["error"]["type"] == "api_error"
    assert retried.status_code == 200 and retried.headers["Idempotent-Replayed"] == "true"
    assert [t["id"] for t in stripe.transfers] == [retried.json()["id"]]


def test_a_webhook_first_event_arrives_before_the_answer_with_a_signature_that_verifies():
    receiver = FakeHttpServer()
    receiver.route("POST", "/stripe", lambda request: Response(200))
    with receiver:
        url = f"{receiver.url}/stripe"
        with FakeStripe(webhook_url=url, webhook_first=True, rate=None) as stripe:
            account = stripe.add_account()
            answer = create(stripe, "k4", amount="900", currency="usd", destination=account)
            delivered = receiver.requests  # before any wait: it came before the answer

    assert len(delivered) == 1
    signature = delivered[0].headers["stripe-signature"]
    header = dict(part.split("=", 1) for part in signature.split(","))
    signed = f"{header['t']}.".encode() + delivered[0].body
    expected = hmac.new(stripe.webhook_secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(header["v1"], expected)
    assert sign(delivered[0].body, stripe.webhook_secret, int(header["t"])) == signature
    event = json.loads(delivered[0].body)
    assert event["type"] == "transfer.created"
    assert event["data"]["object"] == answer.json()
    assert event["request"]["idempotency_key"] == "k4"
    assert [d.status for d in stripe.webhooks_sent] == [200]


def test_events_after_the_answer_and_a_reversal(stripe):
    receiver = FakeHttpServer()
    receiver.route("POST", "/stripe", lambda request: Response(204))
    with receiver:
        stripe.webhook_url = f"{receiver.url}/stripe"
        account = stripe.add_account()
        transfer = create(stripe, amount="800", currency="usd", destination=account).json()
        reversed_ = stripe.reverse(transfer["id"])
        sent = stripe.wait_for_webhooks(2)

    assert [d.event["type"] for d in sent] == ["transfer.created", "transfer.reversed"]
    assert [d.status for d in sent] == [204, 204]
    assert (reversed_["amount_reversed"], reversed_["reversed"]) == (800, True)


def test_list_is_newest_first_and_pages_after_a_transfer(stripe):
    account = stripe.add_account()
    made = [
        create(
            stripe, amount=str(n), currency="usd", destination=account, transfer_group="g"
        ).json()["id"]
        for n in (1, 2, 3)
    ]
    auth = {"Authorization": f"Bearer {stripe.secret_key}"}

    first = httpx.get(f"{stripe.url}/v1/transfers?transfer_group=g&limit=2", headers=auth).json()
    rest = httpx.get(
        f"{stripe.url}/v1/transfers?limit=2&starting_after={first['data'][-1]['id']}",
        headers=auth,
    ).json()
    missing = httpx.get(f"{stripe.url}/v1/transfers/tr_x", headers=auth)

    assert [t["id"] for t in first["data"]] == made[:0:-1] and first["has_more"]
    assert [t["id"] for t in rest["data"]] == made[:1] and not rest["has_more"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"


def test_a_body_over_64_kib_is_refused_unread(stripe):
    answer = httpx.post(
        f"{stripe.url}/v1/transfers",
        content=b"a=" + b"x" * 70_000,
        headers={"Authorization": f"Bearer {stripe.secret_key}"},
    )

    assert answer.status_code == 413
    assert stripe.requests[-1].status == 413
