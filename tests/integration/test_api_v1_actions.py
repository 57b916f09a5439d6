"""The REST API's changes beside its reads: an approver's decision (conditional on the task's
ETag), a lead's consent and opt-out, follow-ups, the report, and runs started on Prefect; each
through the service the CLI, the review pages or the staff console use, done once per
Idempotency-Key, refused without its scope or for another campaign."""

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from store.db import transaction
from store.types import utcnow
from tests.conftest import SLUG
from tests.helpers import apply_second_campaign
from tests.integration.test_api_v1 import signup_event, token
from tests.integration.test_review_api import CAPTION, INTERNAL, LEGAL
from web.app import create_app


def audit(engine, action: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT actor FROM audit_events WHERE action = :a ORDER BY seq"),
                {"a": action},
            ).scalars()
        )


def open_task(rally) -> int:
    submitted = rally(
        "creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION, "--duration", "20"
    )
    assert submitted.code == 0, submitted.err
    (task,) = json.loads(rally("review", "queue", "--json").out)
    return task["task"]


def test_a_decision_is_recorded_for_its_approver_if_the_task_is_as_read_and_once(
    rally, running, settings, engine
) -> None:
    task = open_task(rally)
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "reviews:write", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}/review-tasks/{task}"

    read = client.get(path, headers=auth)
    assert read.status_code == 200, read.text
    assert read.json()["task"]["id"] == task and read.json()["campaign"] == SLUG
    etag = read.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert client.get(path, headers=auth | {"If-None-Match": etag}).status_code == 304
    assert client.get(path + "/decisions", headers=auth).json() == {"data": [], "next_cursor": None}

    approve = {
        "decision": "approve",
        "approver": INTERNAL,
        "version": 1,
        "checklist": {"message_alignment": True},
        "note": "ok",
    }
    stale = client.post(
        path + "/decisions", json=approve, headers=auth | {"If-Match": '"not-the-tag"'}
    )
    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["title"] == "Precondition Failed"
    weak = client.post(path + "/decisions", json=approve, headers=auth | {"If-Match": "W/" + etag})
    assert weak.status_code == 412  # If-Match compares strongly
    assert audit(engine, "review.approved") == []
    assert client.get(path, headers=auth).headers["etag"] == etag  # nothing changed

    wrong = client.post(path + "/decisions", json=approve | {"approver": LEGAL}, headers=auth)
    assert wrong.status_code == 409 and "not in the internal group" in wrong.json()["detail"]
    noteless = {"decision": "request_changes", "approver": INTERNAL}
    bad = client.post(path + "/decisions", json=noteless, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "note"
    unknown = client.post(path + "/decisions", json=approve | {"decision": "maybe"}, headers=auth)
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "decision"

    keyed = auth | {"If-Match": etag, "Idempotency-Key": "decide-1"}
    first = client.post(path + "/decisions", json=approve, headers=keyed)
    assert first.status_code == 200, first.text
    assert (first.json()["applied"], first.json()["next_tier"]) == (True, "legal")
    assert first.json()["etag"] != etag
    again = client.post(path + "/decisions", json=approve, headers=keyed)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    (actor,) = audit(engine, "review.approved")
    assert actor.startswith("token:") and actor.endswith(":test")

    (decision,) = client.get(path + "/decisions", headers=auth).json()["data"]
    assert (decision["tier"], decision["decision"], decision["decided_by"]) == (
        "internal",
        "approved",
        INTERNAL,
    )
    now = client.get(path, headers=auth)
    assert now.headers["etag"] == first.json()["etag"]
    late = client.post(path + "/decisions", json=approve, headers=auth | {"If-Match": etag})
    assert late.status_code == 412  # read before the decision: it changed since

    reader = token(rally, "--scope", "reviews:read", "--campaign", SLUG)
    assert client.post(path + "/decisions", json=approve, headers=reader).status_code == 403
    missing = client.get(f"/api/v1/campaigns/{SLUG}/review-tasks/999999", headers=auth)
    assert missing.status_code == 404 and missing.json()["status"] == 404


def test_a_campaigns_token_reaches_nothing_of_another_campaign(
    rally, running, settings, tmp_path
) -> None:
    task = open_task(rally)
    other = apply_second_campaign(rally, running, tmp_path / "second")
    client = TestClient(create_app(settings))
    scopes = ["reviews:write", "leads:write", "followups:read", "reports:read", "runs:write"]
    theirs = token(rally, "--campaign", other, *[a for s in scopes for a in ("--scope", s)])
    ours = token(rally, "--campaign", SLUG, *[a for s in scopes for a in ("--scope", s)])
    base = f"/api/v1/campaigns/{SLUG}"
    reject = {"decision": "reject", "approver": INTERNAL, "note": "no"}
    for method, path, body in (
        ("GET", f"{base}/review-tasks/{task}", None),
        ("GET", f"{base}/review-tasks/{task}/decisions", None),
        ("POST", f"{base}/review-tasks/{task}/decisions", reject),
        ("GET", f"{base}/leads/1/consent", None),
        ("POST", f"{base}/leads/1/opt-outs", {"channel": "email"}),
        ("GET", f"{base}/followups", None),
        ("GET", f"{base}/report", None),
        ("GET", f"{base}/runs", None),
        ("POST", f"{base}/runs", {"action": "report"}),
    ):  # fmt: skip
        refused = client.request(method, path, json=body, headers=theirs)
        assert refused.status_code == 403, f"{method} {path}: {refused.text}"
        assert "another campaign" in refused.json()["detail"]
    # Nor another campaign's task through its own campaign's path.
    elsewhere = f"/api/v1/campaigns/{other}/review-tasks/{task}"
    assert client.get(elsewhere, headers=theirs).status_code == 404
    assert client.get(f"{base}/review-tasks/{task}", headers=ours).status_code == 200


def test_a_lead_is_opted_out_once_and_their_consent_reads_so(
    rally, applied, settings, engine
) -> None:
    from tasks.engagement.processing import process_pending

    client = TestClient(create_app(settings))
    auth = token(rally, "--campaign", SLUG, "--scope", "events:write", "--scope", "leads:write")
    signup = signup_event(1, "ana@example.org")
    signup["payload"]["contact"]["consent"] = {"email": True}
    sent = client.post(f"/api/v1/campaigns/{SLUG}/events", json={"events": [signup]}, headers=auth)
    assert sent.json()["stored"] == 1, sent.text
    process_pending(engine, now=utcnow(), public_url=settings.public_url)
    (lead,) = client.get(f"/api/v1/campaigns/{SLUG}/leads", headers=auth).json()["data"]
    base = f"/api/v1/campaigns/{SLUG}/leads/{lead['id']}"

    before = client.get(f"{base}/consent", headers=auth)
    assert before.status_code == 200, before.text
    shown = json.loads(rally("leads", "show", "ana@example.org", "--json").out)
    assert before.json() == shown and before.json()["consent"]["email"] != "revoked"

    bad = client.post(f"{base}/opt-outs", json={"channel": "fax"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "channel"
    keyed = auth | {"Idempotency-Key": "stop-ana"}
    body = {"channel": "email", "wording": "unsubscribed in the CRM"}
    first = client.post(f"{base}/opt-outs", json=body, headers=keyed)
    assert first.status_code == 200, first.text
    assert (first.json()["consent"], first.json()["changed"]) == ("revoked", True)
    again = client.post(f"{base}/opt-outs", json=body, headers=keyed)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    unkeyed = client.post(f"{base}/opt-outs", json=body, headers=auth)
    assert unkeyed.json()["changed"] is False  # opted out already: nothing more recorded
    (actor,) = audit(engine, "consent.revoked")
    assert actor.startswith("token:")

    after = client.get(f"{base}/consent", headers=auth).json()
    assert after["consent"]["email"] == "revoked"
    last = after["consent_record"][-1]
    assert (last["status"], last["wording"], last["origin"]) == (
        "revoked",
        "unsubscribed in the CRM",
        actor,
    )
    nobody = client.get(f"/api/v1/campaigns/{SLUG}/leads/999999/consent", headers=auth)
    assert nobody.status_code == 404
    reader = token(rally, "--campaign", SLUG, "--scope", "leads:read")
    assert client.post(f"{base}/opt-outs", json=body, headers=reader).status_code == 403


def test_follow_ups_page_newest_first_and_filter(rally, applied, settings, engine) -> None:
    from benchmarks.pages import seed_engagement
    from store.models import Campaign
    from tasks.staff.console import followup_log

    with engine.connect() as conn:
        campaign_id = conn.execute(
            text("SELECT id FROM campaigns WHERE slug = :s"), {"s": SLUG}
        ).scalar_one()
    with transaction(engine) as session:
        seed_engagement(session, campaign_id, now=utcnow(), people=30)
    client = TestClient(create_app(settings))
    auth = token(rally, "--campaign", SLUG, "--scope", "followups:read")
    path = f"/api/v1/campaigns/{SLUG}/followups"

    every: list[dict] = []
    cursor = None
    while True:
        page = client.get(path, params={"limit": 7, **({"cursor": cursor} if cursor else {})},
                          headers=auth).json()  # fmt: skip
        every += page["data"]
        if not (cursor := page["next_cursor"]):
            break
    assert every and [f["id"] for f in every] == sorted((f["id"] for f in every), reverse=True)
    with transaction(engine, write=False) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        logged = followup_log(session, campaign, limit=len(every) + 1).rows
    assert [f["id"] for f in every] == [f["id"] for f in logged]

    channel = every[0]["channel"]
    kept = client.get(path, params={"channel": channel, "limit": 200}, headers=auth).json()
    assert kept["data"] and all(f["channel"] == channel for f in kept["data"])
    status = every[0]["status"]
    kept = client.get(path, params={"status": status, "limit": 200}, headers=auth).json()
    assert kept["data"] and all(f["status"] == status for f in kept["data"])
    bad = client.get(path, params={"status": "lost"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"
    leads_only = token(rally, "--campaign", SLUG, "--scope", "leads:read")
    assert client.get(path, headers=leads_only).status_code == 403


def test_the_report_reads_as_the_report_command_builds_it(rally, running, settings, engine) -> None:
    from tasks.reporting.report import build_report

    assert rally("sprint", "start", SLUG).code == 0
    client = TestClient(create_app(settings))
    auth = token(rally, "--campaign", SLUG, "--scope", "reports:read")
    answer = client.get(f"/api/v1/campaigns/{SLUG}/report", headers=auth)
    assert answer.status_code == 200, answer.text
    with transaction(engine, write=False) as session:
        built = json.loads(json.dumps(build_report(session, SLUG)))
    assert answer.json() == built and answer.json()["milestones"]
    week = client.get(f"/api/v1/campaigns/{SLUG}/report?week=1", headers=auth)
    assert week.status_code == 200 and week.json()["week"] == 1
    bad = client.get(f"/api/v1/campaigns/{SLUG}/report?week=0", headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "week"


def stored_runs(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM staff_runs")).scalar_one()


def test_a_run_starts_on_prefect_once_or_says_what_is_missing(
    rally, applied, settings, engine, monkeypatch
) -> None:
    import httpx

    from config.settings import PrefectChoice
    from web import staff_runs

    client = TestClient(create_app(settings))
    auth = token(rally, "--campaign", SLUG, "--scope", "runs:write")
    path = f"/api/v1/campaigns/{SLUG}/runs"

    monkeypatch.setattr(staff_runs, "prefect_choice", lambda: PrefectChoice())
    none = client.post(path, json={"action": "report"}, headers=auth)
    assert none.status_code == 503 and "PREFECT_API_URL" in none.json()["detail"]
    assert none.json()["title"] == "Service Unavailable" and stored_runs(engine) == 0

    api_url = "http://prefect.invalid/api"
    monkeypatch.setattr(staff_runs, "prefect_choice", lambda: PrefectChoice("test", api_url))

    def unreachable(action, url):
        raise httpx.ConnectError("name or service not known")

    monkeypatch.setattr(staff_runs, "_deployment_run", unreachable)
    down = client.post(path, json={"action": "report"}, headers=auth)
    assert down.status_code == 503 and api_url in down.json()["detail"]
    monkeypatch.setattr(staff_runs, "_deployment_run", lambda action, url: None)
    unregistered = client.post(path, json={"action": "report"}, headers=auth)
    assert unregistered.status_code == 503 and "report/report" in unregistered.json()["detail"]
    assert stored_runs(engine) == 0

    asked: list[dict] = []

    def deployed(action, url):
        asked.append(action.parameters)
        return "0b1e", "http://prefect.invalid/runs/flow-run/0b1e"

    monkeypatch.setattr(staff_runs, "_deployment_run", deployed)
    keyed = auth | {"Idempotency-Key": "report-week-1"}
    first = client.post(path, json={"action": "report"}, headers=keyed)
    assert first.status_code == 202, first.text
    assert (first.json()["state"], first.json()["link"]) == (
        "started",
        "http://prefect.invalid/runs/flow-run/0b1e",
    )
    again = client.post(path, json={"action": "report"}, headers=keyed)
    assert again.status_code == 202 and again.json() == first.json()
    assert asked == [{"slug": SLUG}] and stored_runs(engine) == 1
    (actor,) = audit(engine, "staff.started")
    assert actor.startswith("token:")

    listed = client.get(path, headers=auth).json()
    assert [r["id"] for r in listed["data"]] == [first.json()["id"]]
    one = client.get(f"{path}/{first.json()['id']}", headers=auth)
    assert one.status_code == 200 and one.json() == first.json()
    assert client.get(f"{path}/nothing", headers=auth).status_code == 404
    bad = client.post(path, json={"action": "deploy"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "action"
    reader = token(rally, "--campaign", SLUG, "--scope", "runs:read")
    assert client.post(path, json={"action": "report"}, headers=reader).status_code == 403


def test_runs_page_newest_first(rally, applied, settings, engine) -> None:
    from datetime import timedelta

    from store.models import StaffRun

    now = utcnow()
    with engine.connect() as conn:
        campaign_id = conn.execute(
            text("SELECT id FROM campaigns WHERE slug = :s"), {"s": SLUG}
        ).scalar_one()
    with transaction(engine) as session:
        for i in range(5):
            session.add(
                StaffRun(
                    id=f"run{i}",
                    campaign_id=campaign_id,
                    action="report/report",
                    title="Make the report",
                    started_by="staff@example.org",
                    started_at=now - timedelta(minutes=i // 2),  # two runs a minute
                    command=["rally", "report", SLUG],
                    host="elsewhere",
                    exit_code=0,
                )
            )
    client = TestClient(create_app(settings))
    auth = token(rally, "--campaign", SLUG, "--scope", "runs:read")
    ids, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/v1/campaigns/{SLUG}/runs", params=params, headers=auth).json()
        ids += [r["id"] for r in page["data"]]
        if not (cursor := page["next_cursor"]):
            break
    assert ids == ["run0", "run1", "run2", "run3", "run4"]


@pytest.mark.slow
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_run_of_a_deployment_not_registered_on_a_real_prefect_says_so(
    rally, applied, settings, engine, local_prefect, monkeypatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", local_prefect)
    client = TestClient(create_app(settings))
    auth = token(rally, "--campaign", SLUG, "--scope", "runs:write")
    answer = client.post(f"/api/v1/campaigns/{SLUG}/runs", json={"action": "sync"}, headers=auth)
    assert answer.status_code == 503, answer.text
    assert "sync-leads/sync-leads is not registered" in answer.json()["detail"]
    assert stored_runs(engine) == 0
