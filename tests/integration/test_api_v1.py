"""The REST API's first resources: campaigns, read with a scoped token, answered as the CLI
answers, refused as RFC 9457 problem details."""

import json
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import SLUG
from tests.helpers import apply_second_campaign
from tests.integration.test_review_api import CAPTION
from web.app import create_app


def token(rally, *args: str) -> dict[str, str]:
    run = rally("tokens", "create", "test", *args, "--json")
    assert run.code == 0, run.err
    return {"Authorization": f"Bearer {json.loads(run.out)['secret']}"}


def test_a_campaign_reads_as_the_cli_shows_it(rally, applied, settings) -> None:
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "campaign:read", "--campaign", SLUG)

    answer = client.get(f"/api/v1/campaigns/{SLUG}", headers=auth)
    assert answer.status_code == 200
    shown = json.loads(rally("campaign", "show", SLUG, "--json").out)
    assert answer.json() == {k: v for k, v in shown.items() if k != "roster"}

    listed = client.get("/api/v1/campaigns", headers=auth).json()
    assert [c["slug"] for c in listed["data"]] == [SLUG] and listed["next_cursor"] is None


def test_refusals_are_problem_details_naming_why(rally, applied, settings) -> None:
    client = TestClient(create_app(settings))
    leads_only = token(rally, "--scope", "leads:read", "--campaign", SLUG)

    missing = client.get(f"/api/v1/campaigns/{SLUG}")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["status"] == 401

    lacking = client.get(f"/api/v1/campaigns/{SLUG}", headers=leads_only)
    assert lacking.status_code == 403 and "campaign:read" in lacking.json()["detail"]
    assert client.get("/api/v1/campaigns", headers=leads_only).status_code == 403

    unknown = client.get("/api/v1/campaigns/no-such", headers=leads_only)
    assert unknown.status_code == 403  # without the scope, not even whether it exists
    reader = token(rally, "--scope", "campaign:read", "--campaign", SLUG)
    unknown = client.get("/api/v1/campaigns/no-such", headers=reader)
    assert unknown.status_code == 404 and unknown.json()["title"] == "Not Found"

    bad = client.get("/api/v1/campaigns?limit=0", headers=reader)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "limit"


def test_the_list_pages_by_cursor_and_a_campaign_token_sees_its_own(
    rally, applied, settings, tmp_path
) -> None:
    apply_second_campaign(rally, applied, tmp_path / "second")
    client = TestClient(create_app(settings))
    every = token(rally, "--scope", "campaign:read", "--all-campaigns")

    first = client.get("/api/v1/campaigns?limit=1", headers=every).json()
    assert [c["slug"] for c in first["data"]] == ["aa-second"] and first["next_cursor"]
    rest = client.get(f"/api/v1/campaigns?limit=1&cursor={first['next_cursor']}", headers=every)
    assert [c["slug"] for c in rest.json()["data"]] == [SLUG]
    assert rest.json()["next_cursor"] is None
    assert client.get("/api/v1/campaigns?cursor=%25%25", headers=every).status_code == 400

    own = token(rally, "--scope", "campaign:read", "--campaign", SLUG)
    assert [c["slug"] for c in client.get("/api/v1/campaigns", headers=own).json()["data"]] == [
        SLUG
    ]
    assert client.get("/api/v1/campaigns/aa-second", headers=own).status_code == 403


def test_a_made_up_cursor_is_never_a_server_error(rally, applied, settings) -> None:
    """Cursors carry row ids, times and handles: one made up (an id too large for the store,
    true for an id, a time without its zone, objects) is at worst an empty page, and a 400
    problem from each list that pages in its query."""
    import base64

    from tasks.api.tokens import SCOPES

    client = TestClient(create_app(settings))
    auth = token(rally, *[a for s in SCOPES for a in ("--scope", s)], "--campaign", SLUG)
    document = client.get("/api/v1/openapi.json").json()
    lists = [
        "/api/v1" + path.replace("{slug}", SLUG)
        for path, operations in document["paths"].items()
        if "{" not in path.replace("{slug}", "")
        and any(p["name"] == "cursor" for p in operations.get("get", {}).get("parameters", []))
    ]
    assert len(lists) >= 8, lists

    def status(path: str, key: object) -> int:
        cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")
        answer = client.get(path, params={"cursor": cursor}, headers=auth)
        assert answer.status_code < 500, (path, key, answer.text)
        return answer.status_code

    made_up: list[object] = [10**30, -(10**19), True, [{}, []], {"id": 1}]
    for path in lists:
        for key in made_up:
            status(path, key)
    for paged_in_sql in ("leads", "followups", "review-tasks", "payouts", "ledger"):
        path = f"/api/v1/campaigns/{SLUG}/{paged_in_sql}"
        assert [status(path, key) for key in (10**30, -(10**19), True)] == [400] * 3, path
    assert status(f"/api/v1/campaigns/{SLUG}/runs", ["2027-01-01T00:00:00", "1"]) == 400


def test_the_openapi_document_names_every_operations_security(settings, applied) -> None:
    client = TestClient(create_app(settings))
    document = client.get("/api/v1/openapi.json").json()
    assert document["info"]["title"] == "Rally API"
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("security"), f"{method} {path} declares no security"
            checked += 1
    assert checked > 20


def every_page(client: TestClient, path: str, auth: dict[str, str], limit: int) -> list[dict]:
    items, cursor = [], None
    while True:
        query = ("&" if "?" in path else "?") + f"limit={limit}"
        query += f"&cursor={cursor}" if cursor else ""
        answer = client.get(path + query, headers=auth)
        assert answer.status_code == 200, answer.text
        items += answer.json()["data"]
        assert len(answer.json()["data"]) <= limit
        if not (cursor := answer.json()["next_cursor"]):
            return items


def test_creators_leads_and_review_tasks_read_as_the_cli_lists_them(
    rally, running, settings
) -> None:
    for handle in ("maya.votes.pa", "jordanreyes_phl"):
        submitted = rally("creatives", "submit", SLUG, handle, "--caption", CAPTION)
        assert submitted.code == 0, submitted.err
    client = TestClient(create_app(settings))
    auth = token(
        rally, "--campaign", SLUG,
        "--scope", "creators:read", "--scope", "leads:read", "--scope", "reviews:read",
    )  # fmt: skip

    creators = every_page(client, f"/api/v1/campaigns/{SLUG}/creators", auth, limit=20)
    listed = json.loads(rally("creators", "list", SLUG, "--json").out)
    assert len(creators) == 50
    assert creators == sorted(listed, key=lambda r: (r["handle"], r["platform"]))

    made = token(rally, "--campaign", SLUG, "--scope", "creatives:read")
    path = f"/api/v1/campaigns/{SLUG}/creatives"
    listed_creatives = json.loads(rally("creatives", "list", SLUG, "--json").out)
    by_id = sorted(listed_creatives, key=lambda c: c["id"])
    assert every_page(client, path, made, limit=1) == by_id and len(by_id) == 2
    assert every_page(client, path + "?status=approved", made, limit=5) == []
    assert client.get(path + "?status=lost", headers=made).json()["errors"][0]["field"] == "status"

    tasks = every_page(client, f"/api/v1/campaigns/{SLUG}/review-tasks", auth, limit=1)
    queue = json.loads(rally("review", "queue", "--json").out)
    assert tasks == sorted(queue, key=lambda t: t["task"]) and len(tasks) == 2

    # leads against `rally leads list`: with signups, in the test of leads sent as signups

    creators_only = token(rally, "--campaign", SLUG, "--scope", "creators:read")
    for path in ("leads", "review-tasks"):
        refused = client.get(f"/api/v1/campaigns/{SLUG}/{path}", headers=creators_only)
        assert refused.status_code == 403, path


def comment(number: int, **fields) -> dict:
    return {
        "source": "tiktok",
        "external_id": f"api-{number}",
        "type": "comment",
        "actor": "fan",
        "creator": "maya.votes.pa",
        "text": "Love this!",
        "time": "2027-02-03T12:00:00Z",
    } | fields


def stored_events(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM engagement_events")).scalar_one()


def test_events_are_stored_once_and_a_retried_post_is_answered_the_same(
    rally, applied, settings, engine
) -> None:
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "events:write", "--campaign", SLUG)
    batch = {"events": [comment(1), comment(2), comment(3, type="shout")]}
    keyed = auth | {"Idempotency-Key": "batch-1"}

    first = client.post(f"/api/v1/campaigns/{SLUG}/events", json=batch, headers=keyed)
    assert first.status_code == 200, first.text
    assert (first.json()["stored"], first.json()["repeated"]) == (2, 0)
    (error,) = first.json()["errors"]
    assert (error["record"], error["field"]) == ("event 3", "type")
    assert stored_events(engine) == 2

    again = client.post(f"/api/v1/campaigns/{SLUG}/events", json=batch, headers=keyed)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = {"events": [comment(4)]}
    reused = client.post(f"/api/v1/campaigns/{SLUG}/events", json=other, headers=keyed)
    assert reused.status_code == 422 and "different request" in reused.json()["detail"]

    unkeyed = client.post(f"/api/v1/campaigns/{SLUG}/events", json=batch, headers=auth)
    assert (unkeyed.json()["stored"], unkeyed.json()["repeated"]) == (0, 2)  # each event once
    assert stored_events(engine) == 2


def test_an_event_id_another_campaign_used_is_named_not_counted_as_a_repeat(
    rally, applied, settings, engine, tmp_path
) -> None:
    """Two campaigns' form tools both number their signups: the second campaign's event 1 is
    not the first's, so it is refused naming the field rather than dropped as a repeat (and
    the first campaign's event is left as it was)."""
    apply_second_campaign(rally, applied, tmp_path / "second")
    client = TestClient(create_app(settings))
    ours = token(rally, "--scope", "events:write", "--campaign", SLUG)
    theirs = token(rally, "--scope", "events:write", "--campaign", "aa-second")
    first = client.post(
        f"/api/v1/campaigns/{SLUG}/events", json={"events": [comment(1)]}, headers=ours
    )
    assert first.json()["stored"] == 1
    same_id = {"events": [comment(1), comment(2)]}
    second = client.post("/api/v1/campaigns/aa-second/events", json=same_id, headers=theirs)
    assert (second.json()["stored"], second.json()["repeated"]) == (1, 0)
    (error,) = second.json()["errors"]
    assert (error["record"], error["field"]) == ("event 1", "external_id")
    assert "another campaign's event has this source and id" in error["detail"]
    with engine.connect() as conn:
        deliveries = conn.execute(
            text("SELECT deliveries FROM engagement_events WHERE external_id = 'api-1'")
        ).scalar_one()
    assert deliveries == 1
    again = client.post(
        f"/api/v1/campaigns/{SLUG}/events", json={"events": [comment(1)]}, headers=ours
    )
    assert (again.json()["repeated"], again.json()["errors"]) == (1, [])  # its own: a repeat


def test_event_posts_are_bounded_and_kept_to_their_campaign(rally, applied, settings) -> None:
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "events:write", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}/events"

    elsewhere = client.post(path, json={"events": [comment(5, campaign="other")]}, headers=auth)
    assert elsewhere.json()["errors"][0]["field"] == "campaign"

    huge = client.post(path, content=b'{"events": [' + b" " * 1_000_001 + b"]}", headers=auth)
    assert huge.status_code == 413 and huge.json()["status"] == 413
    many = client.post(path, json={"events": [comment(i) for i in range(501)]}, headers=auth)
    assert many.status_code == 400 and many.json()["errors"][0]["field"] == "events"
    empty = client.post(path, json={"events": []}, headers=auth)
    assert empty.status_code == 400

    reader = token(rally, "--scope", "events:read", "--campaign", SLUG)
    assert client.post(path, json={"events": [comment(6)]}, headers=reader).status_code == 403


def test_a_key_being_answered_is_refused_until_its_request_ends_or_dies(
    rally, applied, settings, engine
) -> None:
    from datetime import timedelta

    from store.types import utcnow
    from tasks.api.idempotency import Answer, KeyRefused, begin, finish

    token(rally, "--scope", "events:write", "--campaign", SLUG)
    token_id = _token_id(engine)
    now = utcnow()
    assert begin(engine, token_id, "k", "h", now=now) is None  # a request takes the key
    with pytest.raises(KeyRefused) as busy:
        begin(engine, token_id, "k", "h", now=now + timedelta(seconds=1))
    assert busy.value.status == 409
    later = now + timedelta(minutes=6)  # its request died without answering: a retry does it
    assert begin(engine, token_id, "k", "h", now=later) is None
    finish(engine, token_id, "k", Answer(200, {"stored": 1}))
    assert begin(engine, token_id, "k", "h", now=later) == Answer(200, {"stored": 1})


def _token_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT max(id) FROM api_tokens")).scalar_one()


def test_no_operation_is_reachable_without_the_scope_it_documents(
    rally, applied, keyed, monkeypatch
):
    from config.settings import PrefectChoice
    from tasks.api.tokens import SCOPES, allows
    from web import staff_runs

    monkeypatch.setattr(staff_runs, "prefect_choice", lambda: PrefectChoice())
    client = TestClient(create_app(keyed))
    document = client.get("/api/v1/openapi.json").json()
    bodies = {
        "/campaigns/{slug}/events": {"events": [comment(99)]},
        "/campaigns/{slug}/forget-requests": {"who": "ana@example.org"},
        "/campaigns/{slug}/review-tasks/{task}/decisions": {
            "decision": "reject",
            "approver": "dana.okafor@keystoneyouthvote.example.org",
            "note": "off message",
        },
        "/campaigns/{slug}/leads/{lead}/opt-outs": {"channel": "email"},
        "/campaigns/{slug}/runs": {"action": "report"},
        "/campaigns/{slug}/webhooks": {"url": "https://hooks.example.org/rally"},
        "/campaigns/{slug}/webhooks/{subscription_id}": {"description": "the sheet"},
        "/campaigns/{slug}/webhooks/{subscription_id}/replays": {},
        "/campaigns/{slug}/webhooks/{subscription_id}/tests": {},
    }
    # Let in: answered (about a task, lead, run or subscription the campaign does not have: not
    # found; a run with no Prefect to start it on: unavailable; a subscription by a token that
    # can read no event type: refused as such).
    expected = {
        "/campaigns/{slug}/forget-requests": 404,
        ("post", "/campaigns/{slug}/runs"): 503,
        ("post", "/campaigns/{slug}/webhooks"): 400,
    }
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            scope = operation["x-rally-scope"]
            url = "/api/v1" + path.replace("{slug}", SLUG).replace("{task}", "1")
            url = url.replace("{lead}", "1").replace("{run}", "none")
            url = url.replace("{subscription_id}", "999")
            body = bodies[path] if method in ("post", "patch") else None
            others = [s for s in SCOPES if not allows([s], scope)]
            without = token(rally, "--campaign", SLUG, *[a for s in others for a in ("--scope", s)])
            refused = client.request(method, url, json=body, headers=without)
            assert refused.status_code == 403, f"{method} {path} without {scope}"
            alone = client.request(
                method, url, json=body, headers=token(rally, "--campaign", SLUG, "--scope", scope)
            )
            wanted = expected.get((method, path)) or expected.get(path)
            wanted = wanted or (
                404
                if any(p in path for p in ("{task}", "{lead}", "{run}", "{subscription_id}"))
                else 200
            )
            assert alone.status_code == wanted, f"{method} {path} with {scope}: {alone.text}"
            unsigned = client.request(method, url, json={"not": "valid"})
            assert unsigned.status_code == 401, f"{method} {path}: the token is checked first"
            checked += 1
    assert checked == 30


def test_each_token_has_its_rate_and_is_told_what_is_left(
    rally, applied, settings, monkeypatch
) -> None:
    monkeypatch.setenv("RALLY_API_REQUESTS_PER_MINUTE", "3")
    from config.settings import get_settings

    get_settings.cache_clear()
    from store.types import utcnow

    half_past = utcnow().replace(second=30, microsecond=0)  # no window ends mid-test
    client = TestClient(create_app(get_settings(), clock=lambda: half_past))
    busy = token(rally, "--scope", "campaign:read", "--campaign", SLUG)
    other = token(rally, "--scope", "campaign:read", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}"

    answers = [client.get(path, headers=busy) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["ratelimit-policy"] == '"per-token";q=3;w=60'
    assert answers[2].headers["ratelimit"].startswith('"per-token";r=0;t=')
    assert answers[3].headers["retry-after"] == "30" and answers[3].json()["status"] == 429
    assert client.get(path, headers=other).status_code == 200  # another token's own rate


def same_times(leads: list[dict]) -> list[dict]:
    """Leads with `first_seen` read as a time (the API writes UTC as Z, the CLI as +00:00)."""
    return [lead | {"first_seen": datetime.fromisoformat(lead["first_seen"])} for lead in leads]


def signup_event(number: int, email: str) -> dict:
    return {
        "source": "web",
        "external_id": f"signup-{number}",
        "type": "signup",
        "creator": "maya.votes.pa",
        "time": "2027-02-03T12:00:00Z",
        "payload": {"contact": {"email": email, "name": f"Person {number}", "consent": {}}},
    }


def test_leads_sent_as_signups_page_and_one_is_forgotten_by_its_token(
    rally, applied, settings, engine, tmp_path
) -> None:
    from store.types import utcnow
    from tasks.engagement.processing import process_pending

    client = TestClient(create_app(settings))
    auth = token(rally, "--campaign", SLUG, "--scope", "events:write", "--scope", "leads:write")
    emails = ["ana@example.org", "sam@example.org", "kim@example.org"]
    signups = {"events": [signup_event(i, e) for i, e in enumerate(emails)]}
    sent = client.post(f"/api/v1/campaigns/{SLUG}/events", json=signups, headers=auth)
    assert sent.json()["stored"] == 3, sent.text
    process_pending(engine, now=utcnow(), public_url=settings.public_url)  # the rules' pass

    leads = every_page(client, f"/api/v1/campaigns/{SLUG}/leads", auth, limit=2)
    assert sorted(lead["email"] for lead in leads) == sorted(emails)
    assert same_times(leads) == same_times(json.loads(rally("leads", "list", SLUG, "--json").out))

    path = f"/api/v1/campaigns/{SLUG}/forget-requests"
    reader = token(rally, "--campaign", SLUG, "--scope", "leads:read")
    assert client.post(path, json={"who": "sam@example.org"}, headers=reader).status_code == 403
    nobody = client.post(path, json={"who": "nobody@example.org"}, headers=auth)
    assert nobody.status_code == 404 and nobody.json()["title"] == "Not Found"
    # another campaign's lead is answered as nobody is: whether they are there is not ours
    apply_second_campaign(rally, applied, tmp_path / "second")
    theirs = token(rally, "--campaign", "aa-second", "--scope", "events:write")
    other = {"events": [signup_event(9, "lee@example.org")]}
    assert (
        client.post("/api/v1/campaigns/aa-second/events", json=other, headers=theirs).json()[
            "stored"
        ]
        == 1
    )
    process_pending(engine, now=utcnow(), public_url=settings.public_url)
    not_ours = client.post(path, json={"who": "lee@example.org"}, headers=auth)
    assert not_ours.status_code == 404 and not_ours.json() == nobody.json()
    forgot = client.post(path, json={"who": "SAM@example.org"}, headers=auth)
    assert forgot.status_code == 200, forgot.text

    left = every_page(client, f"/api/v1/campaigns/{SLUG}/leads", auth, limit=2)
    assert "sam@example.org" not in [lead["email"] for lead in left]
    with engine.connect() as conn:
        actor = conn.execute(
            text("SELECT actor FROM audit_events WHERE action = 'lead.forgotten'")
        ).scalar_one()
    assert actor.startswith("token:") and actor.endswith(":test")


def test_a_client_polling_a_read_that_has_not_changed_gets_304(rally, applied, settings) -> None:
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "campaign:read", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}"
    first = client.get(path, headers=auth)
    tag = first.headers["etag"]
    assert tag.startswith('W/"')

    unchanged = client.get(path, headers=auth | {"If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == tag and "ratelimit" in unchanged.headers

    text = (applied / "campaign.yaml").read_text()
    (applied / "campaign.yaml").write_text(
        text.replace("name: First Vote PA 2027", "name: First Vote PA")
    )
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0
    changed = client.get(path, headers=auth | {"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["campaign"]["name"] == "First Vote PA"


def test_the_sprint_reads_as_the_cli_shows_it(rally, running, settings) -> None:
    assert rally("sprint", "start", SLUG).code == 0
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "campaign:read", "--campaign", SLUG)
    answer = client.get(f"/api/v1/campaigns/{SLUG}/sprint", headers=auth)
    assert answer.status_code == 200, answer.text
    shown = json.loads(rally("sprint", "status", SLUG, "--json").out)
    assert answer.json() == shown and answer.json()["started"] is True


def test_a_body_that_is_not_json_is_named_as_the_body(rally, applied, settings) -> None:
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "events:write", "--campaign", SLUG)
    answer = client.post(
        f"/api/v1/campaigns/{SLUG}/events",
        content=b"not json",
        headers=auth | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "body"
