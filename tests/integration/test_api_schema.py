"""The REST API against its own OpenAPI document, by Schemathesis: generated requests, one
operation at a time and as sequences that follow the document's links, find no server error
and no answer the document does not describe."""

import collections
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.generation.feedback import NO_FEEDBACK
from sqlmodel import select

from config.settings import PrefectChoice
from store.db import transaction
from store.models import Campaign, StaffRun
from tests.conftest import SLUG
from tests.integration.test_api_v1 import signup_event
from tests.integration.test_review_api import CAPTION
from web import staff_runs
from web.app import create_app

# Hundreds of drawn requests, many seconds of CPU each: `make test-slow` runs them.
pytestmark = pytest.mark.slow

ALL_SCOPES = [
    "--scope", "campaign:read", "--scope", "creators:read", "--scope", "reviews:write",
    "--scope", "leads:read", "--scope", "events:write", "--scope", "briefs:read",
    "--scope", "creatives:read", "--scope", "leads:write", "--scope", "followups:read",
    "--scope", "reports:read", "--scope", "runs:write", "--scope", "webhooks:write",
    "--scope", "payments:read",
]  # fmt: skip
PREFECT = "http://prefect.invalid/api"
REAL: dict[str, object] = {"slug": SLUG}  # the path parameters of what the store holds


@pytest.fixture
def api(rally, running, keyed, engine, monkeypatch):
    settings = keyed  # webhook subscriptions seal their secrets
    made = rally("tokens", "create", "schemathesis", *ALL_SCOPES, "--campaign", SLUG, "--json")
    assert made.code == 0, made.err
    REAL.update(stocked(rally, settings, engine))
    # Runs start on a Prefect server only: one that has every deployment, as far as the API
    # can tell (without one, a 503 would stop Schemathesis at a server error each time).
    monkeypatch.setattr(staff_runs, "prefect_choice", lambda: PrefectChoice("test", PREFECT))
    monkeypatch.setattr(staff_runs, "_deployment_run", lambda action, url: ("0b1e", PREFECT))
    # The document is under test, not the token's rate: hundreds of requests a minute here,
    # and a 429 midway would make the answers differ when a failure is replayed.
    app = create_app(settings.model_copy(update={"api_requests_per_minute": 10**9}))
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    # The token is the test's to give (every call carries it): no values made up for it, which
    # the test's own header would replace, turning a deliberately bad request into a good one.
    schema.config.generation.update(with_security_parameters=False)
    return schema, {"Authorization": f"Bearer {json.loads(made.out)['secret']}"}


def stocked(rally, settings, engine) -> dict[str, object]:
    """A review task, a lead, a run and a webhook subscription in the store, for the
    operations about one."""
    from store.types import utcnow
    from tasks.engagement.events import ingest
    from tasks.engagement.processing import process_pending

    submitted = rally(
        "creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION, "--duration", "20"
    )
    assert submitted.code == 0, submitted.err
    (task,) = json.loads(rally("review", "queue", "--json").out)
    signup = signup_event(1, "ana@example.org") | {"campaign": SLUG}
    assert ingest(engine, [("signup", signup)], now=utcnow()).stored == 1
    process_pending(engine, now=utcnow(), public_url=settings.public_url)
    (lead,) = json.loads(rally("leads", "list", SLUG, "--json").out)
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        session.add(
            StaffRun(
                id="0123abcd",
                campaign_id=campaign.id or 0,
                action="report/report",
                title="Make the report",
                started_by="staff@example.org",
                started_at=utcnow(),
                command=["rally", "report", SLUG],
                host="elsewhere",
                exit_code=0,
            )
        )
    hooked = rally("webhooks", "add", SLUG, "https://hooks.example.org/rally", "--json")
    assert hooked.code == 0, hooked.err
    subscription = json.loads(hooked.out)["id"]
    ids = {"task": task["task"], "lead": lead["id"], "run": "0123abcd"}
    return ids | {"subscription_id": subscription}


def restore_subscriptions(engine) -> None:
    """The stocked webhook subscription as it was, and no other, and no answer kept for an
    Idempotency-Key: a request may remove it, change it or make more (up to the campaign's
    most), and a key's kept answer would name a subscription no longer there."""
    from sqlalchemy import text

    from tasks.webhooks.subscriptions import check_event_types

    kept = {"kept": REAL["subscription_id"], "types": json.dumps(check_event_types([]))}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox WHERE channel = 'webhook'"))
        conn.execute(text("DELETE FROM api_idempotency_keys"))
        conn.execute(text("DELETE FROM webhook_subscriptions WHERE id != :kept"), kept)
        conn.execute(
            text(
                "UPDATE webhook_subscriptions SET disabled_at = NULL, disabled_reason = NULL, "
                "url = 'https://hooks.example.org/rally', description = '', "
                "event_types = :types WHERE id = :kept"
            ),
            kept,
        )


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_every_operation_answers_as_documented(api, engine) -> None:
    schema, auth = api
    failures: list[str] = []
    answered: collections.Counter[str] = collections.Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        # Half the requests name the real campaign, so that each operation is reached past
        # its 404 and answers with data too. No values taken from the app's code (Schemathesis
        # draws those with `random`, which Hypothesis cannot replay).
        @hypothesis_settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy(feedback=NO_FEEDBACK), real=st.booleans())
        def check(case, real: bool) -> None:
            if real and case.path_parameters:
                case.path_parameters = {
                    name: REAL.get(name, value) for name, value in case.path_parameters.items()
                }
                # A drawn If-Match is never the real resource's ETag, so the change would
                # always be 412 (tested in test_api_webhooks): without one, it is tried.
                for name in [n for n in case.headers or {} if n.lower() == "if-match"]:
                    del case.headers[name]
            # Every check but one: a cursor is refused unless this API gave it, though any
            # string of the document's characters is schema-valid.
            try:
                response = case.call_and_validate(
                    headers=auth, excluded_checks=[positive_data_acceptance]
                )
            finally:
                restore_subscriptions(engine)
            if response.status_code < 300:
                answered[case.operation.label] += 1

        try:
            check()
        except Exception as exc:  # every operation's failure, not the first
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    # Forgetting succeeds only for a real lead's email, and a decision only for an approver of
    # the task's group, which random text is not: their success is tested in test_api_v1 and
    # test_api_v1_actions.
    labels = {r.ok().label for r in schema.get_all_operations()} - {
        "POST /campaigns/{slug}/forget-requests",
        "POST /campaigns/{slug}/review-tasks/{task}/decisions",
    }
    assert {label for label in labels if answered[label]} == labels, answered


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sequences_that_follow_the_documents_links_answer_as_documented(api, engine) -> None:
    schema, auth = api
    # The webhook subscriptions' operations are left out of the sequences: with them, Hypothesis
    # stops on "inconsistent data generation" (FlakyStrategyDefinition) even with the store put
    # back after each sequence. Each is checked on its own above and in test_api_webhooks.
    # Without what Schemathesis learns from earlier answers (values it saw, links it
    # calibrated): those make the same sequence draw differently the second time, which
    # Hypothesis stops as "inconsistent data generation" when it replays a failure.
    workflow = schema.build_state_machine(feedback=NO_FEEDBACK, link_calibration=None)

    class Workflow(workflow):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case):
            return {"headers": auth}

        def teardown(self):  # each sequence starts from the same store
            restore_subscriptions(engine)

        def validate_response(self, response, case, **kwargs):
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

    Workflow.run(
        settings=hypothesis_settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck)
        )
    )
