"""API tokens: made once and shown once, kept as a hash, scoped to a campaign and to resources,
expiring, and revoked with immediate effect; sign-ins can be ended the same way."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from store.db import transaction
from store.types import utcnow
from tasks.api.tokens import TokenRefused, authenticate
from tests.conftest import SLUG

APPROVER = "dana.okafor@keystoneyouthvote.example.org"


def made(rally, *args: str) -> dict:
    run = rally("tokens", "create", *args, "--json")
    assert run.code == 0, run.err
    return json.loads(run.out)


def check(engine: Engine, secret: str | None, scope: str, campaign_id: int | None, *, later=None):
    """What the API does with a request's token for `scope` on `campaign_id`."""
    with transaction(engine, write=False) as session:
        granted = authenticate(session, secret, scope=scope, now=later or utcnow())
    granted.check_campaign(campaign_id)
    return granted


def campaign_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT id FROM campaigns WHERE slug = :s"), {"s": SLUG}
        ).scalar_one()


def refusal(engine: Engine, secret, scope: str, campaign, **kw) -> TokenRefused:
    with pytest.raises(TokenRefused) as refused:
        check(engine, secret, scope, campaign, **kw)
    return refused.value


def test_a_token_is_shown_once_and_only_its_hash_is_kept(rally, applied, engine) -> None:
    token = made(rally, "n8n", "--scope", "leads:read", "--campaign", SLUG)
    secret = token["secret"]
    assert secret.startswith("rally_") and len(secret) > 40

    listed = rally("tokens", "list", "--json")
    assert listed.code == 0 and secret not in listed.out
    (row,) = json.loads(listed.out)
    assert (row["name"], row["campaign"], row["scopes"], row["state"]) == (
        "n8n",
        SLUG,
        ["leads:read"],
        "active",
    )
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_tokens")).mappings().one()
        audit = "\n".join(str(r) for r in conn.execute(text("SELECT * FROM audit_events")))
    assert secret not in str(dict(stored)) and secret not in audit
    assert "api_token.created" in audit and "staff:test" in audit


def test_a_campaign_token_reaches_its_campaign_and_scopes_only(rally, applied, engine) -> None:
    own = campaign_id(engine)
    secret = made(rally, "sheet", "--scope", "leads:write", "--scope", "campaign:read",
                  "--campaign", SLUG)["secret"]  # fmt: skip

    granted = check(engine, secret, "leads:read", own)  # write includes read
    assert granted.actor == f"token:{granted.token_id}:sheet"
    assert check(engine, secret, "campaign:read", own).campaign_id == own

    assert refusal(engine, secret, "leads:read", own + 1).status == 403  # another campaign
    assert refusal(engine, secret, "campaign:read", None).status == 403  # across campaigns
    lacking = refusal(engine, secret, "reviews:read", own)
    assert lacking.status == 403 and "reviews:read" in str(lacking)
    assert refusal(engine, secret, "campaign:write", own).status == 403  # read is not write


def test_an_all_campaigns_token_must_be_asked_for(rally, applied, engine) -> None:
    neither = rally("tokens", "create", "warehouse", "--scope", "reports:read")
    assert neither.code != 0 and "--all-campaigns" in neither.err
    secret = made(rally, "warehouse", "--scope", "reports:read", "--all-campaigns")["secret"]
    assert check(engine, secret, "reports:read", None).campaign_id is None
    assert check(engine, secret, "reports:read", campaign_id(engine)).name == "warehouse"


def test_revoking_takes_effect_at_once(rally, applied, engine) -> None:
    token = made(rally, "zapier", "--scope", "events:write", "--campaign", SLUG)
    own = campaign_id(engine)
    check(engine, token["secret"], "events:write", own)

    revoked = rally("tokens", "revoke", str(token["id"]))
    assert revoked.code == 0, revoked.err
    refused = refusal(engine, token["secret"], "events:write", own)
    assert refused.status == 401 and "revoked" in str(refused)
    (row,) = json.loads(rally("tokens", "list", "--json").out)
    assert row["state"] == "revoked" and row["revoked_at"]
    assert rally("tokens", "revoke", "999").err.strip() == (
        "error: no API token 999 (`rally tokens list` shows them)"
    )


def test_an_expired_or_unknown_token_is_refused(rally, applied, engine) -> None:
    token = made(rally, "short", "--scope", "runs:read", "--campaign", SLUG, "--days", "1")
    own = campaign_id(engine)
    later = utcnow() + timedelta(days=1, seconds=1)
    assert "expired" in str(refusal(engine, token["secret"], "runs:read", own, later=later))
    assert refusal(engine, "rally_" + "x" * 43, "runs:read", own).status == 401
    assert refusal(engine, None, "runs:read", own).status == 401


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--scope", "leads:delete"], "scope 'leads:delete' is not one of Rally's"),
        ([], "give at least one --scope"),
        (["--scope", "leads:read", "--days", "0"], "--days must be 1 to 365"),
    ],
    ids=["unknown-scope", "no-scope", "no-days"],
)
def test_bad_token_requests_are_named_and_make_nothing(rally, applied, args, says) -> None:
    run = rally("tokens", "create", "bad", "--campaign", SLUG, *args)
    assert run.code != 0 and says in run.err
    assert json.loads(rally("tokens", "list", "--json").out) == []


def test_ending_a_persons_sign_ins_logs_them_out_at_once(rally, applied, engine) -> None:
    from tasks.review.approvers import SESSION_LIFETIME, issue, who

    with transaction(engine) as session:
        cookie = issue(session, APPROVER, kind="session", lifetime=SESSION_LIFETIME, now=utcnow())
    with transaction(engine) as session:
        assert who(session, cookie, kinds=("session",), now=utcnow()) == APPROVER

    ended = rally("tokens", "end-sign-ins", APPROVER.upper())
    assert ended.code == 0 and "1 sign-in(s)" in ended.out
    with transaction(engine) as session:
        assert who(session, cookie, kinds=("session",), now=utcnow()) is None


def test_ending_sign_ins_and_making_tokens_refuse_what_is_not_meant(rally, applied) -> None:
    assert "not an email address" in rally("tokens", "end-sign-ins", " ").err
    both = rally("tokens", "create", "x", "--scope", "leads:read", "--campaign", SLUG,
                 "--all-campaigns")  # fmt: skip
    assert both.code != 0 and "not both" in both.err
