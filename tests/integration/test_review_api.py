"""The HTTP API: a creator's draft with their brief link's token, an approver's decision with
an API token; each refusal a clear JSON error."""

import json

from fastapi.testclient import TestClient
from sqlmodel import select

from store.db import transaction
from store.models import AuditEvent, OutboxMessage
from store.types import utcnow
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.helpers import generate
from web.app import create_app

INTERNAL = "dana.okafor@keystoneyouthvote.example.org"
LEGAL = "counsel@keystoneyouthvote.example.org"
CAPTION = (
    "#ad Paid for by Keystone Youth Vote Fund. Register now, code MAYAVOTESPA."
    " Not authorized by any candidate or candidate's committee."
)


def token_for(rally, email: str) -> str:
    run = rally("review", "token", email)
    assert run.code == 0, run.err
    return run.out.strip().splitlines()[-1]


def test_submit_and_decide_over_http(settings, engine, rally, running):
    generate(settings, engine, SLUG, handles=["maya.votes.pa"])
    rows = json.loads(rally("briefs", "status", SLUG, "--json").out)
    brief_token = next(r["link"] for r in rows if r["handle"] == "maya.votes.pa").rsplit("/", 1)[1]
    client = TestClient(create_app(settings))

    draft = {"caption": CAPTION, "duration_seconds": 20}
    made = client.post(f"/api/briefs/{brief_token}/drafts", json=draft)
    assert made.status_code == 201 and made.json()["tiers"] == ["internal", "legal"]
    assert client.post("/api/briefs/not-a-token/drafts", json=draft).status_code == 404
    drafts = f"/api/briefs/{brief_token}/drafts"
    for bad, said in (
        ({"caption": ""}, "caption: String should have at least 1 character"),
        ({"caption": "x", "duration_seconds": 5000}, "duration_seconds: Input should be less"),
        ({"script": "x"}, "caption: Field required"),
    ):
        refused = client.post(drafts, json=bad)
        assert refused.status_code == 400 and refused.json()["error"].startswith(said), bad
    script_link = client.post(drafts, json={"caption": CAPTION, "video_url": "javascript:x()"})
    assert script_link.status_code == 409 and script_link.json()["error"].startswith("video_url:")
    not_json = client.post(drafts, content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.json() == {"error": "the body is not JSON"}
    # a stranger's body is bounded before anything reads it, token or not
    huge = b'{"caption": "' + b"x" * 1_100_000 + b'"}'
    for path in ("/api/briefs/not-a-token/drafts", "/api/review/tasks/1/decisions"):
        too_large = client.post(path, content=huge, headers={"Content-Type": "application/json"})
        assert (
            too_large.status_code == 413 and "is over 1,000,000 bytes" in too_large.json()["error"]
        )

    queue = json.loads(rally("review", "queue", "--json").out)
    task = queue[0]["task"]
    decision = {
        "decision": "approve",
        "version": 1,
        "checklist": {"message_alignment": True},
        "note": "ok",
    }
    anonymous = client.post(f"/api/review/tasks/{task}/decisions", json=decision)
    assert anonymous.status_code == 401 and "API token" in anonymous.json()["error"]

    wrong = {"Authorization": f"Bearer {token_for(rally, LEGAL)}"}
    refused = client.post(f"/api/review/tasks/{task}/decisions", json=decision, headers=wrong)
    assert refused.status_code == 409 and "not in the internal group" in refused.json()["error"]

    right = {"Authorization": f"Bearer {token_for(rally, INTERNAL)}"}
    first = client.post(f"/api/review/tasks/{task}/decisions", json=decision, headers=right)
    assert first.status_code == 200
    assert (first.json()["applied"], first.json()["next_tier"]) == (True, "legal")
    again = client.post(f"/api/review/tasks/{task}/decisions", json=decision, headers=right)
    assert again.json()["applied"] is False
    with transaction(engine, write=False) as session:
        issued = session.exec(
            select(AuditEvent).where(AuditEvent.action == "approver.token_issued")
        ).all()
    assert sorted(e.entity_id for e in issued) == sorted([LEGAL, INTERNAL])
    secrets = [wrong["Authorization"][7:], right["Authorization"][7:]]
    assert not any(s in json.dumps(e.changes) + e.summary for e in issued for s in secrets)


def test_review_pages_sign_in_once_by_button_and_show_tasks_to_their_campaign_only(
    settings, engine, rally, running
):
    submitted = rally(
        "creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION, "--duration", "20"
    )
    assert submitted.code == 0
    with transaction(engine, write=False) as session:
        texts = [m.payload["text"] for m in session.exec(select(OutboxMessage))]
    link = next(t for t in texts if "/review/signin/" in t).split("signs you in once): ")[1]
    path = link.split()[0].removeprefix(settings.public_url)
    client = TestClient(create_app(settings))

    assert client.get(path).status_code == 200  # a mail scanner's fetch spends nothing
    assert client.get(path).status_code == 200
    token = path.split("/")[3].split("?")[0]
    forged = client.post(
        f"/review/signin/{token}",
        data={"next": "/review"},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    signed = client.post(f"/review/signin/{token}", data={"next": "/review/tasks/1"})
    assert signed.status_code == 200 and "Internal review of creative 1" in signed.text
    assert client.post(f"/review/signin/{token}", data={}).status_code == 401  # used up

    stranger = TestClient(create_app(settings))
    assert stranger.get("/review/tasks/1").status_code == 401
    cross = client.post(
        "/review/tasks/1/decide",
        data={"decision": "approve", "version": "1"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403

    deliver_email(engine, settings, now=utcnow)  # once mailed, the store keeps no usable link
    with transaction(engine, write=False) as session:
        kept = [m.payload["text"] for m in session.exec(select(OutboxMessage))]
    assert not any("/review/signin/" in text for text in kept)
    assert any("[sign-in link sent]" in text for text in kept)
