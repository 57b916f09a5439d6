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

from tests.conftest import SLUG
from web.app import create_app

ALL_SCOPES = [
    "--scope", "campaign:read", "--scope", "creators:read", "--scope", "reviews:read",
    "--scope", "leads:read", "--scope", "events:write", "--scope", "briefs:read",
    "--scope", "creatives:read", "--scope", "leads:write",
]  # fmt: skip


@pytest.fixture
def api(rally, applied, settings):
    made = rally("tokens", "create", "schemathesis", *ALL_SCOPES, "--campaign", SLUG, "--json")
    assert made.code == 0, made.err
    # The document is under test, not the token's rate: hundreds of requests a minute here,
    # and a 429 midway would make the answers differ when a failure is replayed.
    app = create_app(settings.model_copy(update={"api_requests_per_minute": 10**9}))
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    # The token is the test's to give (every call carries it): no values made up for it, which
    # the test's own header would replace, turning a deliberately bad request into a good one.
    schema.config.generation.update(with_security_parameters=False)
    return schema, {"Authorization": f"Bearer {json.loads(made.out)['secret']}"}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_every_operation_answers_as_documented(api) -> None:
    schema, auth = api
    failures: list[str] = []
    answered: collections.Counter[str] = collections.Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        # Half the requests name the real campaign, so that each operation is reached past
        # its 404 and answers with data too.
        @hypothesis_settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy(), real=st.booleans())
        def check(case, real: bool) -> None:
            if real and "slug" in (case.path_parameters or {}):
                case.path_parameters = {**case.path_parameters, "slug": SLUG}
            # Every check but one: a cursor is refused unless this API gave it, though any
            # string of the document's characters is schema-valid.
            response = case.call_and_validate(
                headers=auth, excluded_checks=[positive_data_acceptance]
            )
            if response.status_code < 300:
                answered[case.operation.label] += 1

        try:
            check()
        except Exception as exc:  # every operation's failure, not the first
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    # Forgetting succeeds only for a real lead's email, which random text is not: its success
    # is tested in test_api_v1 with leads sent as signups.
    labels = {r.ok().label for r in schema.get_all_operations()} - {
        "POST /campaigns/{slug}/forget-requests"
    }
    assert {label for label in labels if answered[label]} == labels, answered


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sequences_that_follow_the_documents_links_answer_as_documented(api) -> None:
    schema, auth = api
    workflow = schema.as_state_machine()

    class Workflow(workflow):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case):
            return {"headers": auth}

        def validate_response(self, response, case, **kwargs):
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

    Workflow.run(
        settings=hypothesis_settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck)
        )
    )
