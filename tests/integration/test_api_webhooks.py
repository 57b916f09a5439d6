"""Webhook subscriptions through the API: made by a token for the event types its scopes can
read, the secret in the first answer only, changed under If-Match, replayed and tested; and
the deliveries they get verified by a receiver with the standardwebhooks library."""

import json

from fastapi.testclient import TestClient
from sqlalchemy import text

from store.types import utcnow
from tasks.webhooks.deliver import deliver_webhooks
from tests.conftest import SLUG
from tests.fakes.webhook_receiver import FakeWebhookReceiver
from tests.helpers import apply_second_campaign
from web.app import create_app

BASE = f"/api/v1/campaigns/{SLUG}/webhooks"


def token(rally, *scopes: str, campaign: str = SLUG) -> dict[str, str]:
    args = [a for scope in scopes for a in ("--scope", scope)]
    run = rally("tokens", "create", "hooks", *args, "--campaign", campaign, "--json")
    assert run.code == 0, run.err
    return {"Authorization": f"Bearer {json.loads(run.out)['secret']}"}


def test_a_token_subscribes_gets_the_secret_once_and_deliveries_verify(
    rally, applied, keyed, engine
) -> None:
    client = TestClient(create_app(keyed))
    auth = token(rally, "webhooks:write", "creatives:read")
    with FakeWebhookReceiver() as receiver:
        body = {"url": receiver.endpoint, "event_types": [], "description": "n8n"}
        made = client.post(BASE, json=body, headers=auth | {"Idempotency-Key": "sub-1"})
        assert made.status_code == 201, made.text
        shown = made.json()
        assert shown["secret"].startswith("whsec_")
        # no types named: every type the token's scopes can read, and no other
        assert shown["event_types"] == [
            "creative.submitted",
            "creative.approved",
            "creative.rejected",
            "creative.posted",
        ]
        again = client.post(BASE, json=body, headers=auth | {"Idempotency-Key": "sub-1"})
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == shown["id"] and again.json()["secret"] is None
        listed = client.get(BASE, headers=auth).json()["data"]
        assert [s["id"] for s in listed] == [shown["id"]] and "secret" not in listed[0]

        receiver.secret = shown["secret"]
        queued = client.post(f"{BASE}/{shown['id']}/tests", headers=auth)
        assert queued.status_code == 202
        report = deliver_webhooks(engine, keyed, now=utcnow)
        assert report.sent == 1 and receiver.types() == ["webhook.test"]
        assert receiver.requests[-1].headers["webhook-id"] == queued.json()["webhook_id"]


def test_a_token_cannot_subscribe_to_what_its_scopes_cannot_read(rally, applied, keyed) -> None:
    client = TestClient(create_app(keyed))
    auth = token(rally, "webhooks:write", "creatives:read")
    refused = client.post(
        BASE,
        json={"url": "https://hooks.example.org/x", "event_types": ["lead.created"]},
        headers=auth,
    )
    assert refused.status_code == 400 and "needs scope leads:read" in refused.json()["detail"]
    plain_http = client.post(BASE, json={"url": "http://hooks.example.org/x"}, headers=auth)
    assert plain_http.status_code == 400 and plain_http.json()["errors"][0]["field"] == "url"
    reader = token(rally, "webhooks:read")
    assert (
        client.post(BASE, json={"url": "https://a.example.org"}, headers=reader).status_code == 403
    )


def test_a_change_under_a_stale_if_match_is_refused_and_changes_nothing(
    rally, applied, keyed, engine
) -> None:
    client = TestClient(create_app(keyed))
    auth = token(rally, "webhooks:write", "creatives:read", "leads:read")
    made = client.post(BASE, json={"url": "https://hooks.example.org/a"}, headers=auth).json()
    item = f"{BASE}/{made['id']}"
    read = client.get(item, headers=auth)
    tag = read.headers["etag"]

    first = client.patch(item, json={"description": "the sheet"}, headers=auth | {"If-Match": tag})
    assert first.status_code == 200 and first.json()["description"] == "the sheet"
    stale = client.patch(item, json={"enabled": False}, headers=auth | {"If-Match": tag})
    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    assert client.get(item, headers=auth).json()["enabled"] is True

    fresh = client.patch(
        item, json={"enabled": False}, headers=auth | {"If-Match": first.headers["etag"]}
    )
    assert fresh.status_code == 200 and fresh.json()["enabled"] is False
    assert client.get(item, headers=auth).headers["etag"] == fresh.headers["etag"]
    with engine.connect() as conn:
        actions = [
            row[0] for row in conn.execute(text("SELECT actor || ' ' || action FROM audit_events"))
        ]
    assert sum(a.endswith(" webhook.changed") and a.startswith("token:") for a in actions) == 2


def test_another_campaigns_token_cannot_see_or_touch_a_subscription(
    rally, applied, keyed, tmp_path
) -> None:
    apply_second_campaign(rally, applied, tmp_path / "second")
    client = TestClient(create_app(keyed))
    own = token(rally, "webhooks:write", "creatives:read")
    made = client.post(BASE, json={"url": "https://hooks.example.org/a"}, headers=own).json()

    other = token(rally, "webhooks:write", "creatives:read", campaign="aa-second")
    assert client.get(f"{BASE}/{made['id']}", headers=other).status_code == 403
    elsewhere = f"/api/v1/campaigns/aa-second/webhooks/{made['id']}"
    assert client.get(elsewhere, headers=other).status_code == 404
    assert client.delete(elsewhere, headers=other).status_code == 404
    assert client.delete(f"{BASE}/{made['id']}", headers=own).status_code == 204
    assert client.get(BASE, headers=own).json()["data"] == []


def test_without_a_secret_key_the_api_says_webhooks_are_not_set_up(
    rally, applied, settings
) -> None:
    client = TestClient(create_app(settings))
    auth = token(rally, "webhooks:write", "creatives:read")
    answer = client.post(BASE, json={"url": "https://hooks.example.org/a"}, headers=auth)
    assert answer.status_code == 503 and "RALLY_SECRET_KEY" in answer.json()["detail"]


def test_a_token_may_not_redirect_or_replay_events_its_scopes_cannot_read(
    rally, applied, keyed
) -> None:
    """A subscription to people's data, made by a token that reads leads: a token for webhooks
    alone may not send those events elsewhere, turn them back on, or post them again."""
    client = TestClient(create_app(keyed))
    reader = token(rally, "webhooks:write", "leads:read")
    body = {"url": "https://hooks.example.org/sheet", "event_types": ["lead.created"]}
    made = client.post(BASE, json=body, headers=reader).json()
    item = f"{BASE}/{made['id']}"
    webhooks_only = token(rally, "webhooks:write")
    for change in ({"url": "https://elsewhere.example.net/x"}, {"enabled": True}):
        tag = client.get(item, headers=webhooks_only).headers["etag"]
        refused = client.patch(item, json=change, headers=webhooks_only | {"If-Match": tag})
        assert refused.status_code == 403, refused.text
        assert "needs scope leads:read" in refused.json()["detail"]
    replay = client.post(f"{item}/replays", json={}, headers=webhooks_only)
    assert replay.status_code == 403
    assert client.get(item, headers=reader).json()["url"] == body["url"]
    moved = client.patch(item, json={"url": "https://hooks.example.org/two"}, headers=reader)
    assert moved.status_code == 200 and moved.json()["url"].endswith("/two")
