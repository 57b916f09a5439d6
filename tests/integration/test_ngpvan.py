"""The NGP VAN connector over real HTTP against a local fake of VAN's people/findOrCreate: what a
lead becomes, matching without duplicates (and never sending a lead VAN could only duplicate),
consent, per-person refusals, rate limits, whole-destination failures (raised first, outcomes
later in a batch) and forget."""

import base64
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from integrations.crm import RateLimit
from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.ngpvan import BATCH_SIZE, RATE, NgpVan
from tests.fakes import crm_people
from tests.fakes.crm_people import after_first_answer, said
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.ngpvan_api import FakeNgpVan

PATH = "/v4/people/findOrCreate"


lead = crm_people.lead
clock, http = crm_people.clock, crm_people.http
limit = crm_people.limit_at(RATE)


@pytest.fixture
def van(clock: ManualClock) -> Iterator[FakeNgpVan]:
    yield from serving(FakeNgpVan(clock=clock))


def connector(
    van: FakeNgpVan, http: httpx.Client, limit: RateLimit | None, **changes: Any
) -> NgpVan:
    settings: dict[str, Any] = {
        "name": "pa-committee",
        "api_url": van.url,
        "app_name": van.app_name,
        "api_key": van.api_key,
        "limit": limit,
        **changes,
    }
    return NgpVan(http, **settings)


@pytest.fixture
def ngp(van: FakeNgpVan, http: httpx.Client, limit: RateLimit) -> NgpVan:
    return connector(van, http, limit)


def test_a_lead_is_found_or_created_and_its_van_id_returned(van, ngp) -> None:
    (outcome,) = ngp.upsert([lead()])

    person = van.person("voter1@example.org")
    assert person is not None and outcome.ok and outcome.remote_id == str(person["vanId"])
    assert person == {
        "vanId": person["vanId"],
        "firstName": "Ada",
        "lastName": "Voter1",
        "emails": [{"email": "voter1@example.org", "isSubscribed": True}],
        "phones": [{"phoneNumber": "+12155550101", "phoneType": "C", "phoneOptInStatus": "I"}],
        "addresses": [{"zipOrPostalCode": "19104"}],
    }
    assert van.creates[person["vanId"]] == 1 and not van.updates
    (request,) = van.requests
    assert (request.method, request.path, request.status) == ("POST", PATH, 201)
    assert request.headers["content-type"] == "application/json"
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{van.app_name}:{van.api_key}|1"
    assert request.json == {
        "firstName": "Ada",
        "lastName": "Voter1",
        "emails": [{"email": "voter1@example.org", "isSubscribed": True}],
        "phones": [{"phoneNumber": "+12155550101", "phoneType": "C", "phoneOptInStatus": "I"}],
        "addresses": [{"zipOrPostalCode": "19104"}],
    }


def test_a_repeat_matches_and_creates_nothing(van, ngp) -> None:
    (first,) = ngp.upsert([lead()])
    (again,) = ngp.upsert([lead(postal_code="19103")])

    assert first.remote_id == again.remote_id and len(van.people) == 1
    assert [r.status for r in van.requests] == [201, 200]
    van_id = int(first.remote_id or 0)
    assert van.creates[van_id] == 1 and van.updates[van_id] == 1
    assert van.people[van_id]["addresses"] == [
        {"zipOrPostalCode": "19104"},
        {"zipOrPostalCode": "19103"},
    ]


def test_a_lead_without_email_matches_on_names_and_phone(van, ngp) -> None:
    known = van.add(
        {"firstName": "Ada", "lastName": "Voter1", "phones": [{"phoneNumber": "2155550101"}]}
    )

    (outcome,) = ngp.upsert([lead(email=None)])

    assert outcome.remote_id == str(known) and len(van.people) == 1 and not van.creates


def test_the_mode_goes_into_the_password(http, limit) -> None:
    with FakeNgpVan(mode=0) as van:
        (outcome,) = connector(van, http, limit, mode=0).upsert([lead()])
        assert outcome.ok
        with pytest.raises(UnavailableError):
            connector(van, http, limit, mode=1).upsert([lead()])


def test_the_batch_size_can_be_set_and_other_options_or_modes_are_refused(van, http, limit):
    assert connector(van, http, limit).batch_size == BATCH_SIZE
    assert connector(van, http, limit, options={"batch_size": 7}).batch_size == 7
    with pytest.raises(ValueError, match="mode"):
        connector(van, http, limit, mode=2)
    with pytest.raises(ValueError, match="tags"):
        connector(van, http, limit, options={"tags": True})


def test_revoked_consent_is_sent_as_unsubscribed_and_opted_out(van, ngp) -> None:
    (outcome,) = ngp.upsert([lead()])
    ngp.upsert([lead(email_consent=False, sms_consent=False)])

    sent = van.requests[1].json
    assert sent["emails"] == [{"email": "voter1@example.org", "isSubscribed": False}]
    assert sent["phones"][0]["phoneOptInStatus"] == "O"
    person = van.people[int(outcome.remote_id or 0)]
    assert person["emails"][0]["isSubscribed"] is False
    assert person["phones"][0]["phoneOptInStatus"] == "O"


def test_unknown_consent_sends_nothing_and_leaves_vans_status_alone(van, ngp) -> None:
    known = van.add(
        {
            "emails": [{"email": "voter1@example.org", "isSubscribed": False}],
            "phones": [{"phoneNumber": "+12155550101", "phoneType": "C", "phoneOptInStatus": "I"}],
        }
    )

    ngp.upsert([lead(email_consent=None, sms_consent=None)])

    sent = van.requests[0].json
    assert sent["emails"] == [{"email": "voter1@example.org"}]
    assert sent["phones"] == [{"phoneNumber": "+12155550101", "phoneType": "C"}]
    assert van.people[known]["emails"][0]["isSubscribed"] is False
    assert van.people[known]["phones"][0]["phoneOptInStatus"] == "I"


@pytest.mark.parametrize(
    "changes",
    [
        {"email": None, "given_name": None, "family_name": None},  # a phone alone
        {"email": None, "phone": None},  # names alone
        {"email": None, "family_name": None},  # first name and phone
        {"email": None, "given_name": None, "family_name": None, "phone": None},
    ],
)
def test_a_lead_van_could_only_duplicate_is_never_sent(van, ngp, changes) -> None:
    outcomes = ngp.upsert([lead(1, **changes), lead(2)])

    assert isinstance(outcomes[0].error, PermanentError) and outcomes[0].key == "lead-1"
    assert "not enough to match" in str(outcomes[0].error)
    assert "duplicate" in str(outcomes[0].error)
    assert outcomes[1].ok
    assert [r.json["emails"][0]["email"] for r in van.requests] == ["voter2@example.org"]


def test_the_fake_stores_a_duplicate_for_a_phone_alone_as_van_does(van, http) -> None:
    auth = (van.app_name, f"{van.api_key}|1")
    body = {"phones": [{"phoneNumber": "+12155550101", "phoneType": "C"}]}

    answers = [http.post(van.url + PATH, json=body, auth=auth) for _ in range(2)]

    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json()["vanId"] != answers[1].json()["vanId"]
    assert len(van.people) == 2


def test_a_lead_van_refuses_fails_alone_and_can_be_retried_once_fixed(van, ngp) -> None:
    van.reject("voter4@example.org", "Email domain is suppressed.")
    batch = [lead(1), lead(2, email="voter2@"), lead(3, phone="12"), lead(4), lead(5)]

    outcomes = {o.key: o for o in ngp.upsert(batch)}

    assert outcomes["lead-1"].ok and outcomes["lead-5"].ok
    for key, words in (
        ("lead-2", "Email address is not valid. [INVALID_PARAMETER; emails[0].email]"),
        ("lead-3", "Phone number is not valid. [INVALID_PARAMETER; phones[0].phoneNumber]"),
        ("lead-4", "Email domain is suppressed. [INVALID_PARAMETER; emails[0].email]"),
    ):
        error = outcomes[key].error
        assert isinstance(error, PermanentError) and outcomes[key].remote_id is None
        assert words in str(error) and "HTTP 400" in str(error)
    assert [r.status for r in van.requests] == [201, 400, 400, 400, 201]

    van.accept("voter4@example.org")
    (retried,) = ngp.upsert([lead(4)])
    assert retried.ok and len(van.people) == 3


def test_over_the_rate_limit_is_raised_first_and_pauses_the_limit(clock, http, limit) -> None:
    with FakeNgpVan(rate=(1, 1.0), clock=clock) as van:
        ngp = connector(van, http, limit)
        ngp.upsert([lead(1)])

        with pytest.raises(TransientError, match="API rate limit exceeded") as caught:
            ngp.upsert([lead(2)])
        assert caught.value.retry_after == 1 and not isinstance(caught.value, UnavailableError)

        (outcome,) = ngp.upsert([lead(2)])
        assert outcome.ok and limit.waited == pytest.approx(1)
        assert [r.status for r in van.requests] == [201, 429, 201]


def test_over_the_rate_limit_later_in_a_batch_keeps_the_done_work(clock, http) -> None:
    with FakeNgpVan(rate=(2, 1.0), clock=clock) as van:
        outcomes = connector(van, http, None).upsert([lead(1), lead(2), lead(3), lead(4)])

        assert outcomes[0].ok and outcomes[1].ok
        assert [o.key for o in outcomes[2:]] == ["lead-3", "lead-4"]
        for outcome in outcomes[2:]:
            assert isinstance(outcome.error, TransientError) and outcome.error.retry_after == 1
        assert [r.status for r in van.requests] == [201, 201, 429]


def test_our_own_limit_keeps_to_vans_rate(clock, http, limit) -> None:
    with FakeNgpVan(clock=clock) as van:
        outcomes = connector(van, http, limit).upsert([lead(n) for n in range(1, 10)] * 3)

        assert all(o.ok for o in outcomes) and van.rate_limited == 0
        assert len(van.people) == 9 and clock() >= 2


FAULTS: dict[str, Callable[[FakeNgpVan], None]] = {
    "503": lambda van: van.fail_next(
        1, status=503, body={"errors": [{"code": "INTERNAL_SERVER_ERROR", "text": "Unavailable"}]}
    ),
    "502": lambda van: van.fail_next(1, status=502, body="<html>Bad Gateway</html>"),
    "timeout": lambda van: van.timeout_next(1),
    "drop": lambda van: van.drop_next(1),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_van_first_is_raised_as_transient(van, limit, fault) -> None:
    FAULTS[fault](van)
    with httpx.Client(timeout=0.5) as quick, pytest.raises(TransientError) as caught:
        connector(van, quick, limit).upsert([lead(1), lead(2)])
    assert not isinstance(caught.value, UnavailableError)
    assert len(van.requests) == 1 and not van.people


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_van_later_in_a_batch_keeps_the_done_work(van, limit, fault) -> None:
    with httpx.Client(timeout=2) as quick:  # its first answer must come in time, busy or not
        after_first_answer(quick, lambda: FAULTS[fault](van))

        outcomes = connector(van, quick, limit).upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok and int(outcomes[0].remote_id or 0) in van.people
    assert [o.key for o in outcomes[1:]] == ["lead-2", "lead-3"]
    assert all(type(o.error) is TransientError for o in outcomes[1:])
    assert len(van.requests) == 2 and len(van.people) == 1


def test_refused_credentials_make_van_unavailable_without_showing_the_key(van, http, limit):
    wrong = "f0e1d2c3-wrong-key-b4a59687"
    with pytest.raises(UnavailableError, match="Authorization has been denied") as caught:
        connector(van, http, limit, api_key=wrong).upsert([lead(1), lead(2)])
    assert "HTTP 401" in str(caught.value)
    assert wrong not in said(caught.value) and van.api_key not in said(caught.value)
    assert len(van.requests) == 1


def test_credentials_refused_later_in_a_batch_are_each_remaining_leads_outcome(van, http, ngp):
    after_first_answer(
        http,
        lambda: van.fail_next(1, status=401, body={"errors": [{"code": "UNAUTHORIZED"}]}),
    )

    outcomes = ngp.upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok
    assert all(isinstance(o.error, UnavailableError) for o in outcomes[1:])


def test_the_api_key_is_blanked_out_of_vans_words(van, ngp) -> None:
    van.fail_next(1, status=400, body={"errors": [{"code": "X", "text": f"key {van.api_key}"}]})

    (outcome,) = ngp.upsert([lead()])

    assert van.api_key not in str(outcome.error) and "[secret]" in str(outcome.error)


def test_forget_is_refused_as_van_cannot_delete_a_person(van, ngp) -> None:
    with pytest.raises(PermanentError, match="NGP VAN has no call to delete a person"):
        ngp.forget("100000001")
    assert van.requests == []


def test_the_fake_refuses_what_van_does(van, http) -> None:
    auth = (van.app_name, f"{van.api_key}|1")
    answers = [
        http.post(van.url + PATH, content=b"firstName=Ada", auth=auth),
        http.post(van.url + PATH, json=[], auth=auth),
        http.post(van.url + PATH, json={"emails": {"email": "a@example.org"}}, auth=auth),
        http.post(
            van.url + PATH,
            json={"phones": [{"phoneNumber": "2155550101", "phoneType": "X"}]},
            auth=auth,
        ),
        http.post(
            van.url + PATH,
            json={"emails": [{"email": "a@example.org", "isSubscribed": "yes"}]},
            auth=auth,
        ),
        http.post(van.url + PATH, json={"firstName": "Ada"}),
        http.get(van.url + PATH, auth=auth),
    ]
    assert [a.status_code for a in answers] == [415, 400, 400, 400, 400, 401, 405]
    assert answers[3].json()["errors"][0]["properties"] == ["phones[0].phoneType"]
    assert van.people == {}


def test_a_404_from_the_find_or_create_route_means_a_wrong_address_and_stops_van(
    van, http, limit
) -> None:
    wrong = connector(van, http, limit, api_url=van.url + "/api")

    with pytest.raises(UnavailableError, match="NGP VAN pa-committee") as caught:
        wrong.upsert([lead(1), lead(2)])

    assert "HTTP 404" in str(caught.value) and "API URL" in str(caught.value)
    assert len(van.requests) == 1 and not van.people


def test_check_verifies_the_key_by_reading_its_own_profile(van, http) -> None:
    readiness = connector(van, http, None).check()

    assert readiness.ready and readiness.verified and readiness.created == ()
    [request] = van.requests
    assert (request.method, request.path, request.status) == ("GET", "/v4/apiKeyProfiles", 200)
    wrong = "van-wrong-key-0000"
    with pytest.raises(UnavailableError, match="Authorization has been denied") as caught:
        connector(van, http, None, api_key=wrong).check()
    assert wrong not in said(caught.value)
