"""The NationBuilder connector over real HTTP against a local fake of a nation's v2 signups API:
what a lead becomes, matching without duplicates, consent, per-person refusals, the nation's rate
limit headers, whole-destination failures (raised first, outcomes later in a batch) and forget."""

import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from integrations.crm import RateLimit
from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.nationbuilder import BATCH_SIZE, RATE, NationBuilder
from tests.fakes import crm_people
from tests.fakes.crm_people import after_first_answer, said
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.nationbuilder_api import FakeNationBuilder

PUSH = "/api/v2/signups/push"


lead = partial(crm_people.lead, custom_fields={"shirt_size": "M"})
clock, http = crm_people.clock, crm_people.http
limit = crm_people.limit_at(RATE)


@pytest.fixture
def nation(clock: ManualClock) -> Iterator[FakeNationBuilder]:
    yield from serving(FakeNationBuilder(clock=clock))


def connector(
    nation: FakeNationBuilder, http: httpx.Client, limit: RateLimit | None, **changes: Any
) -> NationBuilder:
    settings: dict[str, Any] = {
        "name": "pa-nation",
        "api_url": nation.url,
        "token": nation.token,
        "limit": limit,
        **changes,
    }
    return NationBuilder(http, **settings)


@pytest.fixture
def nb(nation: FakeNationBuilder, http: httpx.Client, limit: RateLimit) -> NationBuilder:
    return connector(nation, http, limit)


def test_a_lead_is_pushed_as_a_signup_and_its_id_returned(nation, nb) -> None:
    (outcome,) = nb.upsert([lead()])

    assert outcome.ok and outcome.key == "lead-1"
    signup = nation.signup("voter1@example.org")
    assert signup is not None and outcome.remote_id == signup["id"]
    assert {k: signup[k] for k in ("first_name", "last_name", "email", "mobile_number")} == {
        "first_name": "Ada",
        "last_name": "Voter1",
        "email": "voter1@example.org",
        "mobile_number": "+12155550101",
    }
    assert signup["home_address"] == {"zip": "19104"}
    assert signup["custom_values"] == {"shirt_size": "M"}
    assert (signup["email_opt_in"], signup["mobile_opt_in"]) == (True, True)
    assert signup["external_id"] == "lead-1"
    assert nation.creates[signup["id"]] == 1 and not nation.updates
    (request,) = nation.requests
    assert (request.method, request.path, request.status) == ("PATCH", PUSH, 201)
    assert request.headers["authorization"] == f"Bearer {nation.token}"
    assert request.headers["content-type"] == "application/vnd.api+json"  # JSON:API
    assert request.headers["accept"] == "application/vnd.api+json"
    assert request.json == {
        "data": {
            "type": "signups",
            "attributes": {
                "external_id": "lead-1",
                "email": "voter1@example.org",
                "first_name": "Ada",
                "last_name": "Voter1",
                "mobile_number": "+12155550101",
                "home_address_attributes": {"zip": "19104"},
                "email_opt_in": True,
                "mobile_opt_in": True,
                "custom_values": {"shirt_size": "M"},
            },
        }
    }


def test_a_repeat_matches_the_same_signup_and_creates_nothing(nation, nb) -> None:
    (first,) = nb.upsert([lead()])
    (again,) = nb.upsert([lead(postal_code="19103")])
    assert nation.signups[first.remote_id]["home_address"] == {"zip": "19103"}
    (moved,) = nb.upsert([lead(email="ada.new@example.org")])  # matched by external_id

    assert first.remote_id == again.remote_id == moved.remote_id
    assert [r.status for r in nation.requests] == [201, 200, 200]
    assert len(nation.signups) == 1
    assert nation.creates[first.remote_id] == 1 and nation.updates[first.remote_id] == 2
    assert nation.signups[first.remote_id]["email"] == "ada.new@example.org"


def test_a_person_the_nation_already_has_is_matched_by_email(nation, nb) -> None:
    known = nation.add(email="voter1@example.org", first_name="Ada", custom_values={"ward": "4"})

    (outcome,) = nb.upsert([lead()])

    assert outcome.remote_id == known and len(nation.signups) == 1
    assert nation.requests[0].status == 200 and not nation.creates
    assert nation.signups[known]["custom_values"] == {"ward": "4", "shirt_size": "M"}


def test_external_id_can_be_left_to_another_system(nation, http, limit) -> None:
    known = nation.add(email="voter1@example.org", external_id="crm-77")

    (outcome,) = connector(nation, http, limit, options={"external_id": False}).upsert([lead()])

    assert outcome.remote_id == known
    assert "external_id" not in nation.requests[0].json["data"]["attributes"]
    assert nation.signups[known]["external_id"] == "crm-77"


def test_the_batch_size_can_be_set_and_unknown_options_are_refused(nation, http, limit) -> None:
    assert connector(nation, http, limit).batch_size == BATCH_SIZE
    assert connector(nation, http, limit, options={"batch_size": 7}).batch_size == 7
    with pytest.raises(ValueError, match="tags"):
        connector(nation, http, limit, options={"tags": True})


def test_revoked_consent_is_sent_as_opted_out(nation, nb) -> None:
    known = nation.add(email="voter1@example.org", email_opt_in=True, mobile_opt_in=True)

    nb.upsert([lead(email_consent=False, sms_consent=False)])

    attributes = nation.requests[0].json["data"]["attributes"]
    assert (attributes["email_opt_in"], attributes["mobile_opt_in"]) == (False, False)
    assert (nation.signups[known]["email_opt_in"], nation.signups[known]["mobile_opt_in"]) == (
        False,
        False,
    )


def test_unknown_email_consent_is_left_alone_but_texts_need_a_recorded_yes(nation, nb) -> None:
    known = nation.add(email="voter1@example.org", email_opt_in=False, mobile_opt_in=True)

    nb.upsert([lead(email_consent=None, sms_consent=None)])
    nb.upsert([lead(2, email="new@example.org", email_consent=None, sms_consent=None)])

    attributes = nation.requests[0].json["data"]["attributes"]
    assert "email_opt_in" not in attributes and attributes["mobile_opt_in"] is False
    assert (nation.signups[known]["email_opt_in"], nation.signups[known]["mobile_opt_in"]) == (
        False,
        False,
    )
    created = nation.signup("new@example.org")
    assert created is not None and created["mobile_opt_in"] is False


def test_fields_rally_lacks_are_left_out_not_sent_as_null(nation, nb) -> None:
    bare = lead(phone=None, given_name=None, family_name=None, postal_code=None, custom_fields={})

    (outcome,) = nb.upsert([bare])

    assert outcome.ok
    assert nation.requests[0].json["data"]["attributes"] == {
        "external_id": "lead-1",
        "email": "voter1@example.org",
        "email_opt_in": True,
        "mobile_opt_in": True,
    }


def test_a_lead_the_nation_refuses_fails_alone_and_can_be_retried_once_fixed(nation, nb) -> None:
    nation.reject("voter3@example.org", "Email is on the nation's blocked list")
    batch = [lead(1), lead(2, email="not-an-email"), lead(3), lead(4)]

    outcomes = {o.key: o for o in nb.upsert(batch)}

    assert outcomes["lead-1"].ok and outcomes["lead-4"].ok
    for key, words in (
        ("lead-2", "Email 'not-an-email' should look like an email address"),
        ("lead-3", "Email is on the nation's blocked list"),
    ):
        error = outcomes[key].error
        assert isinstance(error, PermanentError) and outcomes[key].remote_id is None
        assert words in str(error) and "HTTP 422" in str(error)
    assert [r.status for r in nation.requests] == [201, 422, 422, 201]
    assert len(nation.signups) == 2

    nation.accept("voter3@example.org")
    (retried,) = nb.upsert([lead(3)])
    assert retried.ok and len(nation.signups) == 3


def test_a_bad_request_is_that_leads_permanent_error_with_the_nations_words(nation, nb) -> None:
    nation.fail_next(1, status=400, body={"code": "bad_request", "message": "Unknown attribute"})

    outcomes = nb.upsert([lead(1), lead(2)])

    assert isinstance(outcomes[0].error, PermanentError)
    assert "Unknown attribute (HTTP 400)" in str(outcomes[0].error)
    assert outcomes[1].ok


def test_when_no_requests_remain_the_limit_pauses_until_the_window_resets(clock, http, limit):
    with FakeNationBuilder(rate=(2, 10.0), clock=clock) as nation:
        nb = connector(nation, http, limit)
        clock.advance(3)

        outcomes = nb.upsert([lead(1), lead(2), lead(3)])

        assert all(o.ok for o in outcomes)
        assert [r.status for r in nation.requests] == [201, 201, 201]
        assert nation.rate_limited == 0
        assert limit.waited == pytest.approx(10)  # window from t=3 resets at t=13
        assert clock() == pytest.approx(13)


def test_a_reset_given_as_a_unix_time_pauses_until_then(nation, nb, limit) -> None:
    signup = {"data": {"id": "9", "type": "signups", "attributes": {}}}
    reset = str(int(time.time()) + 30)
    nation.fail_next(
        1, status=201, body=signup, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": reset}
    )

    nb.upsert([lead(1)])
    nb.upsert([lead(2)])

    assert 28 <= limit.waited <= 30


def test_a_429_first_is_raised_with_retry_after_and_pauses_the_limit(nation, nb, limit) -> None:
    nation.fail_next(
        1,
        status=429,
        body={"message": "You have made too many requests. Please try again later."},
        headers={"Retry-After": "7"},
    )

    with pytest.raises(TransientError, match="too many requests") as caught:
        nb.upsert([lead(1), lead(2)])
    assert caught.value.retry_after == 7 and not isinstance(caught.value, UnavailableError)
    assert len(nation.requests) == 1

    assert all(o.ok for o in nb.upsert([lead(1), lead(2)]))
    assert limit.waited == pytest.approx(7)


def test_the_nations_429_later_in_a_batch_keeps_the_done_work(clock, http) -> None:
    with FakeNationBuilder(rate=(2, 10.0), clock=clock) as nation:
        nb = connector(nation, http, None)  # no limit to follow the headers: it runs into 429

        outcomes = nb.upsert([lead(1), lead(2), lead(3), lead(4)])

        assert [o.key for o in outcomes] == ["lead-1", "lead-2", "lead-3", "lead-4"]
        assert outcomes[0].ok and outcomes[1].ok
        for outcome in outcomes[2:]:
            assert isinstance(outcome.error, TransientError)
            assert outcome.error.retry_after == 10
            assert "too many requests" in str(outcome.error)
        assert [r.status for r in nation.requests] == [201, 201, 429]  # lead-4 never sent
        assert nation.rate_limited == 1


FAULTS: dict[str, Callable[[FakeNationBuilder], None]] = {
    "503": lambda nation: nation.fail_next(1, status=503, body={"message": "Service Unavailable"}),
    "500": lambda nation: nation.fail_next(1, status=500, body="<html>oops</html>"),
    "timeout": lambda nation: nation.timeout_next(1),
    "drop": lambda nation: nation.drop_next(1),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_the_nation_first_is_raised_as_transient(nation, limit, fault) -> None:
    FAULTS[fault](nation)
    with httpx.Client(timeout=0.5) as quick, pytest.raises(TransientError) as caught:
        connector(nation, quick, limit).upsert([lead(1), lead(2)])
    assert not isinstance(caught.value, UnavailableError)
    assert len(nation.requests) == 1 and not nation.signups


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_the_nation_later_in_a_batch_keeps_the_done_work(nation, limit, fault):
    with httpx.Client(timeout=2) as quick:  # its first answer must come in time, busy or not
        after_first_answer(quick, lambda: FAULTS[fault](nation))

        outcomes = connector(nation, quick, limit).upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok and outcomes[0].remote_id in nation.signups
    assert [o.key for o in outcomes[1:]] == ["lead-2", "lead-3"]
    for outcome in outcomes[1:]:
        assert type(outcome.error) is TransientError
    assert len(nation.requests) == 2 and len(nation.signups) == 1


def test_a_refused_token_makes_the_nation_unavailable_without_showing_it(nation, http, limit):
    wrong = "nb-wrong-token-0000"
    with pytest.raises(UnavailableError, match="not authorized") as caught:
        connector(nation, http, limit, token=wrong).upsert([lead(1), lead(2)])
    assert "HTTP 401" in str(caught.value)
    assert wrong not in said(caught.value) and nation.token not in said(caught.value)
    assert len(nation.requests) == 1


def test_a_token_refused_later_in_a_batch_is_each_remaining_leads_outcome(nation, http, nb):
    after_first_answer(
        http, lambda: nation.fail_next(1, status=401, body={"code": "unauthorized", "message": "x"})
    )

    outcomes = nb.upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok
    assert all(isinstance(o.error, UnavailableError) for o in outcomes[1:])


def test_the_token_is_blanked_out_of_the_nations_words(nation, nb) -> None:
    nation.fail_next(1, status=422, body={"errors": [{"detail": f"bad token {nation.token}"}]})

    (outcome,) = nb.upsert([lead()])

    assert nation.token not in str(outcome.error) and "[secret]" in str(outcome.error)


def test_forget_deletes_the_signup_and_a_gone_one_is_fine(nation, nb) -> None:
    (outcome,) = nb.upsert([lead()])
    assert outcome.remote_id is not None

    nb.forget(outcome.remote_id)
    nb.forget(outcome.remote_id)

    assert nation.signups == {}
    deletes = [r for r in nation.requests if r.method == "DELETE"]
    assert [(r.path, r.status) for r in deletes] == [
        (f"/api/v2/signups/{outcome.remote_id}", 200),
        (f"/api/v2/signups/{outcome.remote_id}", 404),
    ]
    assert deletes[0].headers["authorization"] == f"Bearer {nation.token}"


def test_forget_raises_when_the_nation_fails_or_refuses_the_token(nation, nb, http, limit):
    known = nation.add(email="voter1@example.org")
    nation.fail_next(1, status=503, body={"message": "Service Unavailable"})
    with pytest.raises(TransientError):
        nb.forget(known)
    with pytest.raises(UnavailableError):
        connector(nation, http, limit, token="wrong").forget(known)
    assert known in nation.signups


def test_the_fake_answers_with_rate_limit_headers_and_refuses_what_nationbuilder_does(
    nation, http
) -> None:
    auth = {"Authorization": f"Bearer {nation.token}", "Content-Type": "application/vnd.api+json"}
    body = {"data": {"type": "signups", "attributes": {"email": "a@example.org"}}}
    answers = [
        http.patch(nation.url + PUSH, json=body, headers=auth),
        http.patch(nation.url + PUSH, json={"data": {"type": "people"}}, headers=auth),
        http.patch(
            nation.url + PUSH,
            json={"data": {"type": "signups", "attributes": {"nickname": "A"}}},
            headers=auth,
        ),
        http.patch(
            nation.url + PUSH,
            json={"data": {"type": "signups", "attributes": {"email_opt_in": "yes"}}},
            headers=auth,
        ),
        http.patch(
            nation.url + PUSH,
            content=b"email=a@example.org",
            headers=auth | {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        http.patch(nation.url + PUSH, json=body),
        http.get(nation.url + PUSH, headers=auth),
    ]
    assert [a.status_code for a in answers] == [201, 400, 400, 400, 415, 401, 405]
    assert "could not find an attribute" in answers[2].json()["message"]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == [str(249 - i) for i in range(7)]
    assert all(a.headers["RateLimit-Limit"] == "250" for a in answers)
    assert all(a.headers["RateLimit-Reset"] == "10" for a in answers)


def test_the_nation_refusing_how_rally_speaks_stops_the_destination_with_its_reason(
    nation, http
) -> None:
    plain = {"Authorization": f"Bearer {nation.token}", "Accept": "application/json"}
    body = {"data": {"type": "signups", "attributes": {"email": "a@example.org"}}}
    assert http.patch(nation.url + PUSH, json=body, headers=plain).status_code == 406
    assert (
        http.patch(nation.url + PUSH, json=body, headers=plain | {"Accept": "*/*"}).status_code
        == 415
    )

    nation.fail_next(1, status=406, body={"code": "not_acceptable", "message": "no"})
    with pytest.raises(UnavailableError, match="refuses Rally's requests as sent"):
        connector(nation, http, None).upsert([lead(1), lead(2)])


def test_a_404_from_the_push_route_means_a_wrong_address_and_stops_the_destination(
    nation, http, limit
) -> None:
    wrong = connector(nation, http, limit, api_url=nation.url + "/nation")

    with pytest.raises(UnavailableError, match="NationBuilder pa-nation") as caught:
        wrong.upsert([lead(1), lead(2)])

    assert "HTTP 404" in str(caught.value) and "API URL" in str(caught.value)
    assert len(nation.requests) == 1 and not nation.signups


def test_check_verifies_the_token_with_one_read_of_a_single_signup(nation, http) -> None:
    nation.add(email="known@example.org")

    readiness = connector(nation, http, None).check()

    assert readiness.ready and readiness.verified and readiness.created == ()
    [request] = nation.requests
    assert (request.method, request.path, request.status) == ("GET", "/api/v2/signups", 200)
    assert request.query == {"page[size]": "1"}
    with pytest.raises(UnavailableError, match="not authorized"):
        connector(nation, http, None, token="nb-wrong").check()
