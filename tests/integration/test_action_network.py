"""The Action Network connector over real HTTP against a local fake of a group's person signup
helper: what a lead becomes, matching without duplicates, consent as subscription statuses,
tags the group lacks, per-person refusals, the 4-a-second limit, whole-destination failures
(raised first, outcomes later in a batch) and forget."""

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from integrations.action_network import BATCH_SIZE, RATE, ActionNetwork
from integrations.crm import RateLimit
from integrations.errors import PermanentError, TransientError, UnavailableError
from tests.fakes import crm_people
from tests.fakes.action_network_api import PATH, FakeActionNetwork
from tests.fakes.crm_people import after_first_answer, said
from tests.fakes.http_server import ManualClock, serving

lead = partial(crm_people.lead, tags=("volunteer",), custom_fields={"shirt_size": "M"})
clock, http = crm_people.clock, crm_people.http
limit = crm_people.limit_at(RATE)


@pytest.fixture
def group(clock: ManualClock) -> Iterator[FakeActionNetwork]:
    yield from serving(FakeActionNetwork(clock=clock))


def connector(
    group: FakeActionNetwork, http: httpx.Client, limit: RateLimit | None, **changes: Any
) -> ActionNetwork:
    settings: dict[str, Any] = {
        "name": "pa-group",
        "api_url": group.url,
        "token": group.token,
        "limit": limit,
        **changes,
    }
    return ActionNetwork(http, **settings)


@pytest.fixture
def an(group: FakeActionNetwork, http: httpx.Client, limit: RateLimit) -> ActionNetwork:
    return connector(group, http, limit)


def test_a_lead_is_signed_up_as_a_person_and_their_identifier_returned(group, an) -> None:
    (outcome,) = an.upsert([lead()])

    person = group.person("voter1@example.org")
    assert person is not None and outcome.ok and outcome.key == "lead-1"
    assert outcome.remote_id == f"action_network:{person['id']}"
    assert (person["given_name"], person["family_name"]) == ("Ada", "Voter1")
    assert person["email_addresses"] == [
        {"address": "voter1@example.org", "status": "subscribed", "primary": True}
    ]
    assert person["phone_numbers"] == [
        {"number": "+12155550101", "number_type": "Mobile", "status": "subscribed", "primary": True}
    ]
    assert person["postal_addresses"] == [
        {"postal_code": "19104", "country": "US", "primary": True}
    ]
    assert person["custom_fields"] == {"shirt_size": "M"}
    assert person["tags"] == {"volunteer"}
    assert group.creates[person["id"]] == 1 and not group.updates
    (request,) = group.requests
    assert (request.method, request.path, request.status) == ("POST", PATH, 200)
    assert request.headers["osdi-api-token"] == group.token
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "person": {
            "given_name": "Ada",
            "family_name": "Voter1",
            "email_addresses": [{"address": "voter1@example.org", "status": "subscribed"}],
            "phone_numbers": [
                {"number": "+12155550101", "number_type": "Mobile", "status": "subscribed"}
            ],
            "postal_addresses": [{"postal_code": "19104", "country": "US"}],
            "custom_fields": {"shirt_size": "M"},
        },
        "add_tags": ["volunteer"],
    }


def test_a_repeat_updates_the_same_person_and_creates_nothing(group, an) -> None:
    (first,) = an.upsert([lead()])
    (again,) = an.upsert([lead(postal_code="19103", custom_fields={"ward": "4"})])

    assert first.remote_id == again.remote_id
    person = group.person("voter1@example.org")
    assert person is not None and len(group.people) == 1
    assert group.creates[person["id"]] == 1 and group.updates[person["id"]] == 1
    assert person["postal_addresses"][0]["postal_code"] == "19103"
    assert person["custom_fields"] == {"shirt_size": "M", "ward": "4"}


def test_a_person_the_group_has_by_phone_alone_is_matched_by_phone(group, an) -> None:
    known = group.add(phone_numbers=[{"number": "2155550101", "status": "subscribed"}])

    (outcome,) = an.upsert([lead(email_consent=None)])

    assert outcome.remote_id == f"action_network:{known}" and len(group.people) == 1
    assert group.updates[known] == 1 and not group.creates
    assert group.people[known]["email_addresses"][0]["address"] == "voter1@example.org"


def test_revoked_consent_is_sent_as_unsubscribed(group, an) -> None:
    known = group.add(
        email_addresses=[{"address": "voter1@example.org", "status": "subscribed"}],
        phone_numbers=[{"number": "+12155550101", "status": "subscribed"}],
    )

    an.upsert([lead(email_consent=False, sms_consent=False)])

    person = group.requests[0].json["person"]
    assert person["email_addresses"][0]["status"] == "unsubscribed"
    assert person["phone_numbers"][0]["status"] == "unsubscribed"
    assert group.people[known]["email_addresses"][0]["status"] == "unsubscribed"
    assert group.people[known]["phone_numbers"][0]["status"] == "unsubscribed"


def test_unknown_consent_sends_no_status_and_leaves_the_groups_alone(group, an) -> None:
    known = group.add(
        email_addresses=[{"address": "voter1@example.org", "status": "unsubscribed"}],
        phone_numbers=[{"number": "+12155550101", "status": "subscribed"}],
    )

    an.upsert(
        [lead(email_consent=None, sms_consent=None), lead(2, email_consent=None, sms_consent=None)]
    )

    first, second = (r.json["person"] for r in group.requests)
    assert "status" not in first["email_addresses"][0]
    assert "status" not in first["phone_numbers"][0]
    assert group.people[known]["email_addresses"][0]["status"] == "unsubscribed"
    assert group.people[known]["phone_numbers"][0]["status"] == "subscribed"
    assert (
        "status" not in second["email_addresses"][0] and "status" not in second["phone_numbers"][0]
    )
    new = group.person("voter2@example.org")
    assert new is not None  # Action Network's own defaults for a new person:
    assert new["email_addresses"][0]["status"] == "subscribed"
    assert new["phone_numbers"][0]["status"] == "unsubscribed"


def test_each_outcome_carries_the_status_action_network_holds_for_the_person(group, an) -> None:
    group.add(
        email_addresses=[{"address": "voter1@example.org", "status": "unsubscribed"}],
        phone_numbers=[{"number": "+12155550101", "status": "subscribed"}],
    )
    group.add(email_addresses=[{"address": "voter2@example.org", "status": "bouncing"}])

    first, second, third = an.upsert(
        [
            lead(1, email_consent=None, sms_consent=None),
            lead(2, phone=None, email_consent=None),
            lead(3, sms_consent=None),
        ]
    )

    assert first.subscriptions == {"email": "unsubscribed", "sms": "subscribed"}
    assert second.subscriptions == {"email": "bouncing"}  # sent without a status: kept
    assert third.subscriptions == {"email": "subscribed", "sms": "unsubscribed"}  # new: defaults
    assert all(o.ok for o in (first, second, third))


def test_the_fake_keeps_a_status_on_a_re_signup_without_one_as_action_network_does(
    group, http
) -> None:
    url, key = group.url + PATH, {"OSDI-API-Token": group.token}
    for status in ("unsubscribed", "bouncing", "spam complaint"):
        address = f"{status.replace(' ', '-')}@example.org"
        group.add(email_addresses=[{"address": address, "status": status}])
        answer = http.post(
            url, json={"person": {"email_addresses": [{"address": address}]}}, headers=key
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/hal+json")
        assert answer.json()["email_addresses"] == [
            {"address": address, "status": status, "primary": True}
        ]


def test_tags_the_group_lacks_are_ignored_as_action_network_does(group, an) -> None:
    (outcome,) = an.upsert([lead(tags=("volunteer", "tiktok-2027"))])

    assert outcome.ok
    assert group.requests[0].json["add_tags"] == ["volunteer", "tiktok-2027"]
    person = group.person("voter1@example.org")
    assert person is not None and person["tags"] == {"volunteer"}
    assert group.ignored_tags == ["tiktok-2027"]


def test_fields_rally_lacks_are_left_out(group, an) -> None:
    bare = lead(
        phone=None,
        given_name=None,
        family_name=None,
        postal_code=None,
        tags=(),
        email_consent=None,
        custom_fields={},
    )

    (outcome,) = an.upsert([bare])

    assert outcome.ok
    assert group.requests[0].json == {
        "person": {"email_addresses": [{"address": "voter1@example.org"}]}
    }


def test_a_lead_action_network_refuses_fails_alone_and_can_be_retried_once_fixed(group, an) -> None:
    group.reject("voter3@example.org", "Email address is on the group's suppression list")
    batch = [lead(1), lead(2, email=None, phone=None), lead(3), lead(4)]

    outcomes = {o.key: o for o in an.upsert(batch)}

    assert outcomes["lead-1"].ok and outcomes["lead-4"].ok
    for key, words in (
        ("lead-2", "You must specify a valid email address or phone number"),
        ("lead-3", "Email address is on the group's suppression list"),
    ):
        error = outcomes[key].error
        assert isinstance(error, PermanentError) and outcomes[key].remote_id is None
        assert words in str(error) and "HTTP 400" in str(error)
    assert [r.status for r in group.requests] == [200, 400, 400, 200]
    assert len(group.people) == 2

    group.accept("voter3@example.org")
    (retried,) = an.upsert([lead(3)])
    assert retried.ok and len(group.people) == 3


def test_the_limit_keeps_to_four_a_second_without_a_429(group, an, clock, limit) -> None:
    outcomes = an.upsert([lead(n) for n in range(1, 11)])

    assert all(o.ok for o in outcomes) and len(group.people) == 10
    assert group.rate_limited == 0 and {r.status for r in group.requests} == {200}
    assert clock() == pytest.approx(2 * limit.window)  # 4 at t=0, 4 a window on, 2 after
    assert limit.waited == pytest.approx(2 * limit.window)


def test_a_429_first_is_raised_with_retry_after_and_pauses_the_limit(group, an, limit) -> None:
    group.fail_next(
        1, status=429, body={"error": "Too many requests"}, headers={"Retry-After": "3"}
    )

    with pytest.raises(TransientError, match="Too many requests") as caught:
        an.upsert([lead(1), lead(2)])
    assert caught.value.retry_after == 3 and not isinstance(caught.value, UnavailableError)
    assert len(group.requests) == 1

    assert all(o.ok for o in an.upsert([lead(1), lead(2)]))
    assert limit.waited == pytest.approx(3)


def test_over_the_limit_later_in_a_batch_the_rest_wait_and_the_done_work_stays(group, http) -> None:
    an = connector(group, http, None)  # no client-side limit: the fifth in a second is refused

    outcomes = an.upsert([lead(n) for n in range(1, 7)])

    assert [o.key for o in outcomes] == [f"lead-{n}" for n in range(1, 7)]
    assert all(o.ok for o in outcomes[:4])
    for outcome in outcomes[4:]:
        assert type(outcome.error) is TransientError and outcome.error.retry_after == 1
        assert "Too many requests" in str(outcome.error)
    assert [r.status for r in group.requests] == [200] * 4 + [429]  # lead-6 never sent
    assert len(group.people) == 4


FAULTS: dict[str, Callable[[FakeActionNetwork], None]] = {
    "503": lambda group: group.fail_next(1, status=503, body={"error": "Service Unavailable"}),
    "500": lambda group: group.fail_next(1, status=500, body="<html>oops</html>"),
    "timeout": lambda group: group.timeout_next(1),
    "drop": lambda group: group.drop_next(1),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_action_network_first_is_raised_as_transient(group, limit, fault) -> None:
    FAULTS[fault](group)
    with httpx.Client(timeout=0.5) as quick, pytest.raises(TransientError) as caught:
        connector(group, quick, limit).upsert([lead(1), lead(2)])
    assert not isinstance(caught.value, UnavailableError)
    assert len(group.requests) == 1 and not group.people


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failure_of_action_network_later_in_a_batch_keeps_the_done_work(
    group, limit, fault
) -> None:
    with httpx.Client(timeout=2) as quick:  # its first answer must come in time, busy or not
        after_first_answer(quick, lambda: FAULTS[fault](group))

        outcomes = connector(group, quick, limit).upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok and outcomes[0].remote_id is not None
    assert [o.key for o in outcomes[1:]] == ["lead-2", "lead-3"]
    assert all(type(o.error) is TransientError for o in outcomes[1:])
    assert len(group.requests) == 2 and len(group.people) == 1


def test_a_refused_key_makes_action_network_unavailable_without_showing_it(
    group, http, limit
) -> None:
    wrong = "an-wrong-key-00000000"
    with pytest.raises(UnavailableError, match="API Key invalid or not present") as caught:
        connector(group, http, limit, token=wrong).upsert([lead(1), lead(2)])
    assert "HTTP 401" in str(caught.value)
    assert wrong not in said(caught.value) and group.token not in said(caught.value)
    assert group.requests[0].json is not None and len(group.requests) == 1


def test_a_key_refused_later_in_a_batch_is_each_remaining_leads_outcome(group, http, an) -> None:
    after_first_answer(http, lambda: group.fail_next(1, status=403, body={"error": "Forbidden"}))

    outcomes = an.upsert([lead(1), lead(2), lead(3)])

    assert outcomes[0].ok
    assert all(isinstance(o.error, UnavailableError) for o in outcomes[1:])


def test_forget_sends_nothing_and_says_to_unsubscribe_by_hand(group, an) -> None:
    with pytest.raises(PermanentError, match="no call to delete a person") as caught:
        an.forget("action_network:1b2c")
    assert "unsubscribe them there by hand" in str(caught.value)
    assert group.requests == []


def test_options_set_the_batch_size_and_unknown_ones_are_refused(group, http) -> None:
    assert connector(group, http, None).batch_size == BATCH_SIZE
    assert connector(group, http, None, options={"batch_size": 3}).batch_size == 3
    with pytest.raises(ValueError, match="tag_prefix"):
        connector(group, http, None, options={"tag_prefix": "rally-"})


def test_the_fake_refuses_what_action_network_does(http) -> None:
    with FakeActionNetwork(rate=None) as group:
        answers = requests_of_each_kind(group, http)
    assert [a.status_code for a in answers] == [200, 400, 400, 400, 400, 400, 401, 405]
    assert all("error" in a.json() for a in answers[1:])


def requests_of_each_kind(group: FakeActionNetwork, http: httpx.Client) -> list[httpx.Response]:
    url, key = group.url + PATH, {"OSDI-API-Token": group.token}

    def person(**fields: Any) -> dict[str, Any]:
        return {"person": {"email_addresses": [{"address": "a@example.org"}], **fields}}

    return [
        http.post(url, json=person(), headers=key),
        http.post(url, json={"add_tags": []}, headers=key),
        http.post(
            url,
            json=person(email_addresses=[{"address": "a@example.org", "status": "bouncing"}]),
            headers=key,
        ),
        http.post(
            url,
            json=person(phone_numbers=[{"number": "2155550100", "number_type": "Home"}]),
            headers=key,
        ),
        http.post(url, json=person(email_addresses=[{"address": "not-an-email"}]), headers=key),
        http.post(url, content=b"person=a", headers=key),
        http.post(url, json=person()),
        http.get(url, headers=key),
    ]


def test_a_404_from_the_signup_route_means_a_wrong_address_and_stops_the_destination(
    group, http, limit
) -> None:
    wrong = connector(group, http, limit, api_url=group.url + "/osdi")

    with pytest.raises(UnavailableError, match="Action Network pa-group") as caught:
        wrong.upsert([lead(1), lead(2)])

    assert "HTTP 404" in str(caught.value) and "API URL" in str(caught.value)
    assert len(group.requests) == 1 and not group.people


def test_check_verifies_the_key_with_one_read_of_the_groups_tags(group, http) -> None:
    readiness = connector(group, http, None).check()

    assert readiness.ready and readiness.verified and readiness.created == ()
    [request] = group.requests
    assert (request.method, request.path, request.status) == ("GET", "/api/v2/tags/", 200)
    assert request.headers["osdi-api-token"] == group.token
    wrong = "an-wrong-key-0000"
    with pytest.raises(UnavailableError, match="API Key invalid") as caught:
        connector(group, http, None, token=wrong).check()
    assert wrong not in said(caught.value)
