"""The HubSpot connector over real HTTP against a local fake of an account's CRM v3 contacts API:
what a lead becomes, upserts without duplicates, per-contact refusals in a 207, leads that never
go, the account's rate limit (its headers, its 429s, pacing 100 requests per 10 seconds),
whole-call failures and forget."""

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from integrations.crm import RateLimit
from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.hubspot import BATCH_SIZE, RATE, HubSpot
from tests.fakes import crm_people
from tests.fakes.crm_people import said
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.hubspot_api import GDPR_DELETE, GROUPS, PROPERTIES, UPSERT, FakeHubSpot
from tests.helpers import HUBSPOT_PROPERTIES

RATE_HEADERS = {
    "X-HubSpot-RateLimit-Max": "100",
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
}
TOO_MANY = {
    "status": "error",
    "message": "You have reached your ten_secondly_rolling limit.",
    "errorType": "RATE_LIMIT",
    "correlationId": "c0ffee00-0000-4000-8000-000000000000",
    "policyName": "TEN_SECONDLY_ROLLING",
    "groupName": "publicapi:private-app-api-ten-secondly",
}

lead = partial(
    crm_people.lead,
    tags=("first-vote", "creator-maya"),
    sms_consent=False,
    source_code="maya-tt-01",
    first_source_code="maya-tt-00",
    creator="maya",
    custom_fields={"rally_shirt_size": "M"},
)
clock, http = crm_people.clock, crm_people.http
limit = crm_people.limit_at(RATE)


WRITTEN = HUBSPOT_PROPERTIES  # the contact properties Rally writes by default
MAPPED = ("rally_shirt_size", "rally_ward", "rally_note", "rally_volunteer", "rally_age")


@pytest.fixture
def account(clock: ManualClock) -> Iterator[FakeHubSpot]:
    """An account where Rally's properties were created before (see the check's tests)."""
    yield from serving(FakeHubSpot(clock=clock, properties=WRITTEN + MAPPED))


@pytest.fixture
def bare(clock: ManualClock) -> Iterator[FakeHubSpot]:
    """A new account: HubSpot's own contact properties only."""
    yield from serving(FakeHubSpot(clock=clock))


def connector(
    account: FakeHubSpot, http: httpx.Client, limit: RateLimit | None, **changes: Any
) -> HubSpot:
    settings: dict[str, Any] = {
        "name": "pa-hubspot",
        "api_url": account.url,
        "token": account.token,
        "limit": limit,
        **changes,
    }
    return HubSpot(http, **settings)


@pytest.fixture
def hubspot(account: FakeHubSpot, http: httpx.Client, limit: RateLimit) -> HubSpot:
    return connector(account, http, limit)


def one(**changes: Any) -> dict[str, Any]:
    """One input as HubSpot takes it, sent straight to the fake."""
    return {"id": "a@example.org", "idProperty": "email", "properties": {}, **changes}


def test_a_batch_is_upserted_by_email_with_its_properties_and_ids_returned(account, hubspot):
    outcomes = hubspot.upsert([lead(1), lead(2, tags=(), email_consent=False, sms_consent=True)])

    assert [o.key for o in outcomes] == ["lead-1", "lead-2"] and all(o.ok for o in outcomes)
    assert set(account.contacts) == {"voter1@example.org", "voter2@example.org"}
    first, second = account.contact("voter1@example.org"), account.contact("voter2@example.org")
    assert first is not None and second is not None
    assert [o.remote_id for o in outcomes] == [first["id"], second["id"]]
    assert first["id"] != second["id"]
    assert first["properties"] == {
        "email": "voter1@example.org",
        "firstname": "Ada",
        "lastname": "Voter1",
        "phone": "+12155550101",
        "zip": "19104",
        "rally_tags": "first-vote;creator-maya",
        "rally_email_consent": "granted",
        "rally_sms_consent": "revoked",
        "rally_source_code": "maya-tt-01",
        "rally_first_source_code": "maya-tt-00",
        "rally_creator": "maya",
        "rally_campaign": "first-vote-pa-2027",
        "rally_shirt_size": "M",
    }
    assert "rally_tags" not in second["properties"]
    assert (
        second["properties"]["rally_email_consent"],
        second["properties"]["rally_sms_consent"],
    ) == (
        "revoked",
        "granted",
    )
    (request,) = account.requests
    assert (request.method, request.path, request.status) == ("POST", UPSERT, 200)
    assert request.headers["authorization"] == f"Bearer {account.token}"
    assert request.headers["content-type"] == "application/json"
    assert [(i["id"], i["idProperty"]) for i in request.json["inputs"]] == [
        ("voter1@example.org", "email"),
        ("voter2@example.org", "email"),
    ]
    assert request.json["inputs"][0]["properties"] == first["properties"]
    assert dict(account.created) == {"voter1@example.org": 1, "voter2@example.org": 1}


def test_repeating_a_batch_updates_the_same_contacts_and_creates_none(account, hubspot):
    first = hubspot.upsert([lead(1), lead(2)])
    again = hubspot.upsert([lead(1, postal_code="19103"), lead(2)])

    assert [o.remote_id for o in again] == [o.remote_id for o in first]
    assert len(account.contacts) == 2
    assert dict(account.created) == {"voter1@example.org": 1, "voter2@example.org": 1}
    assert dict(account.updated) == {"voter1@example.org": 1, "voter2@example.org": 1}
    contact = account.contact("voter1@example.org")
    assert contact is not None and contact["properties"]["zip"] == "19103"


def test_results_are_matched_to_leads_by_email_whatever_its_case(account, hubspot) -> None:
    (outcome,) = hubspot.upsert([lead(1, email="Ada.Voter@Example.ORG")])

    contact = account.contact("ada.voter@example.org")
    assert contact is not None and outcome.ok and outcome.remote_id == contact["id"]
    assert account.requests[0].json["inputs"][0]["id"] == "Ada.Voter@Example.ORG"


def test_unknown_consent_and_missing_fields_are_left_out_and_values_sent_as_text(
    account, hubspot
) -> None:
    bare = lead(
        phone=None,
        given_name=None,
        family_name=None,
        postal_code=None,
        tags=(),
        email_consent=None,
        sms_consent=None,
        source_code=None,
        first_source_code=None,
        creator=None,
        custom_fields={
            "rally_ward": None,
            "rally_note": "",
            "rally_volunteer": True,
            "rally_age": 19,
        },
    )

    (outcome,) = hubspot.upsert([bare])

    assert outcome.ok
    assert account.requests[0].json["inputs"][0]["properties"] == {
        "email": "voter1@example.org",
        "rally_campaign": "first-vote-pa-2027",
        "rally_volunteer": "true",
        "rally_age": "19",
    }


def test_custom_fields_cannot_override_the_email_or_a_consent(account, hubspot) -> None:
    custom = {"email": "other@example.org", "rally_email_consent": "granted", "lastname": "X"}

    hubspot.upsert([lead(1, email_consent=False, family_name=None, custom_fields=custom)])

    properties = account.requests[0].json["inputs"][0]["properties"]
    assert properties["email"] == "voter1@example.org"
    assert properties["rally_email_consent"] == "revoked"
    assert properties["lastname"] == "X"


def test_the_property_names_for_tags_and_consent_can_be_set(http, limit, clock) -> None:
    names = {"email", "campaign_tags", "email_ok", "sms_ok", "rally_campaign"}
    with FakeHubSpot(properties=names, clock=clock) as account:
        options = {
            "tags_property": "campaign_tags",
            "email_consent_property": "email_ok",
            "sms_consent_property": "sms_ok",
        }
        hubspot = connector(account, http, limit, options=options)
        only = {"email", "campaign_tags", "email_ok", "sms_ok", "rally_campaign"}
        plain = lead(
            phone=None,
            given_name=None,
            family_name=None,
            postal_code=None,
            source_code=None,
            first_source_code=None,
            creator=None,
            custom_fields={},
        )

        (outcome,) = hubspot.upsert([plain])

        assert outcome.ok
        contact = account.contact("voter1@example.org")
        assert contact is not None and set(contact["properties"]) == only
        assert contact["properties"]["campaign_tags"] == "first-vote;creator-maya"
        assert (contact["properties"]["email_ok"], contact["properties"]["sms_ok"]) == (
            "granted",
            "revoked",
        )


def test_a_property_the_account_lacks_stops_the_destination_in_hubspots_words(
    account, hubspot
) -> None:
    with pytest.raises(UnavailableError) as caught:
        hubspot.upsert([lead(1), lead(2, custom_fields={"shoe_size": "9"}), lead(3)])

    error = str(caught.value)
    assert "does not exist" in error and "shoe_size" in error
    assert "PROPERTY_DOESNT_EXIST" in error and "VALIDATION_ERROR" in error
    assert "rally leads check" in error and "--create-missing" in error
    assert account.requests[0].status == 400 and account.contacts == {}


def test_in_a_207_exactly_the_failed_leads_get_errors_and_can_be_retried_once_fixed(
    account, hubspot
) -> None:
    account.reject_email("voter3@example.org", "Email address is on the blocked list")
    batch = [lead(1), lead(2, email="not-an-email"), lead(3, email="Voter3@Example.org"), lead(4)]

    outcomes = {o.key: o for o in hubspot.upsert(batch)}

    assert outcomes["lead-1"].ok and outcomes["lead-4"].ok
    assert "Email address not-an-email is invalid" in str(outcomes["lead-2"].error)
    assert "Email address is on the blocked list (VALIDATION_ERROR)" in str(
        outcomes["lead-3"].error
    )
    assert all(isinstance(outcomes[k].error, PermanentError) for k in ("lead-2", "lead-3"))
    assert account.requests[0].status == 207 and len(account.requests) == 1
    assert set(account.contacts) == {"voter1@example.org", "voter4@example.org"}

    account.accept_email("voter3@example.org")
    (retried,) = hubspot.upsert([lead(3)])
    assert retried.ok and account.created["voter3@example.org"] == 1


def test_a_lead_without_email_never_reaches_hubspot(account, hubspot) -> None:
    outcomes = hubspot.upsert([lead(1, email=None), lead(2)])

    error = outcomes[0].error
    assert isinstance(error, PermanentError)
    assert "no email address: HubSpot upserts contacts by email" in str(error)
    assert outcomes[1].ok
    assert [i["id"] for i in account.requests[0].json["inputs"]] == ["voter2@example.org"]

    (alone,) = hubspot.upsert([lead(3, email="")])
    assert isinstance(alone.error, PermanentError) and len(account.requests) == 1


def test_a_second_lead_with_the_same_email_waits_for_a_later_batch(account, hubspot) -> None:
    outcomes = hubspot.upsert([lead(1), lead(2, email="VOTER1@example.org")])

    assert outcomes[0].ok
    assert type(outcomes[1].error) is TransientError and "same email" in str(outcomes[1].error)
    assert len(account.requests[0].json["inputs"]) == 1 and account.requests[0].status == 200


def test_a_lead_missing_from_hubspots_answer_is_transient(account, hubspot) -> None:
    result = {"id": "77", "properties": {"email": "voter1@example.org"}}
    account.fail_next(1, status=200, body={"status": "COMPLETE", "results": [result]})

    outcomes = hubspot.upsert([lead(1), lead(2)])

    assert outcomes[0].remote_id == "77"
    assert type(outcomes[1].error) is TransientError
    assert "not in HubSpot's answer" in str(outcomes[1].error)


def test_a_batch_hubspot_refuses_as_a_whole_is_raised_as_permanent(account, hubspot) -> None:
    account.fail_next(
        1,
        status=400,
        body={"status": "error", "message": "Duplicate IDs found", "category": "VALIDATION_ERROR"},
    )
    with pytest.raises(PermanentError, match=r"Duplicate IDs found \(VALIDATION_ERROR\)"):
        hubspot.upsert([lead(1)])


def test_the_batch_size_is_capped_at_100_and_unknown_options_are_refused(account, http, limit):
    assert BATCH_SIZE == 100
    assert connector(account, http, limit).batch_size == 100
    assert connector(account, http, limit, options={"batch_size": 7}).batch_size == 7
    assert connector(account, http, limit, options={"batch_size": 5000}).batch_size == 100
    with pytest.raises(ValueError, match="tags"):
        connector(account, http, limit, options={"tags": "x"})
    with pytest.raises(ValueError, match="at most 100"):
        connector(account, http, limit).upsert([lead(n) for n in range(101)])
    assert account.requests == []


def test_a_full_batch_of_100_goes_in_one_call(account, hubspot) -> None:
    outcomes = hubspot.upsert([lead(n, email=f"person{n}@example.org") for n in range(100)])

    assert all(o.ok for o in outcomes) and len({o.remote_id for o in outcomes}) == 100
    assert len(account.requests) == 1 and len(account.contacts) == 100


def test_the_accounts_429_is_transient_with_retry_after_and_pauses_the_limit(
    clock, http, limit
) -> None:
    with FakeHubSpot(rate=(2, 10.0), clock=clock, properties=WRITTEN + MAPPED) as account:
        other = {"Authorization": f"Bearer {account.token}"}  # another app spends the budget
        for _ in range(2):
            http.post(account.url + UPSERT, json={"inputs": [one()]}, headers=other)
        clock.advance(4)
        hubspot = connector(account, http, limit)

        with pytest.raises(TransientError, match="ten_secondly_rolling") as caught:
            hubspot.upsert([lead(1)])
        assert caught.value.retry_after == 6 and not isinstance(caught.value, UnavailableError)
        assert "RATE_LIMIT" in str(caught.value) and "HTTP 429" in str(caught.value)

        (outcome,) = hubspot.upsert([lead(1)])
        assert outcome.ok and limit.waited == pytest.approx(6)
        assert [r.status for r in account.requests] == [200, 200, 429, 200]
        assert account.requests[-1].at == pytest.approx(10)


def test_a_429_without_retry_after_asks_to_wait_for_the_interval(account, hubspot, limit):
    account.fail_next(1, status=429, body=TOO_MANY, headers=RATE_HEADERS)

    with pytest.raises(TransientError) as caught:
        hubspot.upsert([lead(1)])
    assert caught.value.retry_after == 10

    assert hubspot.upsert([lead(1)])[0].ok
    assert limit.waited == pytest.approx(10)


def test_a_budget_another_app_spent_costs_one_429_then_the_limit_waits_it_out(
    clock, http, limit
) -> None:
    with FakeHubSpot(rate=(2, 10.0), clock=clock, properties=WRITTEN + MAPPED) as account:
        hubspot = connector(account, http, limit)
        clock.advance(3)
        for n in (1, 2):  # the account's budget is 2; Rally's own limit does not know
            assert hubspot.upsert([lead(n)])[0].ok
        assert account.requests[-1].headers  # answered with Remaining 0: no pause on that alone
        assert limit.waited == 0

        with pytest.raises(TransientError) as caught:
            hubspot.upsert([lead(3)])
        assert caught.value.retry_after == 10
        assert hubspot.upsert([lead(3)])[0].ok

        assert [r.status for r in account.requests] == [200, 200, 429, 200]
        assert limit.waited == pytest.approx(10) and account.requests[3].at == pytest.approx(13)


def test_the_rate_limit_paces_100_requests_per_10_seconds_without_a_429(clock, account, limit):
    with httpx.Client(timeout=5) as http:
        hubspot = connector(account, http, limit)
        for n in range(250):
            (outcome,) = hubspot.upsert([lead(n, email=f"person{n}@example.org")])
            assert outcome.ok

    arrived = [r.at for r in account.requests]
    assert account.rate_limited == 0 and len(arrived) == 250
    for i in range(100, 250):
        assert arrived[i] - arrived[i - 100] >= 10
    assert 20 <= clock() <= 21


def test_without_the_limit_the_fake_refuses_the_101st_request_in_10_seconds(account, http):
    hubspot = connector(account, http, None)
    for n in range(100):
        hubspot.upsert([lead(n)])

    with pytest.raises(TransientError):
        hubspot.upsert([lead(100)])
    assert account.rate_limited == 1


@pytest.mark.parametrize("fault", ["503", "500", "502-html", "timeout", "drop"])
def test_a_failure_of_hubspot_is_raised_as_transient(account, limit, fault) -> None:
    if fault == "timeout":
        account.timeout_next(1)
    elif fault == "drop":
        account.drop_next(1)
    elif fault == "502-html":
        account.fail_next(1, status=502, body="<html>Bad Gateway</html>")
    else:
        account.fail_next(
            1, status=int(fault), body={"status": "error", "message": "internal error"}
        )

    with httpx.Client(timeout=0.5) as quick, pytest.raises(TransientError) as caught:
        connector(account, quick, limit).upsert([lead(1), lead(2)])

    assert not isinstance(caught.value, UnavailableError)
    assert len(account.requests) == 1 and account.contacts == {}


def test_a_refused_token_makes_hubspot_unavailable_without_showing_it(account, http, limit):
    wrong = "pat-na1-wrong-0000-0000"

    with pytest.raises(UnavailableError, match="Authentication credentials not found") as caught:
        connector(account, http, limit, token=wrong).upsert([lead(1)])

    assert "INVALID_AUTHENTICATION" in str(caught.value) and "HTTP 401" in str(caught.value)
    assert wrong not in said(caught.value) and account.token not in said(caught.value)
    assert account.contacts == {}


def test_the_token_is_blanked_out_of_hubspots_words(account, hubspot) -> None:
    account.fail_next(1, status=400, body={"message": f"bad header Bearer {account.token}"})
    with pytest.raises(PermanentError) as caught:
        hubspot.upsert([lead(1)])
    assert account.token not in said(caught.value) and "[secret]" in str(caught.value)

    account.fail_next(
        1,
        status=207,
        body={
            "status": "COMPLETE",
            "results": [],
            "errors": [
                {"message": f"odd {account.token}", "context": {"ids": ["voter1@example.org"]}}
            ],
        },
    )
    (outcome,) = hubspot.upsert([lead(1)])
    assert outcome.error is not None and account.token not in said(outcome.error)


def test_forget_gdpr_deletes_the_contact_and_a_gone_one_is_fine(account, hubspot) -> None:
    (outcome,) = hubspot.upsert([lead(1)])
    assert outcome.remote_id is not None

    hubspot.forget(outcome.remote_id)
    hubspot.forget(outcome.remote_id)

    assert account.contacts == {}
    deletes = account.requests_to(GDPR_DELETE)
    assert [(r.json, r.status) for r in deletes] == [
        ({"objectId": outcome.remote_id}, 204),
        ({"objectId": outcome.remote_id}, 404),
    ]
    assert deletes[0].headers["authorization"] == f"Bearer {account.token}"


def test_forget_raises_when_hubspot_fails_or_refuses_the_token(account, hubspot, http, limit):
    (outcome,) = hubspot.upsert([lead(1)])
    assert outcome.remote_id is not None
    account.fail_next(1, status=503, body={"status": "error", "message": "unavailable"})
    with pytest.raises(TransientError):
        hubspot.forget(outcome.remote_id)
    with pytest.raises(UnavailableError):
        connector(account, http, limit, token="wrong").forget(outcome.remote_id)
    assert "voter1@example.org" in account.contacts


def test_the_fake_refuses_what_hubspot_does_and_sends_its_rate_limit_headers(account, http):
    auth = {"Authorization": f"Bearer {account.token}"}
    url = account.url + UPSERT

    answers = [
        http.post(url, json={"inputs": [one()]}, headers=auth),
        http.post(url, json={"inputs": []}, headers=auth),
        http.post(
            url, json={"inputs": [one(id=f"p{n}@example.org") for n in range(101)]}, headers=auth
        ),
        http.post(url, json={"records": [one()]}, headers=auth),
        http.post(url, content=b"{not json", headers={**auth, "Content-Type": "application/json"}),
        http.post(url, json={"inputs": [one(idProperty="firstname")]}, headers=auth),
        http.post(url, json={"inputs": [one(), one(id="A@example.org")]}, headers=auth),
        http.post(url, json={"inputs": [one()]}),
        http.get(url, headers=auth),
    ]

    assert [a.status_code for a in answers] == [200, 400, 400, 400, 400, 400, 400, 401, 405]
    assert all(a.json()["category"] == "VALIDATION_ERROR" for a in answers[1:7])
    assert answers[7].json()["category"] == "INVALID_AUTHENTICATION"
    assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == [
        str(99 - i) for i in range(9)
    ]
    assert all(a.headers["X-HubSpot-RateLimit-Max"] == "100" for a in answers)
    assert all(a.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000" for a in answers)
    assert set(account.contacts) == {"a@example.org"}


def test_the_fake_answers_a_mixed_batch_with_207_and_hubspots_shapes(account, http) -> None:
    auth = {"Authorization": f"Bearer {account.token}"}
    inputs = [
        {"id": "a@example.org", "idProperty": "email", "properties": {"firstname": "A"}},
        {"id": "b@example", "idProperty": "email", "properties": {"firstname": "B"}},
        {"id": "c@example.org", "idProperty": "email", "properties": {"email": "d@example.org"}},
    ]

    answer = http.post(account.url + UPSERT, json={"inputs": inputs}, headers=auth)

    assert answer.status_code == 207
    body = answer.json()
    assert body["status"] == "COMPLETE" and body["numErrors"] == 2
    assert {"startedAt", "completedAt"} <= set(body)
    (result,) = body["results"]
    assert result["properties"]["email"] == "a@example.org" and result["new"] is True
    assert result["archived"] is False and result["id"] == account.contacts["a@example.org"]["id"]
    assert [e["context"] for e in body["errors"]] == [
        {"ids": ["b@example"]},
        {"ids": ["c@example.org"]},
    ]
    assert all(
        e["status"] == "error" and e["category"] == "VALIDATION_ERROR" for e in body["errors"]
    )
    assert "INVALID_EMAIL" in body["errors"][0]["message"]


def test_a_404_from_hubspots_routes_means_a_wrong_address_and_stops_the_destination(
    account, http, limit
) -> None:
    wrong = connector(account, http, limit, api_url=account.url + "/hubapi")

    with pytest.raises(UnavailableError, match="HubSpot pa-hubspot") as caught:
        wrong.upsert([lead(1), lead(2)])
    assert "HTTP 404" in str(caught.value) and "API URL" in str(caught.value)
    with pytest.raises(UnavailableError, match="API URL"):
        wrong.forget("1001")  # not taken for a contact that is already gone

    assert [r.status for r in account.requests] == [404, 404] and account.contacts == {}


def test_a_new_account_has_hubspots_own_properties_and_refuses_a_batch_naming_others(
    bare, http
) -> None:
    auth = {"Authorization": f"Bearer {bare.token}"}
    listed = http.get(bare.url + PROPERTIES, headers=auth)
    assert listed.status_code == 200
    names = {p["name"] for p in listed.json()["results"]}
    assert {"email", "firstname", "lastname", "phone", "zip", "city"} <= names
    assert not any(name.startswith("rally_") for name in names)
    assert all(p["hubspotDefined"] for p in listed.json()["results"])

    inputs = [
        one(properties={"firstname": "A", "rally_tags": "x", "rally_creator": "maya"}),
        one(id="b@example.org", properties={"rally_tags": "y"}),
    ]
    answer = http.post(bare.url + UPSERT, json={"inputs": inputs}, headers=auth)

    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"
    message = answer.json()["message"]
    assert message.startswith("Property values were not valid: ")
    details = json.loads(message.removeprefix("Property values were not valid: "))
    assert [(d["name"], d["error"]) for d in details] == [
        ("rally_tags", "PROPERTY_DOESNT_EXIST"),
        ("rally_creator", "PROPERTY_DOESNT_EXIST"),
    ]
    assert details[0]["message"] == 'Property "rally_tags" does not exist'
    assert bare.contacts == {}


def test_check_names_each_property_rally_writes_that_the_account_lacks_and_creates_none(
    bare, http
) -> None:
    hubspot = connector(bare, http, None)

    readiness = hubspot.check(fields=["rally_shirt_size", "city"])  # city is HubSpot's own

    assert not readiness.ready and readiness.created == () and readiness.problems == ()
    assert [m.split(" ")[0] for m in readiness.missing] == [*WRITTEN, "rally_shirt_size"]
    consent = next(m for m in readiness.missing if m.startswith("rally_email_consent"))
    assert "granted" in consent and "revoked" in consent and "rally" in consent
    assert [(r.method, r.path) for r in bare.requests] == [("GET", PROPERTIES)]
    assert bare.property("rally_tags") is None


def test_check_with_create_missing_creates_them_in_a_rally_group_and_leads_go_in(
    bare, http, limit
) -> None:
    hubspot = connector(bare, http, limit)
    with pytest.raises(UnavailableError, match="PROPERTY_DOESNT_EXIST"):
        hubspot.upsert([lead(1)])

    readiness = hubspot.check(create_missing=True, fields=["rally_shirt_size"])

    assert readiness.ready and readiness.missing == () and readiness.problems == ()
    assert list(readiness.created) == [*WRITTEN, "rally_shirt_size"]
    assert bare.groups["rally"]["label"] == "Rally"
    consent = bare.property("rally_email_consent")
    assert consent is not None
    assert (consent["type"], consent["fieldType"], consent["groupName"]) == (
        "enumeration",
        "select",
        "rally",
    )
    assert [o["value"] for o in consent["options"]] == ["granted", "revoked"]
    tags = bare.property("rally_tags")
    assert tags is not None and (tags["type"], tags["fieldType"]) == ("string", "text")
    assert not tags["hubspotDefined"]

    (outcome,) = hubspot.upsert([lead(1)])
    assert outcome.ok
    contact = bare.contact("voter1@example.org")
    assert contact is not None and contact["properties"]["rally_sms_consent"] == "revoked"

    again = hubspot.check(create_missing=True, fields=["rally_shirt_size"])
    assert again.ready and again.created == ()
    assert len(bare.requests_to(PROPERTIES, "POST")) == 8  # each created once
    assert len(bare.requests_to(GROUPS, "POST")) == 1


def test_check_reports_a_consent_property_whose_type_refuses_rallys_values(bare, http) -> None:
    yes_no = {
        "name": "rally_email_consent",
        "label": "Email OK",
        "type": "bool",
        "fieldType": "booleancheckbox",
        "groupName": "contactinformation",
        "options": [
            {"label": "Yes", "value": "true", "displayOrder": 0},
            {"label": "No", "value": "false", "displayOrder": 1},
        ],
    }
    auth = {"Authorization": f"Bearer {bare.token}"}
    assert http.post(bare.url + PROPERTIES, json=yes_no, headers=auth).status_code == 201
    answer = http.post(
        bare.url + UPSERT,
        json={"inputs": [one(properties={"rally_email_consent": "granted"})]},
        headers=auth,
    )
    assert answer.status_code == 400 and "INVALID_OPTION" in answer.json()["message"]

    readiness = connector(bare, http, None).check(create_missing=True)

    [problem] = readiness.problems
    assert "rally_email_consent" in problem and "granted" in problem
    assert not readiness.ready and "rally_email_consent" not in readiness.created
    assert "rally_tags" in readiness.created


def test_check_raises_a_refused_token_and_a_missing_scope_in_hubspots_words(bare, http):
    wrong = "pat-na1-wrong-0000-0000"
    with pytest.raises(UnavailableError, match="INVALID_AUTHENTICATION") as caught:
        connector(bare, http, None, token=wrong).check()
    assert "HTTP 401" in str(caught.value) and wrong not in said(caught.value)

    bare.schema_writable = False
    with pytest.raises(UnavailableError, match="MISSING_SCOPES"):
        connector(bare, http, None).check(create_missing=True)
    assert bare.property("rally_tags") is None


def test_the_fake_refuses_properties_as_hubspot_does(bare, http) -> None:
    auth = {"Authorization": f"Bearer {bare.token}"}

    def prop(**changes: Any) -> dict[str, Any]:
        return {
            "name": "rally_note",
            "label": "Rally note",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
            **changes,
        }

    answers = [
        http.post(bare.url + PROPERTIES, json=prop(), headers=auth),
        http.post(bare.url + PROPERTIES, json=prop(), headers=auth),
        http.post(bare.url + PROPERTIES, json=prop(name="Rally Note"), headers=auth),
        http.post(bare.url + PROPERTIES, json=prop(name="x", fieldType="select"), headers=auth),
        http.post(bare.url + PROPERTIES, json=prop(name="y", groupName="nowhere"), headers=auth),
        http.post(bare.url + PROPERTIES, json=prop(name="z", type="enumeration"), headers=auth),
        http.post(bare.url + PROPERTIES, json=prop(name="w")),
        http.get(bare.url + GROUPS + "/rally", headers=auth),
        http.post(bare.url + GROUPS, json={"name": "rally", "label": "Rally"}, headers=auth),
        http.get(bare.url + GROUPS + "/rally", headers=auth),
    ]

    assert [a.status_code for a in answers] == [201, 409, 400, 400, 400, 400, 401, 404, 201, 200]
    assert answers[1].json()["category"] == "OBJECT_ALREADY_EXISTS"
    assert all(a.json()["category"] == "VALIDATION_ERROR" for a in answers[2:6])
    assert answers[0].json()["name"] == "rally_note" and answers[9].json()["name"] == "rally"
