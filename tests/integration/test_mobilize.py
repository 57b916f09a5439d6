"""The Mobilize connector over real HTTP against a local fake of Mobilize's attendance API: what a
lead becomes, one sign-up per person and timeslot however often it is sent, SMS consent as
opt-in choices, leads Mobilize cannot take, its options, the 5-a-second write limit,
whole-destination failures (raised first, outcomes later in a batch) and forget."""

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from integrations.crm import RateLimit
from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.mobilize import BATCH_SIZE, RATE, Mobilize
from tests.fakes import crm_people
from tests.fakes.crm_people import after_first_answer, said
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.mobilize_api import FakeMobilize

ORG, EVENT, SLOTS = 1234, 7001, [90001, 90002]
PATH = f"/v1/organizations/{ORG}/events/{EVENT}/attendances"
UTM = {
    "utm_source": "tiktok",
    "utm_medium": "creator",
    "utm_campaign": "first-vote-pa-2027",
    "utm_content": "MAYAVOTES",
}

lead = partial(crm_people.lead, utm=UTM)
clock, http = crm_people.clock, crm_people.http
limit = crm_people.limit_at(RATE)


@pytest.fixture
def org(clock: ManualClock) -> Iterator[FakeMobilize]:
    yield from serving(FakeMobilize(organization_id=ORG, events={EVENT: SLOTS}, clock=clock))


OPTIONS = {"organization_id": ORG, "event_id": EVENT, "timeslot_ids": SLOTS}


def connector(
    org: FakeMobilize, http: httpx.Client, limit: RateLimit | None, **changes: Any
) -> Mobilize:
    settings: dict[str, Any] = {
        "name": "pa-canvass",
        "api_url": org.url,
        "token": org.token,
        "limit": limit,
        "options": OPTIONS,
        **changes,
    }
    return Mobilize(http, **settings)


@pytest.fixture
def mobilize(org: FakeMobilize, http: httpx.Client, limit: RateLimit) -> Mobilize:
    return connector(org, http, limit)


def test_a_lead_signs_up_for_each_timeslot_and_the_person_id_is_returned(org, mobilize) -> None:
    (outcome,) = mobilize.upsert([lead()])

    person = org.person("voter1@example.org")
    assert person is not None and outcome.ok and outcome.remote_id == str(person["id"])
    assert {k: person[k] for k in ("given_name", "family_name", "phone_number", "postal_code")} == {
        "given_name": "Ada",
        "family_name": "Voter1",
        "phone_number": "+12155550101",
        "postal_code": "19104",
    }
    assert person["sms_opt_in_status"] == person["transactional_sms_opt_in_status"] == "OPT_IN"
    assert sorted(org.attendances) == [("voter1@example.org", s) for s in SLOTS]
    referrer = {**dict.fromkeys(("utm_term", "url")), **UTM}
    assert all(a["referrer"] == referrer for a in org.attendances.values())
    (request,) = org.requests
    assert (request.method, request.path, request.status) == ("POST", PATH, 201)
    assert request.headers["authorization"] == f"Bearer {org.token}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "person": {
            "email_address": "voter1@example.org",
            "phone_number": "+12155550101",
            "given_name": "Ada",
            "family_name": "Voter1",
            "postal_code": "19104",
        },
        "sms_opt_in": "OPT_IN",
        "transactional_sms_opt_in": "OPT_IN",
        "timeslots": [{"timeslot_id": 90001}, {"timeslot_id": 90002}],
        "referrer": UTM,
    }


def test_a_repeat_updates_the_sign_ups_and_adds_none(org, mobilize) -> None:
    (first,) = mobilize.upsert([lead()])
    (again,) = mobilize.upsert([lead(postal_code="19103")])

    assert first.remote_id == again.remote_id
    assert org.creates["voter1@example.org"] == 1 and org.updates["voter1@example.org"] == 1
    assert org.signups == {("voter1@example.org", s): 1 for s in SLOTS}
    assert len(org.attendances) == 2 and len(org.people) == 1
    person = org.person("voter1@example.org")
    assert person is not None and person["postal_code"] == "19103"
    assert [r.status for r in org.requests] == [201, 201]


def test_a_person_mobilize_already_has_is_matched_by_email(org, mobilize) -> None:
    known = org.add("voter1@example.org", given_name="Ada", family_name="Old")

    (outcome,) = mobilize.upsert([lead()])

    assert outcome.remote_id == str(known) and len(org.people) == 1 and not org.creates
    person = org.person("voter1@example.org")
    assert person is not None and person["family_name"] == "Voter1"


def test_revoked_sms_consent_is_never_sent_as_an_opt_in(org, mobilize) -> None:
    org.add("voter1@example.org", sms_opt_in_status="OPT_OUT")

    mobilize.upsert([lead(sms_consent=False), lead(2, sms_consent=False)])

    for request in org.requests:
        assert request.json["sms_opt_in"] == "UNSPECIFIED"
        assert request.json["transactional_sms_opt_in"] == "UNSPECIFIED"
    stopped, new = org.person("voter1@example.org"), org.person("voter2@example.org")
    assert stopped is not None and stopped["sms_opt_in_status"] == "OPT_OUT"
    assert new is not None and new["sms_opt_in_status"] == "UNSPECIFIED"
    assert new["transactional_sms_opt_in_status"] == "UNSPECIFIED"


def test_unknown_sms_consent_leaves_mobilizes_status_alone(org, mobilize) -> None:
    org.add("voter1@example.org", sms_opt_in_status="OPT_IN")

    mobilize.upsert([lead(sms_consent=None, email_consent=None)])

    assert org.requests[0].json["sms_opt_in"] == "UNSPECIFIED"
    assert org.requests[0].json["transactional_sms_opt_in"] == "UNSPECIFIED"
    person = org.person("voter1@example.org")
    assert person is not None and person["sms_opt_in_status"] == "OPT_IN"


def test_a_lead_without_an_email_is_not_sent_and_the_others_go(org, mobilize) -> None:
    outcomes = mobilize.upsert([lead(1, email=None), lead(2)])

    assert outcomes[0].key == "lead-1" and isinstance(outcomes[0].error, PermanentError)
    assert "no email address: Mobilize signs people up by email" in str(outcomes[0].error)
    assert outcomes[1].ok
    assert [r.json["person"]["email_address"] for r in org.requests] == ["voter2@example.org"]


def test_a_lead_without_a_phone_is_sent_with_an_empty_number_as_mobilize_asks(
    org, mobilize
) -> None:
    (outcome,) = mobilize.upsert([lead(phone=None, utm={})])

    assert outcome.ok
    assert org.requests[0].json["person"]["phone_number"] == ""
    assert "referrer" not in org.requests[0].json


def test_a_lead_mobilize_refuses_fails_alone_and_can_be_retried_once_fixed(org, mobilize) -> None:
    org.reject("voter3@example.org", "This email address is blocked.")
    batch = [lead(1), lead(2, family_name=None), lead(3), lead(4, email="not-an-email")]

    outcomes = {o.key: o for o in mobilize.upsert(batch)}

    assert outcomes["lead-1"].ok
    for key, words in (
        ("lead-2", "person.family_name: This field is required."),
        ("lead-3", "person.email_address: This email address is blocked."),
        ("lead-4", "person.email_address: Enter a valid email address."),
    ):
        error = outcomes[key].error
        assert isinstance(error, PermanentError) and outcomes[key].remote_id is None
        assert words in str(error) and "HTTP 400" in str(error)
    assert [r.status for r in org.requests] == [201, 400, 400, 400]
    assert len(org.people) == 1

    org.accept("voter3@example.org")
    (retried,) = mobilize.upsert([lead(3)])
    assert retried.ok and org.signups[("voter3@example.org", SLOTS[0])] == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({}, "organization_id, event_id, timeslot_ids"),
        ({"organization_id": ORG, "timeslot_ids": SLOTS}, "needs options: event_id"),
        ({"organization_id": ORG, "event_id": EVENT, "timeslot_ids": []}, "timeslot_ids"),
        ({**OPTIONS, "timeslot_ids": 90001}, "timeslot_ids is a list"),
        ({**OPTIONS, "event_id": "next-saturday"}, "event_id takes whole-number ids"),
        ({**OPTIONS, "tags": ["x"]}, "unknown Mobilize options: tags"),
    ],
)
def test_options_it_lacks_or_cannot_read_are_refused_by_name(org, http, options, named) -> None:
    with pytest.raises(ValueError, match=named):
        connector(org, http, None, options=options)


def test_options_may_come_as_strings_and_set_the_batch_size(org, http) -> None:
    as_text = {"organization_id": str(ORG), "event_id": str(EVENT), "timeslot_ids": ["90002"]}
    mobilize = connector(org, http, None, options={**as_text, "batch_size": 4})
    assert (mobilize.batch_size, connector(org, http, None).batch_size) == (4, BATCH_SIZE)

    assert mobilize.upsert([lead()])[0].ok
    assert org.requests[0].json["timeslots"] == [{"timeslot_id": 90002}]


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({**OPTIONS, "timeslot_ids": [90001, 99999]}, 400),
        ({**OPTIONS, "event_id": 7999}, 404),
    ],
)
def test_an_event_or_timeslot_mobilize_lacks_stops_the_destination(
    org, http, options, status
) -> None:
    with pytest.raises(UnavailableError, match="check the destination's organization_id") as caught:
        connector(org, http, None, options=options).upsert([lead(1), lead(2)])
    assert f"HTTP {status}" in str(caught.value)
    assert len(org.requests) == 1 and not org.attendances


def test_the_limit_keeps_to_five_writes_a_second_without_a_429(org, mobilize, clock, limit):
    outcomes = mobilize.upsert([lead(n) for n in range(1, 12)])

    assert all(o.ok for o in outcomes) and len(org.people) == 11
    assert org.rate_limited == 0 and {r.status for r in org.requests} == {201}
    assert clock() == pytest.approx(2 * limit.window)


def test_a_429_first_is_raised_with_retry_after_and_pauses_the_limit(org, mobilize, limit):
    org.fail_next(
        1,
        status=429,
        body={"data": None, "error": {"detail": "Request was throttled."}},
        headers={"Retry-After": "2"},
    )

    with pytest.raises(TransientError, match="Request was throttled") as caught:
        mobilize.upsert([lead(1), lead(2)])
    assert caught.value.retry_after == 2 and not isinstance(caught.value, UnavailableError)

    assert all(o.ok for o in mobilize.upsert([lead(1), lead(2)]))
    assert limit.waited == pytest.approx(2)


def test_over_the_limit_later_in_a_batch_the_rest_wait_and_the_done_work_stays(org, http):
    mobilize = connector(org, http, None)  # no client-side limit: the sixth in a second is refused

    outcomes = mobilize.upsert([lead(n) for n in range(1, 8)])

    assert [o.key for o in outcomes] == [f"lead-{n}" for n in range(1, 8)]
    assert all(o.ok for o in outcomes[:5])
    for outcome in outcomes[5:]:
        assert type(outcome.error) is TransientError and outcome.error.retry_after == 1
        assert "Request was throttled. Expected available in 1 second." in str(outcome.error)
    assert [r.status for r in org.requests] == [201] * 5 + [429]
    assert len(org.people) == 5


FAULTS: dict[str, Callable[[FakeMobilize], None]] = {
    "503": lambda org: org.fail_next(1, status=503, body="<html>Service Unavailable</html>"),
    "502": lambda org: org.fail_next(1, status=502, body={"error": {"detail": "Bad Gateway"}}),
    "timeout": lambda org: org.timeout_next(1),
    "drop": lambda org: org.drop_next(1),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_mobilize_first_is_raised_as_transient(org, limit, fault) -> None:
    FAULTS[fault](org)
    with httpx.Client(timeout=0.5) as quick, pytest.raises(TransientError) as caught:
        connector(org, quick, limit).upsert([lead(1), lead(2)])
    assert not isinstance(caught.value, UnavailableError)
    assert len(org.requests) == 1 and not org.people


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_mobilize_later_in_a_batch_keeps_the_done_work(org, limit, fault) -> None:
    with httpx.Client(timeout=2) as quick:  # its first answer must come in time, busy or not
        after_first_answer(quick, lambda: FAULTS[fault](org))

        outcomes = connector(org, quick, limit).upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok and outcomes[0].remote_id is not None
    assert [o.key for o in outcomes[1:]] == ["lead-2", "lead-3"]
    assert all(type(o.error) is TransientError for o in outcomes[1:])
    assert len(org.requests) == 2 and len(org.people) == 1


def test_a_refused_token_makes_mobilize_unavailable_without_showing_it(org, http, limit):
    wrong = "mobilize-wrong-key-0000"
    with pytest.raises(UnavailableError, match="Invalid token") as caught:
        connector(org, http, limit, token=wrong).upsert([lead(1), lead(2)])
    assert "HTTP 403" in str(caught.value)
    assert wrong not in said(caught.value) and org.token not in said(caught.value)
    assert len(org.requests) == 1


def test_write_endpoints_not_enabled_stop_the_destination(org, http, mobilize) -> None:
    after_first_answer(http, lambda: setattr(org, "writes_enabled", False))

    outcomes = mobilize.upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok
    for outcome in outcomes[1:]:
        assert isinstance(outcome.error, UnavailableError)
        assert "You do not have permission" in str(outcome.error)


def test_the_token_is_blanked_out_of_mobilizes_words(org, mobilize) -> None:
    org.fail_next(1, status=400, body={"data": None, "error": {"detail": f"odd {org.token}"}})

    (outcome,) = mobilize.upsert([lead()])

    assert org.token not in str(outcome.error) and "[secret]" in str(outcome.error)


def test_forget_sends_nothing_and_says_to_remove_the_person_by_hand(org, mobilize) -> None:
    with pytest.raises(PermanentError, match="no call to delete a person") as caught:
        mobilize.forget("57")
    assert "remove person 57 in Mobilize by hand" in str(caught.value)
    assert org.requests == []


def test_the_fake_refuses_what_mobilize_does(http) -> None:
    with FakeMobilize(organization_id=ORG, events={EVENT: SLOTS}, rate=None) as org:
        url, auth = org.url + PATH, {"Authorization": f"Bearer {org.token}"}
        person = {
            "given_name": "A",
            "family_name": "B",
            "email_address": "a@example.org",
            "phone_number": "",
            "postal_code": "19104",
        }
        body: dict[str, Any] = {"person": person, "timeslots": [{"timeslot_id": SLOTS[0]}]}
        answers = [
            http.post(url, json=body, headers=auth),
            http.post(url, json={**body, "sms_opt_in": True}, headers=auth),
            http.post(url, json={**body, "person": {**person, "postal_code": " "}}, headers=auth),
            http.post(url, json={**body, "timeslots": []}, headers=auth),
            http.post(url, json={**body, "timeslots": [{"timeslot_id": "x"}]}, headers=auth),
            http.post(url, content=b"person=a", headers=auth),
            http.post(url, json=body),
            http.post(url.replace(str(ORG), "999"), json=body, headers=auth),
            http.get(url, headers=auth),
        ]
    assert [a.status_code for a in answers] == [201, 400, 400, 400, 400, 415, 403, 403, 405]
    assert answers[1].json()["error"] == {"sms_opt_in": ['"True" is not a valid choice.']}
    assert answers[2].json()["error"] == {
        "person": {"postal_code": ["This field may not be blank."]}
    }
    assert org.people["a@example.org"]["transactional_sms_opt_in_status"] == "OPT_IN"


def test_a_404_from_a_wrong_api_address_names_the_api_url_too(org, http, limit) -> None:
    wrong = connector(org, http, limit, api_url=org.url + "/api")

    with pytest.raises(UnavailableError, match="Mobilize pa-canvass") as caught:
        wrong.upsert([lead(1), lead(2)])

    assert "HTTP 404" in str(caught.value) and "API URL" in str(caught.value)
    assert len(org.requests) == 1 and not org.attendances


def test_check_verifies_the_token_with_one_read_of_people_changed_from_now_on(org, http) -> None:
    org.add("known@example.org")

    readiness = connector(org, http, None).check()

    assert readiness.ready and readiness.verified and readiness.created == ()
    [request] = org.requests
    assert (request.method, request.path, request.status) == (
        "GET",
        f"/v1/organizations/{ORG}/people",
        200,
    )
    assert request.query["per_page"] == "1" and int(request.query["updated_since"]) > 0
    assert request.headers["authorization"] == f"Bearer {org.token}"
    with pytest.raises(UnavailableError, match="Invalid token"):
        connector(org, http, None, token="mobilize-wrong").check()
