"""The REST API against its own OpenAPI document, by Schemathesis: generated requests, one
operation at a time and as sequences that follow the document's links, find no server error
and no answer the document does not describe."""

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import positive_data_acceptance

from tests.conftest import SLUG
from web.app import create_app

ALL_SCOPES = [
    "--scope", "campaign:read", "--scope", "creators:read", "--scope", "reviews:read",
    "--scope", "leads:read", "--scope", "events:write",
]  # fmt: skip


@pytest.fixture
def api(rally, applied, settings):
    made = rally("tokens", "create", "schemathesis", *ALL_SCOPES, "--campaign", SLUG, "--json")
    assert made.code == 0, made.err
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    return schema, {"Authorization": f"Bearer {json.loads(made.out)['secret']}"}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_every_operation_answers_as_documented(api) -> None:
    schema, auth = api
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis_settings(
            max_examples=40, deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy())
        def check(case) -> None:
            # Every check but one: a cursor is refused unless this API gave it, though any
            # string of the document's characters is schema-valid.
            case.call_and_validate(headers=auth, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # every operation's failure, not the first
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


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
