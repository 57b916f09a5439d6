"""`rally tiktok` against the local TikTok fake: connecting a business account (the code pasted
at the prompt or given, the tokens kept sealed), registering the webhooks, and the status of
both; with what is missing or wrong named."""

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import select

from config.errors import RallyError
from config.settings import get_settings
from store.db import transaction
from store.models import AuditEvent, TikTokAccount
from store.types import utcnow
from tasks.due import has_work
from tasks.engagement.accounts import code_from
from tests.conftest import SLUG
from tests.fakes.http_server import serving
from tests.fakes.tiktok_api import FakeTikTok

REDIRECT = "https://rally.example.org/tiktok/connected"


@pytest.fixture
def api() -> Iterator[FakeTikTok]:
    yield from serving(FakeTikTok())


@pytest.fixture
def tiktok_env(monkeypatch: pytest.MonkeyPatch, settings: Any, api: FakeTikTok) -> None:
    """The environment of a Rally with a TikTok app (the fake's) and a secret key."""
    for name, value in {
        "RALLY_SECRET_KEY": "a-secret-key-of-more-than-32-characters",
        "RALLY_TIKTOK_CLIENT_KEY": api.client_key,
        "RALLY_TIKTOK_CLIENT_SECRET": api.client_secret,
        "RALLY_TIKTOK_API_URL": api.api_url,
        "RALLY_TIKTOK_REDIRECT_URI": REDIRECT,
        "RALLY_PUBLIC_URL": "https://rally.example.org",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def accounts(engine: Any) -> list[TikTokAccount]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(TikTokAccount)))


def test_connecting_prints_where_to_authorize_and_keeps_the_accounts_tokens_sealed(
    rally, applied, engine, api, tiktok_env, monkeypatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(api.authorize() + "\n"))
    assert not has_work("tiktok-poll", engine, utcnow())  # `rally serve` polls nothing yet

    run = rally("tiktok", "connect", "--campaign", SLUG, "--creator", "maya.votes.pa",
                "--region", "us")  # fmt: skip

    assert run.code == 0, run.err
    assert "https://www.tiktok.com/v2/auth/authorize/?client_key=rally-client-key" in run.out
    assert "redirect_uri=https%3A%2F%2Frally.example.org%2Ftiktok%2Fconnected" in run.out
    assert f"Connected TikTok business account {api.business_id}" in run.out
    assert f"@maya.votes.pa's on {SLUG}" in run.out
    (row,) = accounts(engine)
    issued = [t for t in api.grants if t != api.access_token]
    assert row.region == "US" and row.member_id is not None
    assert issued[0] not in row.access_token and issued[0] not in run.out
    with transaction(engine, write=False) as session:
        actions = session.exec(select(AuditEvent.action)).all()
    assert "tiktok.connected" in actions
    assert has_work("tiktok-poll", engine, utcnow())

    status = json.loads(rally("tiktok", "status", "--json").out)
    (shown,) = status["accounts"]
    assert (shown["business_id"], shown["creator"], shown["campaign"]) == (
        api.business_id,
        "maya.votes.pa",
        SLUG,
    )
    assert (shown["access_expired"], shown["missing_scopes"], shown["dms"]) == (False, [], True)
    assert status["subscriptions"]["COMMENT"] == {"callback_url": None, "ours": False}


def test_a_code_given_as_the_whole_address_and_scopes_not_granted_are_reported(
    rally, applied, engine, api, tiktok_env
) -> None:
    code = api.authorize(scopes=("user.info.basic", "video.list", "comment.list"))
    pasted = f"{REDIRECT}?code={code}&scopes=user.info.basic%2Cvideo.list&state=earlier"

    run = rally("tiktok", "connect", "--code", pasted)

    assert run.code == 0, run.err
    assert "for every campaign" in run.out
    assert "Not granted: video.insights, comment.list.manage" in run.out
    assert rally("tiktok", "connect", "--code", pasted).code == 1  # a code is good once
    assert len(accounts(engine)) == 1


def test_subscribing_registers_both_kinds_of_webhooks_at_rallys_public_address(
    rally, applied, api, tiktok_env, monkeypatch
) -> None:
    run = rally("tiktok", "subscribe")

    assert run.code == 0, run.err
    url = "https://rally.example.org/webhooks/tiktok"
    assert api.webhooks == {"COMMENT": url, "DIRECT_MESSAGE": url}
    assert f"DIRECT_MESSAGE: webhooks go to {url}" in run.out
    status = rally("tiktok", "status")
    assert f"COMMENT webhooks: registered, to {url}" in status.out
    assert "No TikTok account connected: run `rally tiktok connect`." in status.out

    monkeypatch.setenv("RALLY_PUBLIC_URL", "http://127.0.0.1:8000")
    get_settings.cache_clear()
    refused = rally("tiktok", "subscribe")
    assert refused.code == 1 and "only to HTTPS addresses" in refused.err


@pytest.mark.parametrize(
    ("unset", "said"),
    [
        ("RALLY_SECRET_KEY", "RALLY_SECRET_KEY must be at least 32 characters"),
        ("RALLY_TIKTOK_REDIRECT_URI", "set RALLY_TIKTOK_REDIRECT_URI"),
        ("RALLY_TIKTOK_CLIENT_KEY", "set RALLY_TIKTOK_CLIENT_KEY"),
    ],
)
def test_connecting_without_what_it_needs_says_what_to_set(
    rally, applied, engine, api, tiktok_env, monkeypatch, unset: str, said: str
) -> None:
    monkeypatch.setenv(unset, "")
    get_settings.cache_clear()
    run = rally("tiktok", "connect", "--code", api.authorize())
    assert run.code == 1 and said in run.err
    assert accounts(engine) == []


def test_connecting_for_someone_not_on_the_roster_names_them(
    rally, applied, engine, api, tiktok_env
) -> None:
    run = rally("tiktok", "connect", "--campaign", SLUG, "--creator", "nobody.here",
                "--code", api.authorize())  # fmt: skip
    assert run.code == 1 and "--creator: @nobody.here is not on" in run.err
    assert api.requests == [] and accounts(engine) == []


def test_the_pasted_address_must_carry_our_state_and_a_code() -> None:
    assert code_from("  auth-abc  ", "s1") == "auth-abc"
    assert code_from(f"{REDIRECT}?code=auth-abc&state=s1", "s1") == "auth-abc"
    for pasted, said in [
        (f"{REDIRECT}?code=auth-abc&state=other", "another authorization"),
        (f"{REDIRECT}?error=access_denied&error_description=User+denied", "User denied"),
        (f"{REDIRECT}?state=s1", "carries no code"),
    ]:
        with pytest.raises(RallyError, match=said):
            code_from(pasted, "s1")
