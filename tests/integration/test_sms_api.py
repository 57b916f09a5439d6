"""The SMS adapter over real HTTP against a local fake of Twilio's Messages API: what it sends,
and every refusal mapped onto the error tree with the provider's words, never its auth token."""

import base64
import traceback
from collections.abc import Iterator

import httpx
import pytest

from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.sms import SmsGateway
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.sms_api import FakeSms

TO = "+12155550123"
PATH = f"/2010-04-01/Accounts/{'AC' + '5' * 32}/Messages.json"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def provider(clock: ManualClock) -> Iterator[FakeSms]:
    yield from serving(FakeSms(clock=clock))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def gateway(provider: FakeSms, http: httpx.Client, **changes: str) -> SmsGateway:
    settings = {
        "api_url": provider.url,
        "account_sid": provider.account_sid,
        "auth_token": provider.auth_token,
        "sender": next(iter(provider.senders)),
        **changes,
    }
    return SmsGateway(http, **settings)


@pytest.fixture
def sms(provider: FakeSms, http: httpx.Client) -> SmsGateway:
    return gateway(provider, http)


def test_a_text_is_posted_as_twilio_expects_and_its_sid_returned(provider, sms) -> None:
    sid = sms.send(to=TO, body="You're registered! Reply STOP to opt out.")

    (message,) = provider.messages
    assert sid == message["sid"] and sid.startswith("SM")
    assert (message["to"], message["from"], message["body"]) == (
        TO,
        "+15005550006",
        "You're registered! Reply STOP to opt out.",
    )
    (request,) = provider.requests
    assert (request.method, request.path, request.status) == ("POST", PATH, 201)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "To": TO,
        "From": "+15005550006",
        "Body": "You're registered! Reply STOP to opt out.",
    }
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{provider.account_sid}:{provider.auth_token}"


def test_a_recipient_who_texted_stop_is_a_permanent_error_naming_21610(provider, sms) -> None:
    provider.mark_stopped(TO)
    with pytest.raises(PermanentError) as caught:
        sms.send(to=TO, body="hi")
    assert "Attempt to send to unsubscribed recipient" in str(caught.value)
    assert "code 21610" in str(caught.value)
    assert provider.messages == []


@pytest.mark.parametrize("number", ["2155550123", "+0215555", "+1 215 555 0123", "phone"])
def test_a_number_that_is_not_e164_is_a_permanent_error_naming_21211(sms, number: str) -> None:
    with pytest.raises(PermanentError, match="code 21211"):
        sms.send(to=number, body="hi")


def test_a_sender_the_account_does_not_own_is_a_permanent_error(provider, http) -> None:
    with pytest.raises(PermanentError, match="code 21606"):
        gateway(provider, http, sender="+15559999999").send(to=TO, body="hi")


def test_a_body_over_1600_characters_is_a_permanent_error(provider, sms) -> None:
    sms.send(to=TO, body="x" * 1600)
    with pytest.raises(PermanentError, match="code 21617"):
        sms.send(to=TO, body="x" * 1601)
    assert len(provider.messages) == 1


def test_over_the_rate_limit_is_transient_with_retry_after_in_a_sliding_window(http) -> None:
    clock = ManualClock(start=0)
    with FakeSms(rate=(2, 10.0), sliding=True, clock=clock) as provider:
        sms = gateway(provider, http)
        sms.send(to=TO, body="1")
        clock.advance(5)
        sms.send(to=TO, body="2")
        clock.advance(1)  # t=6: two sent in the last 10 s
        with pytest.raises(TransientError, match="code 20429") as caught:
            sms.send(to=TO, body="3")
        assert caught.value.retry_after == 4  # the first one leaves the window at t=10
        assert not isinstance(caught.value, UnavailableError)
        clock.advance(4)  # t=10
        sms.send(to=TO, body="4")
        with pytest.raises(TransientError):  # the one at t=5 is still in the window
            sms.send(to=TO, body="5")
        assert [m["body"] for m in provider.messages] == ["1", "2", "4"]
        assert provider.rate_limited == 2
        assert [r.status for r in provider.requests] == [201, 201, 429, 201, 429]


def test_a_fixed_window_lets_a_new_batch_through_when_it_ends(http) -> None:
    clock = ManualClock(start=0)
    with FakeSms(rate=(2, 10.0), clock=clock) as provider:
        sms = gateway(provider, http)
        sms.send(to=TO, body="1")
        clock.advance(9)
        sms.send(to=TO, body="2")
        with pytest.raises(TransientError) as caught:
            sms.send(to=TO, body="3")
        assert caught.value.retry_after == 1
        clock.advance(1)
        sms.send(to=TO, body="4")
        sms.send(to=TO, body="5")
        assert provider.rate_limited == 1


def test_a_429_without_retry_after_is_transient_with_none(provider, sms) -> None:
    provider.fail_next(1, status=429, body={"code": 20429, "message": "Too Many Requests"})
    with pytest.raises(TransientError) as caught:
        sms.send(to=TO, body="hi")
    assert caught.value.retry_after is None
    assert "Too Many Requests" in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(provider, sms, status: int) -> None:
    provider.fail_next(1, status=status, body={"code": 20500, "message": "Internal Server Error"})
    with pytest.raises(TransientError) as caught:
        sms.send(to=TO, body="hi")
    assert not isinstance(caught.value, UnavailableError)
    assert sms.send(to=TO, body="again")  # the fault was one request only
    assert len(provider.messages) == 1


def test_a_timeout_is_transient(provider) -> None:
    provider.timeout_next(1)
    with httpx.Client(timeout=0.2) as quick, pytest.raises(TransientError, match="timed out"):
        gateway(provider, quick).send(to=TO, body="hi")
    assert provider.messages == [] and provider.requests[0].status is None


def test_a_dropped_connection_is_transient(provider, sms) -> None:
    provider.drop_next(1)
    with pytest.raises(TransientError, match="connection failed"):
        sms.send(to=TO, body="hi")
    assert provider.messages == []


def test_wrong_credentials_make_the_provider_unavailable_without_showing_the_token(
    provider, http
) -> None:
    wrong = "not-the-auth-token-1234"
    with pytest.raises(UnavailableError, match="code 20003") as caught:
        gateway(provider, http, auth_token=wrong).send(to=TO, body="hi")
    said = f"{caught.value} {caught.value.args!r}" + "".join(
        traceback.format_exception(caught.value)
    )
    assert wrong not in said and provider.auth_token not in said


def test_the_auth_token_is_blanked_out_of_the_providers_words(provider, sms) -> None:
    provider.fail_next(1, status=400, body={"code": 21999, "message": f"odd {provider.auth_token}"})
    with pytest.raises(PermanentError) as caught:
        sms.send(to=TO, body="hi")
    assert provider.auth_token not in str(caught.value)
    assert "[auth token]" in str(caught.value) and "code 21999" in str(caught.value)


def test_a_403_is_a_refusal_of_this_message_not_of_our_login(provider, sms) -> None:
    provider.fail_next(
        1,
        status=403,
        body={
            "code": 21408,
            "message": "Permission to send an SMS has not been enabled for the region",
        },
    )
    with pytest.raises(PermanentError, match="code 21408"):
        sms.send(to=TO, body="hi")


def test_the_fake_answers_404_for_unknown_paths_and_405_for_other_methods(provider, http) -> None:
    assert http.get(f"{provider.url}/2010-04-01/Accounts/x/Calls.json").status_code == 404
    answer = http.get(provider.url + PATH)
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert [r.status for r in provider.requests] == [404, 405]
