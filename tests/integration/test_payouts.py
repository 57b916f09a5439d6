"""Paying creators, as staff and the treasurer meet it: what a creator earned waits for staff
approval (two different people from the campaign's threshold up), and a payout run pays each
approved amount through Stripe once: through its rate limit and its errors, a refused account,
a webhook that comes before the API's answer, and a run killed at any point."""

import json
import random
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select
from tenacity import wait_none

from config.settings import get_settings
from store.db import open_store, transaction
from store.models import AuditEvent, Campaign, Creator, LedgerEntry, OutboxMessage, Payout
from store.types import utcnow
from tasks.drain import DrainReport
from tasks.payments.approvals import approve
from tasks.payments.ledger import EARNED, FEES, PAYABLE, post
from tasks.payments.payouts import PAYPAL, STRIPE, pay, set_account, start_payouts
from tests.conftest import SLUG
from tests.fakes.paypal_api import FakePayPal
from tests.fakes.stripe_api import FakeStripe, sign
from tests.integration.test_review import T0
from tests.processes import RallyProcess, store_env

MAYA = "@maya.votes.pa"


def earned(engine, cents: int, *, handle: str = MAYA, n: int = 1) -> None:
    """`cents` earned by the creator, as an approved deliverable posts it (the `n`th such)."""
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        member = _member(session, campaign, handle)
        post(
            session, campaign, member, posting=f"earned:test:{handle}:{n}", kind=EARNED,
            cause=f"creative:{n}", lines=[(FEES, cents), (PAYABLE, -cents)],
            details={}, actor="staff:test", now=T0,
        )  # fmt: skip


def _member(session, campaign, handle: str) -> int:
    from tasks.payments.approvals import member_by_handle

    member = member_by_handle(session, campaign, handle)
    assert member.id is not None
    return member.id


def balance(rally, handle: str = MAYA) -> dict:
    rows = json.loads(rally("payments", "balances", SLUG, "--json").out)
    return next(r for r in rows if r["creator"] == handle.lstrip("@"))


def lines_add_up(engine) -> None:
    with transaction(engine, write=False) as session:
        amounts = session.exec(select(LedgerEntry.amount_cents)).all()
    assert sum(amounts) == 0


def test_one_person_approves_an_amount_under_the_threshold(engine, applied, rally) -> None:
    earned(engine, 40_000)
    assert balance(rally)["awaiting_cents"] == 40_000
    run = rally("payments", "approve", SLUG, MAYA, "--by", "dana")
    assert run.code == 0, run.err
    assert "400.00 USD approved for payment" in run.out
    owed = balance(rally)
    assert (owed["awaiting_cents"], owed["approved_cents"], owed["owed_cents"]) == (
        0,
        40_000,
        40_000,
    )
    again = rally("payments", "approve", SLUG, MAYA, "--by", "dana")
    assert again.code != 0 and "nothing awaits approval" in again.err
    lines_add_up(engine)
    with transaction(engine, write=False) as session:
        audited = session.exec(
            select(AuditEvent).where(AuditEvent.action == "ledger.approval")
        ).one()
    assert audited.actor == "dana" and "400.00 USD approved for payment" in audited.summary


def test_from_the_threshold_up_two_different_people_approve(engine, applied, rally) -> None:
    campaign = applied / "campaign.yaml"
    campaign.write_text(campaign.read_text() + "\npayments:\n  second_approval_from: 300\n")
    assert rally("campaign", "apply", campaign).code == 0
    earned(engine, 40_000)
    first = rally("payments", "approve", SLUG, MAYA, "--by", "dana")
    assert first.code == 0 and "a second must approve it too" in first.out
    assert balance(rally)["approved_cents"] == 0  # not yet
    same = rally("payments", "approve", SLUG, MAYA, "--by", "DANA")
    assert same.code != 0 and "a second person must approve them" in same.err
    waiting = json.loads(rally("payments", "approvals", SLUG, "--json").out)
    assert [(w["creator"], w["amount_cents"], w["approvers"]) for w in waiting] == [
        ("maya.votes.pa", 40_000, ["dana"])
    ]
    # More is earned before the second person looks: they approve the new amount, from the start.
    earned(engine, 20_000, n=2)
    second = rally("payments", "approve", SLUG, MAYA, "--by", "counsel")
    assert second.code == 0 and "a second must approve it too" in second.out
    assert balance(rally)["approved_cents"] == 0
    third = rally("payments", "approve", SLUG, MAYA, "--by", "dana")
    assert third.code == 0 and "600.00 USD approved for payment" in third.out
    assert balance(rally)["approved_cents"] == 60_000
    with transaction(engine, write=False) as session:
        (posting,) = session.exec(
            select(LedgerEntry).where(
                LedgerEntry.kind == "approval", LedgerEntry.account == "approved"
            )
        ).all()
    assert posting.details["approvers"] == ["counsel", "dana"]
    assert json.loads(rally("payments", "approvals", SLUG, "--json").out) == []
    lines_add_up(engine)


def test_an_unknown_creator_or_a_missing_name_is_refused(engine, applied, rally) -> None:
    nobody = rally("payments", "approve", SLUG, "@nobody.here", "--by", "dana")
    assert nobody.code != 0 and "@nobody.here is not on first-vote-pa-2027's roster" in nobody.err
    earned(engine, 1_000)
    blank = rally("payments", "approve", SLUG, MAYA, "--by", "  ")
    assert blank.code != 0 and "say who approves" in blank.err
    bad = rally("payments", "account", SLUG, MAYA, "12345")
    assert bad.code != 0 and "not a Stripe connected account id" in bad.err


# --- payouts through the Stripe fake ------------------------------------------------------


@pytest.fixture
def stripe(settings, monkeypatch) -> Iterator[FakeStripe]:
    """Stripe in test mode (25 requests a second), Rally's key and webhook secret set."""
    with FakeStripe() as fake:
        yield use(fake, monkeypatch)
    get_settings.cache_clear()


def use(fake: FakeStripe, monkeypatch) -> FakeStripe:
    """Rally pointed at `fake`, with its secret key and webhook secret."""
    monkeypatch.setenv("RALLY_STRIPE_API_URL", fake.url)
    monkeypatch.setenv("RALLY_STRIPE_SECRET_KEY", fake.secret_key)
    monkeypatch.setenv("RALLY_STRIPE_WEBHOOK_SECRET", fake.webhook_secret)
    get_settings.cache_clear()
    return fake


def handles(engine, count: int) -> list[str]:
    with transaction(engine, write=False) as session:
        found = session.exec(select(Creator.handle).order_by(col(Creator.handle))).all()
    return [f"@{h}" for h in found[:count]]


def ready_to_pay(
    engine,
    fake: FakeStripe | FakePayPal,
    people: dict[str, int],
    *,
    first: int = 0,
    outcomes: dict[str, Any] | None = None,
    slug: str = SLUG,
) -> dict[str, str]:
    """Each creator earned and was approved their cents (postings numbered from `first`);
    each has an account at `fake`'s provider: at Stripe, one that cannot take transfers where
    `outcomes` says False; at PayPal, one whose payouts end as `outcomes` says (SUCCESS by
    default). Creator -> account."""
    made, outcomes = {}, outcomes or {}
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
        for n, (handle, cents) in enumerate(people.items(), start=first):
            member = _member(session, campaign, handle)
            post(
                session, campaign, member, posting=f"earned:test:{n}", kind=EARNED,
                cause=f"creative:{n}", lines=[(FEES, cents), (PAYABLE, -cents)],
                details={}, actor="staff:test", now=T0,
            )  # fmt: skip
            if not approve(session, campaign, handle, by="dana", now=T0).posted:
                approve(session, campaign, handle, by="lee", now=T0)  # a second person's turn
            if isinstance(fake, FakePayPal):
                made[handle], provider = fake.add_receiver(outcomes.get(handle, "SUCCESS")), PAYPAL
            else:
                made[handle], provider = fake.add_account(outcomes.get(handle, True)), STRIPE
            set_account(
                session, campaign, handle, made[handle], provider=provider, actor="staff:test",
                now=T0,
            )  # fmt: skip
    return made


def paid(engine, settings, **options) -> DrainReport:
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        start_payouts(session, campaign, actor="staff:test", now=T0)
    return pay(engine, get_settings(), now=lambda: T0, wait=wait_none(), **options)


@pytest.mark.slow
def test_the_pay_creators_flow_pays_as_the_staff_member_who_started_it(
    engine, applied, stripe
) -> None:
    """What the console's "Pay" button starts as a deployment run, run here as a flow run."""
    from flows.payments import pay_creators
    from flows.sprint import without_heartbeats

    maya, unpaid = handles(engine, 2)
    accounts = ready_to_pay(engine, stripe, {maya: 40_000})
    earned(engine, 5_000, handle=unpaid)
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        approve(session, campaign, unpaid, by="dana", now=T0)
    with without_heartbeats():
        result = pay_creators(SLUG, by="li@example.org")
        again = pay_creators(SLUG, by="li@example.org")  # nothing left: nobody paid twice
    assert (result["queued"], result["paid"], result["refused"]) == (1, 1, 0)
    assert result["not_paid"] == {unpaid: "no payout account (`rally payments account`)"}
    assert (again["queued"], again["paid"]) == (0, 0)
    assert [t["amount"] for t in stripe.paid_to(accounts[maya])] == [40_000]
    with transaction(engine, write=False) as session:
        actors = session.exec(
            select(LedgerEntry.actor).where(LedgerEntry.kind == "payout").distinct()
        ).all()
    assert actors == ["li@example.org"]


def test_a_payout_run_pays_each_approved_creator_once(engine, applied, rally, stripe) -> None:
    maya, other, unpaid = handles(engine, 3)
    accounts = ready_to_pay(engine, stripe, {maya: 40_000, other: 12_345})
    earned(engine, 5_000, handle=unpaid)
    assert rally("payments", "approve", SLUG, unpaid, "--by", "dana").code == 0
    run = rally("payments", "payout", SLUG)
    assert run.code == 0, run.err
    assert f"{unpaid}: not paid: no payout account" in run.out
    assert "2 payout(s) made, 0 refused" in run.out
    assert [t["amount"] for t in stripe.paid_to(accounts[maya])] == [40_000]
    assert [t["amount"] for t in stripe.paid_to(accounts[other])] == [12_345]
    assert all(t["currency"] == "usd" for t in stripe.transfers)
    owed = balance(rally, maya)
    assert (owed["paid_cents"], owed["approved_cents"], owed["owed_cents"]) == (40_000, 0, 0)
    assert balance(rally, unpaid)["approved_cents"] == 5_000  # waits for an account
    again = rally("payments", "payout", SLUG)
    assert "0 payout(s) made" in again.out and len(stripe.transfers) == 2
    shown = json.loads(rally("payments", "payouts", SLUG, "--json").out)
    assert {(p["creator"], p["status"], p["transfer"]) for p in shown} == {
        (h.lstrip("@"), "paid", stripe.paid_to(accounts[h])[0]["id"]) for h in (maya, other)
    }
    lines_add_up(engine)


def test_429s_5xx_and_a_lost_answer_are_tried_again_with_the_same_key(
    engine, applied, stripe
) -> None:
    people = dict.fromkeys(handles(engine, 4), 10_000)
    accounts = ready_to_pay(engine, stripe, people)
    limited = {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "x"}}
    stripe.fail_next(1, status=429, body=limited)
    stripe.fail_next(2, status=500)  # the first payout's three tries at once all fail
    stripe.lose_answers(1, status=502)  # the second's transfer is made, its answer lost
    first = paid(engine, None)
    assert (first.sent, first.retrying, first.dead) == (3, 1, 0)
    report = pay(engine, get_settings(), now=lambda: T0 + timedelta(hours=2), wait=wait_none())
    assert (report.sent, report.dead) == (1, 0)
    for account in accounts.values():
        assert len(stripe.paid_to(account)) == 1  # nobody twice, nobody missed
    keys = [r.headers.get("idempotency-key") for r in stripe.requests if r.method == "POST"]
    assert len(keys) == 4 + 1 + 2 + 1 and len(set(keys)) == 4  # every try kept its payout's key
    lines_add_up(engine)


def test_a_refused_account_gets_its_amount_back_until_it_is_fixed(
    engine, applied, rally, stripe
) -> None:
    (maya,) = handles(engine, 1)
    accounts = ready_to_pay(engine, stripe, {maya: 25_000}, outcomes={maya: False})
    report = paid(engine, None)
    assert (report.sent, report.dead) == (0, 1)
    assert "insufficient_capabilities_for_transfer" in report.errors[0]
    shown = json.loads(rally("payments", "payouts", SLUG, "--json").out)
    assert shown[0]["status"] == "failed" and "transfers" in shown[0]["error"]
    assert balance(rally, maya)["approved_cents"] == 25_000  # back, for the next run
    fixed = stripe.add_account()
    assert rally("payments", "account", SLUG, maya, fixed).code == 0
    run = rally("payments", "payout", SLUG)
    assert "1 payout(s) made" in run.out, run.out
    assert stripe.paid_to(accounts[maya]) == [] and len(stripe.paid_to(fixed)) == 1
    assert balance(rally, maya)["paid_cents"] == 25_000
    lines_add_up(engine)


def test_a_webhook_that_comes_before_the_answer_settles_the_payout_once(
    engine, applied, rally, settings, tmp_path, monkeypatch
) -> None:
    from tests.e2e.conftest import ServedHere, _free_port

    stripe = use(FakeStripe(webhook_first=True).start(), monkeypatch)
    served = ServedHere(f"http://127.0.0.1:{_free_port()}", tmp_path / "web.log")
    try:
        url = served.ready()
        stripe.webhook_url = f"{url}/webhooks/stripe"
        (maya,) = handles(engine, 1)
        ready_to_pay(engine, stripe, {maya: 30_000})
        report = paid(engine, None)
        assert report.sent == 1
        (delivery,) = stripe.webhooks_sent
        assert delivery.status == 200
        with transaction(engine, write=False) as session:
            settled = session.exec(
                select(LedgerEntry).where(
                    LedgerEntry.kind == "settled", LedgerEntry.account == "paid"
                )
            ).all()
            payout = session.exec(select(Payout)).one()
        assert len(settled) == 1 and settled[0].actor == "stripe"  # the webhook settled it first
        assert payout.status == "paid" and payout.remote_id == stripe.transfers[0]["id"]
        forged = httpx.post(
            stripe.webhook_url,
            content=delivery.body,
            headers={"Stripe-Signature": sign(delivery.body, "whsec_wrong", int(time.time()))},
        )
        assert forged.status_code == 401
        stale = httpx.post(
            stripe.webhook_url,
            content=delivery.body,
            headers={"Stripe-Signature": sign(delivery.body, stripe.webhook_secret, 1_000_000)},
        )
        assert stale.status_code == 401 and "ago" in stale.json()["error"]
        lines_add_up(engine)
    finally:
        served.stop()
        stripe.stop()


def payout_process(forked_rally, settings, fake: FakeStripe | FakePayPal) -> RallyProcess:
    """`rally payments payout` in a process of its own, pointed at `fake`, with a one-second
    outbox lease."""
    if isinstance(fake, FakePayPal):
        provider = {
            "RALLY_PAYPAL_API_URL": fake.url,
            "RALLY_PAYPAL_CLIENT_ID": fake.client_id,
            "RALLY_PAYPAL_CLIENT_SECRET": fake.client_secret,
        }
    else:
        provider = {"RALLY_STRIPE_API_URL": fake.url, "RALLY_STRIPE_SECRET_KEY": fake.secret_key}
    env = store_env(settings, RALLY_OUTBOX_LEASE_SECONDS="1", **provider)
    return forked_rally(["payments", "payout", SLUG], env)


def leases_over(engine) -> None:
    """Wait until no payout message is held under a lease (a killed run's end within one)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with transaction(engine, write=False) as session:
            held = session.exec(
                select(OutboxMessage.id).where(
                    OutboxMessage.channel == "payout",
                    col(OutboxMessage.locked_until) > utcnow(),
                )
            ).first()
        if held is None:
            return
        time.sleep(0.1)
    raise TimeoutError("a killed run's lease did not end")


def killed_at_random(
    engine, forked_rally, settings, fake: FakeStripe | FakePayPal, *, runs: int, seed: int
) -> None:
    """`runs` payout runs, each killed with SIGKILL at a random request of its own, most often
    while an answer is on the way back or being recorded: the moment that could pay someone
    twice."""
    chooser = random.Random(seed)
    for _ in range(runs):
        seen = len(fake.requests)
        run = payout_process(forked_rally, settings, fake)
        fake.wait_for_requests(seen + chooser.randint(1, 6), timeout=60)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        leases_over(engine)  # else the next run finds every payout held, and has nothing to do


def in_transit(engine) -> int:
    with transaction(engine, write=False) as session:
        return len(session.exec(select(Payout.id).where(Payout.status == "sending")).all())


@pytest.mark.slow
def test_a_payout_run_killed_at_random_points_pays_nobody_twice_and_misses_nobody(
    engine, applied, settings, stripe, forked_rally
) -> None:
    people = {handle: 1_000 * (n + 1) for n, handle in enumerate(handles(engine, 30))}
    accounts = ready_to_pay(engine, stripe, people)
    killed_at_random(engine, forked_rally, settings, stripe, runs=5, seed=20261204)
    for _ in range(5):  # runs to the end, once the killed runs' leases are over
        finished = payout_process(forked_rally, settings, stripe)
        _, err = finished.communicate(timeout=120)
        assert finished.returncode == 0, err
        if not in_transit(engine):
            break
    assert in_transit(engine) == 0
    for handle, account in accounts.items():
        assert [t["amount"] for t in stripe.paid_to(account)] == [people[handle]], handle
    with transaction(engine, write=False) as session:
        paid_out = session.exec(
            select(LedgerEntry.amount_cents).where(LedgerEntry.account == "paid")
        ).all()
    assert -sum(paid_out) == sum(people.values()) and len(paid_out) == len(people)
    lines_add_up(engine)


@pytest.mark.slow
def test_a_paypal_payout_run_killed_at_random_points_sends_each_payout_once(
    engine, applied, settings, forked_rally
) -> None:
    """PayPal takes a payout and pays later: a run killed between sending and recording has
    the next run send the same request id and sender batch id, which PayPal answers with the
    first batch; once PayPal pays, `reconcile` settles every payout once."""
    with FakePayPal() as paypal:
        people = {handle: 500 * (n + 1) for n, handle in enumerate(handles(engine, 20))}
        receivers = ready_to_pay(engine, paypal, people)
        killed_at_random(engine, forked_rally, settings, paypal, runs=4, seed=20261205)
        for _ in range(5):
            finished = payout_process(forked_rally, settings, paypal)
            _, err = finished.communicate(timeout=120)
            assert finished.returncode == 0, err
            with transaction(engine, write=False) as session:
                unsent = session.exec(
                    select(OutboxMessage.id).where(
                        OutboxMessage.channel == "payout", col(OutboxMessage.sent_at).is_(None)
                    )
                ).first()
            if unsent is None:
                break
        taken = {
            handle: [i for i in paypal.items if i["payout_item"]["receiver"] == receiver]
            for handle, receiver in receivers.items()
        }
        assert {h: len(items) for h, items in taken.items()} == dict.fromkeys(people, 1)
        paypal.settle()
        with pytest.MonkeyPatch.context() as env:
            use_paypal(paypal, env)
            from tasks.payments.payouts import reconcile

            assert reconcile(open_store(get_settings()), get_settings(), now=T0) == {
                "settled": len(people),
                "returned": 0,
                "taken_back": 0,
            }
        get_settings.cache_clear()
        for handle, receiver in receivers.items():
            assert [int(float(i["payout_item"]["amount"]["value"]) * 100)
                    for i in paypal.paid_to(receiver)] == [people[handle]], handle  # fmt: skip
        assert in_transit(engine) == 0
        lines_add_up(engine)


def test_who_needs_a_1099_nec_for_a_payment_year(
    engine, applied, rally, stripe, monkeypatch
) -> None:
    over, at, under = handles(engine, 3)
    ready_to_pay(engine, stripe, {over: 250_000, at: 200_000, under: 199_999})
    assert paid(engine, None).sent == 3  # settled on T0, in 2027
    refused = rally("payments", "w9", over, "--tin-last4", "123-45-6789")
    assert refused.code != 0 and "never keeps a whole one" in refused.err
    run = rally("payments", "w9", over, "--collected-on", "2026-11-30", "--tin-last4", "6789")
    assert run.code == 0, run.err
    found = json.loads(rally("payments", "tax-year", "2027", "--json").out)
    assert found["threshold_cents"] == 200_000 and "set RALLY_NEC_THRESHOLD" in found["threshold"]
    [paid_by] = found["payers"]  # the example names no payer: the store's one
    assert (paid_by["payer"], paid_by["campaigns"]) == (None, [SLUG])
    assert [
        (r["creator"], r["paid_cents"], r["needs_1099_nec"], r["w9_on_file"], r["missing_w9"])
        for r in paid_by["creators"]
    ] == [
        (over.lstrip("@"), 250_000, True, True, False),
        (at.lstrip("@"), 200_000, True, False, True),  # the threshold itself needs a form
        (under.lstrip("@"), 199_999, False, False, False),
    ]
    shown = rally("payments", "tax-year", "2027")
    assert "1 creator(s) need a 1099-NEC and have no W-9 on file" in shown.out
    monkeypatch.setenv("RALLY_NEC_THRESHOLD", "2050")  # 2027's, once published
    get_settings.cache_clear()
    indexed = json.loads(rally("payments", "tax-year", "2027", "--json").out)
    assert indexed["threshold_cents"] == 205_000
    assert [r["needs_1099_nec"] for r in indexed["payers"][0]["creators"]] == [True, False, False]
    assert "Nobody was paid in 2026" in rally("payments", "tax-year", "2026").out
    with transaction(engine, write=False) as session:
        audited = session.exec(
            select(AuditEvent).where(AuditEvent.action == "tax.w9_recorded")
        ).one()
    assert audited.changes["tin_last4"] == "6789" and "12345" not in json.dumps(audited.changes)


def test_a_rehearsal_pays_to_its_folder_and_never_through_stripe(
    engine, applied, settings, stripe
) -> None:
    from tasks.payments.payouts import rehearse_payouts

    live, simulated = handles(engine, 2)
    ready_to_pay(engine, stripe, {live: 10_000})  # a real Stripe account, approved
    earned(engine, 150_000, handle=simulated)  # over the threshold: two approvers
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        queued = rehearse_payouts(session, campaign, ["dana", "lee"], now=T0)
    assert (queued.payouts, queued.cents) == (1, 150_000)
    report = pay(engine, get_settings(), now=lambda: T0)
    assert report.sent == 1 and stripe.transfers == []
    (written,) = (settings.home / "payouts").glob("rally-payout-*.json")
    assert json.loads(written.read_text())["destination"] == f"rehearsal:{simulated.lstrip('@')}"
    with transaction(engine, write=False) as session:
        approval = session.exec(
            select(LedgerEntry).where(
                LedgerEntry.kind == "approval",
                LedgerEntry.account == "approved",
                LedgerEntry.amount_cents == -150_000,
            )
        ).one()
    assert approval.details["approvers"] == ["dana", "lee"]


# --- payouts through the PayPal fake --------------------------------------------------------


def use_paypal(fake: FakePayPal, monkeypatch) -> FakePayPal:
    """Rally pointed at `fake`, with its app's credentials and webhook id."""
    monkeypatch.setenv("RALLY_PAYPAL_API_URL", fake.url)
    monkeypatch.setenv("RALLY_PAYPAL_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("RALLY_PAYPAL_CLIENT_SECRET", fake.client_secret)
    monkeypatch.setenv("RALLY_PAYPAL_WEBHOOK_ID", fake.webhook_id)
    get_settings.cache_clear()
    return fake


@pytest.fixture
def served(settings, tmp_path) -> Iterator[str]:
    """Rally's web app on this test's store, for the providers' webhooks: its URL."""
    from tests.e2e.conftest import ServedHere, _free_port

    app = ServedHere(f"http://127.0.0.1:{_free_port()}", tmp_path / "web.log")
    try:
        yield app.ready()
    finally:
        app.stop()


def statuses(engine) -> dict[str, str]:
    with transaction(engine, write=False) as session:
        return {p.reference: p.status for p in session.exec(select(Payout))}


def test_a_paypal_payout_is_taken_then_settled_by_its_verified_webhook(
    engine, applied, rally, settings, served, monkeypatch
) -> None:
    with FakePayPal(webhook_url=f"{served}/webhooks/paypal") as paypal:
        use_paypal(paypal, monkeypatch)
        maya, locked = handles(engine, 2)
        receivers = ready_to_pay(
            engine, paypal, {maya: 30_000, locked: 20_000}, outcomes={locked: "FAILED"}
        )
        run = rally("payments", "payout", SLUG)
        assert "2 payout(s) made" in run.out, run.out + run.err
        assert set(statuses(engine).values()) == {"sending"}  # taken, not yet paid
        paypal.settle()
        deliveries = paypal.wait_for_webhooks(2)
        assert [d.status for d in deliveries] == [200, 200]
        shown = {
            p["creator"]: p for p in json.loads(rally("payments", "payouts", SLUG, "--json").out)
        }
        assert shown[maya.lstrip("@")]["status"] == "paid"
        assert (
            shown[maya.lstrip("@")]["transfer"]
            == paypal.paid_to(receivers[maya])[0]["transaction_id"]
        )
        assert shown[locked.lstrip("@")]["status"] == "failed"
        assert "RECEIVER_ACCOUNT_LOCKED" in shown[locked.lstrip("@")]["error"]
        assert balance(rally, locked)["approved_cents"] == 20_000  # back, for the next run
        forged = dict(deliveries[0].headers) | {"PAYPAL-TRANSMISSION-SIG": "forged"}
        again = httpx.post(f"{served}/webhooks/paypal", content=deliveries[0].body, headers=forged)
        assert again.status_code == 401
        lines_add_up(engine)


def test_money_taken_back_after_it_was_paid_waits_for_approval_again(
    engine, applied, rally, served, monkeypatch
) -> None:
    """Stripe reverses a paid transfer, in part and then the rest; a PayPal receiver refunds
    a paid item. Each amount goes back to awaiting approval once, with a reversing posting,
    whatever number of times the webhook comes."""
    maya, jordan = handles(engine, 2)
    with FakeStripe(webhook_url=f"{served}/webhooks/stripe") as stripe:
        use(stripe, monkeypatch)
        accounts = ready_to_pay(engine, stripe, {maya: 30_000})
        assert paid(engine, None).sent == 1
        (transfer,) = stripe.paid_to(accounts[maya])
        stripe.reverse(transfer["id"], 10_000)
        stripe.wait_for_webhooks(2)
        # What Maya kept is what counts toward her 1099-NEC: 200.00 of the 300.00.
        year = json.loads(rally("payments", "tax-year", "2027", "--json").out)
        assert [(r["creator"], r["paid_cents"]) for r in year["payers"][0]["creators"]] == [
            (maya.lstrip("@"), 20_000)
        ]
        stripe.reverse(transfer["id"])  # the other 200.00
        reversals = [d for d in stripe.wait_for_webhooks(3) if b"transfer.reversed" in d.body]
        assert [d.status for d in reversals] == [200, 200]
        again = httpx.post(
            f"{served}/webhooks/stripe",
            content=reversals[-1].body,
            headers={"Stripe-Signature": sign(reversals[-1].body, stripe.webhook_secret,
                                              int(time.time()))},
        )  # fmt: skip
        assert again.json() == {"ok": True, "taken_back": False}  # told before: nothing new
    owed = balance(rally, maya)
    assert (owed["paid_cents"], owed["awaiting_cents"], owed["owed_cents"]) == (0, 30_000, 30_000)
    year = json.loads(rally("payments", "tax-year", "2027", "--json").out)
    assert [(r["creator"], r["paid_cents"]) for r in year["payers"][0]["creators"]] == [
        (maya.lstrip("@"), 0)
    ]
    shown = json.loads(rally("payments", "payouts", SLUG, "--json").out)
    assert shown[0]["status"] == "taken_back" and "Stripe reversed" in shown[0]["error"]
    assert rally("payments", "approve", SLUG, maya, "--by", "dana").code == 0  # seen again
    assert balance(rally, maya)["approved_cents"] == 30_000

    with FakePayPal(webhook_url=f"{served}/webhooks/paypal") as paypal:
        use_paypal(paypal, monkeypatch)
        receivers = ready_to_pay(engine, paypal, {jordan: 12_000}, first=10)
        assert "1 payout(s) made" in rally("payments", "payout", SLUG).out
        paypal.settle()
        paypal.wait_for_webhooks(1)
        assert balance(rally, jordan)["paid_cents"] == 12_000
        paypal.refund(receivers[jordan])
        deliveries = paypal.wait_for_webhooks(2)
        assert deliveries[-1].status == 200
        nothing = "0 payout(s) settled, 0 returned to approved.\n"
        assert rally("payments", "reconcile").out == nothing  # the refund is not a payout's end
    owed = balance(rally, jordan)
    assert (owed["paid_cents"], owed["awaiting_cents"]) == (0, 12_000)
    with transaction(engine, write=False) as session:
        taken = session.exec(
            select(LedgerEntry.posting).where(LedgerEntry.kind == "taken_back").distinct()
        ).all()
    assert len(taken) == 3  # Stripe's two reversals and PayPal's refund, each once
    lines_add_up(engine)


def test_paypal_429s_5xx_a_lost_answer_and_a_webhook_before_the_answer(
    engine, applied, settings, served, monkeypatch
) -> None:
    hook = f"{served}/webhooks/paypal"
    with FakePayPal(webhook_url=hook, settle_on_create=True, webhook_first=True) as paypal:
        use_paypal(paypal, monkeypatch)
        people = dict.fromkeys(handles(engine, 3), 12_500)
        receivers = ready_to_pay(engine, paypal, people)
        paypal.fail_next(1, status=429)
        paypal.fail_next(1, status=503)
        # The first payout's third try: its batch is made (its webhook sent first), the answer
        # lost. Its three tries at once are spent: it goes again later, with the same request id.
        paypal.lose_answers(1, status=502)
        first = paid(engine, None)
        assert (first.sent, first.retrying, first.dead) == (2, 1, 0)
        later = pay(engine, get_settings(), now=lambda: T0 + timedelta(hours=2), wait=wait_none())
        assert (later.sent, later.dead) == (1, 0)
        for receiver in receivers.values():
            assert len(paypal.paid_to(receiver)) == 1  # nobody twice, nobody missed
        assert set(statuses(engine).values()) == {
            "paid"
        }  # settled by the webhooks, which came first
        with transaction(engine, write=False) as session:
            settled = session.exec(
                select(LedgerEntry).where(
                    LedgerEntry.kind == "settled", LedgerEntry.account == "paid"
                )
            ).all()
        assert len(settled) == 3 and {s.actor for s in settled} == {"paypal"}
        assert rally_reconciles_nothing(settings)
        lines_add_up(engine)


def rally_reconciles_nothing(settings) -> bool:
    from tasks.payments.payouts import reconcile

    return reconcile(open_store(get_settings()), get_settings(), now=T0) == {
        "settled": 0,
        "returned": 0,
        "taken_back": 0,
    }


def test_paypal_payouts_settled_by_reconcile_when_no_webhook_comes(
    engine, applied, rally, settings, monkeypatch
) -> None:
    with FakePayPal() as paypal:  # no webhook configured at PayPal
        use_paypal(paypal, monkeypatch)
        maya, blocked = handles(engine, 2)
        ready_to_pay(engine, paypal, {maya: 10_000, blocked: 10_000}, outcomes={blocked: "BLOCKED"})
        assert "2 payout(s) made" in rally("payments", "payout", SLUG).out
        assert "0 payout(s) settled, 0 returned" in rally("payments", "reconcile").out  # pending
        paypal.settle()
        assert "1 payout(s) settled, 1 returned" in rally("payments", "reconcile").out
        assert "0 payout(s) settled, 0 returned" in rally("payments", "reconcile").out
        assert sorted(statuses(engine).values()) == ["failed", "paid"]
        lines_add_up(engine)


def unanswered_until_given_up(engine, fake: FakeStripe | FakePayPal) -> DrainReport:
    """Payout runs, a day apart, while `fake` answers nothing but 503s, until the payout's
    tries run out; then the provider answers again."""
    fake.fail_next(10_000, status=503)
    try:
        for day in range(1, 30):
            at = T0 + timedelta(days=day)
            report = pay(engine, get_settings(), now=lambda: at, wait=wait_none())  # noqa: B023
            if report.dead:
                return report
        raise AssertionError("the payout's tries never ran out")
    finally:
        fake.heal()


def test_payouts_whose_tries_all_went_unanswered_wait_for_reconcile(
    engine, applied, rally, stripe, monkeypatch
) -> None:
    """Without an answer Rally cannot know whether the money moved: the payout stays in
    transit (never refused, which could pay twice) until `reconcile` asks. Stripe has no
    transfer for it, so it is returned; PayPal is sent it again with the same ids, and pays
    it once."""
    maya, jordan = handles(engine, 2)
    ready_to_pay(engine, stripe, {maya: 10_000})
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        start_payouts(session, campaign, actor="staff:test", now=T0)
    assert unanswered_until_given_up(engine, stripe).dead == 1
    shown = json.loads(rally("payments", "payouts", SLUG, "--json").out)
    assert shown[0]["status"] == "sending" and "rally payments reconcile" in shown[0]["error"]
    assert balance(rally, maya)["in_transit_cents"] == 10_000
    assert "0 payout(s) settled, 1 returned" in rally("payments", "reconcile").out
    assert balance(rally, maya)["approved_cents"] == 10_000 and stripe.transfers == []

    with FakePayPal() as paypal:
        use_paypal(paypal, monkeypatch)
        receivers = ready_to_pay(engine, paypal, {jordan: 20_000}, first=10)
        with transaction(engine) as session:
            campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
            start_payouts(session, campaign, actor="staff:test", now=T0, provider="paypal")
        assert unanswered_until_given_up(engine, paypal).dead == 1
        assert paypal.items == []  # no try reached PayPal
        assert "0 payout(s) settled, 0 returned" in rally("payments", "reconcile").out  # taken
        assert "0 payout(s) settled, 0 returned" in rally("payments", "reconcile").out
        paypal.settle()
        assert "1 payout(s) settled, 0 returned" in rally("payments", "reconcile").out
        assert len(paypal.items) == 1 and len(paypal.paid_to(receivers[jordan])) == 1
    assert balance(rally, jordan)["paid_cents"] == 20_000
    lines_add_up(engine)


def test_a_paypal_payout_unanswered_past_paypal_s_memory_is_not_sent_again(
    engine, applied, rally, monkeypatch
) -> None:
    """PayPal forgets request and sender batch ids after 30 days: a payout whose tries went
    unanswered that long ago could be paid twice if sent again, so it is left for staff."""
    from tasks.payments.payouts import reconcile

    with FakePayPal() as paypal:
        use_paypal(paypal, monkeypatch)
        (jordan,) = handles(engine, 1)
        ready_to_pay(engine, paypal, {jordan: 20_000})
        with transaction(engine) as session:
            campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
            start_payouts(session, campaign, actor="staff:test", now=T0, provider="paypal")
        assert unanswered_until_given_up(engine, paypal).dead == 1
        later = T0 + timedelta(days=40)
        counts = reconcile(open_store(get_settings()), get_settings(), now=later)
        assert counts == {"settled": 0, "returned": 0, "taken_back": 0}
        assert paypal.items == []  # nothing was sent again
        shown = json.loads(rally("payments", "payouts", SLUG, "--json").out)
        assert shown[0]["status"] == "sending" and "too old to send again" in shown[0]["error"]


def test_a_paypal_batch_made_before_is_found_by_its_sender_batch_id(monkeypatch) -> None:
    """Past PayPal's memory of request ids, a payout sent again is refused for its
    `sender_batch_id` with a link to the first batch: the adapter answers with that batch,
    so nothing is paid twice."""
    from integrations.paypal import PayPal

    with FakePayPal() as fake, httpx.Client() as client:
        paypal = PayPal(
            client, api_url=fake.url, client_id=fake.client_id, client_secret=fake.client_secret
        )
        receiver = fake.add_receiver()

        def send() -> str:
            return paypal.transfer(
                amount_cents=5_000, currency="USD", destination=receiver,
                key="rally-payout-abc", group="rally-payout-abc",
                metadata={"rally_payout": "7", "campaign": SLUG},
            )  # fmt: skip

        first = send()
        fake.forget_request_ids()
        assert send() == first
        assert len(fake.items) == 1


def test_payouts_queued_without_a_key_wait_and_go_once_it_is_set(
    engine, applied, rally, settings, monkeypatch
) -> None:
    with FakeStripe() as fake:
        (maya,) = handles(engine, 1)
        accounts = ready_to_pay(engine, fake, {maya: 15_000})
        monkeypatch.delenv("RALLY_STRIPE_SECRET_KEY", raising=False)
        get_settings.cache_clear()
        run = rally("payments", "payout", SLUG)
        assert run.code == 1 and "1 payout(s) of 150.00 queued." in run.out
        assert "Not sent: set RALLY_STRIPE_SECRET_KEY" in run.out and fake.transfers == []
        assert balance(rally, maya)["in_transit_cents"] == 15_000
        use(fake, monkeypatch)
        again = rally("payments", "payout", SLUG)
        assert again.code == 0 and "1 payout(s) made" in again.out and "queued" not in again.out
        assert [t["amount"] for t in fake.paid_to(accounts[maya])] == [15_000]
        lines_add_up(engine)


def test_a_webhook_nested_too_deeply_to_read_is_refused_400(
    engine, applied, served, monkeypatch
) -> None:
    """Python's JSON parser recurses: a small body of nested lists must be a 400 the sender
    sees, not a server error, from either provider's route (Stripe's once signed)."""
    deep = b'{"a": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    with (
        FakePayPal(webhook_url=f"{served}/webhooks/paypal") as paypal,
        FakeStripe(webhook_url=f"{served}/webhooks/stripe") as stripe,
    ):
        use_paypal(paypal, monkeypatch)
        use(stripe, monkeypatch)
        answer = httpx.post(f"{served}/webhooks/paypal", content=deep)
        assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]
        signed = {"Stripe-Signature": sign(deep, stripe.webhook_secret, int(time.time()))}
        answer = httpx.post(f"{served}/webhooks/stripe", content=deep, headers=signed)
        assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]


def test_a_campaign_s_payout_run_sends_its_own_payouts_only(
    engine, applied, stripe, tmp_path
) -> None:
    """Another campaign's payouts wait in the same store (queued while Stripe was not set
    up, say): a run for this campaign (its staff's button, a rehearsal) leaves them as they
    are, nor names their creators; a run for the other campaign sends them."""
    from tests.integration.test_staff_console import OTHER, other_campaign

    other_id = other_campaign(engine, applied, tmp_path)
    ours, theirs = handles(engine, 2)
    accounts = ready_to_pay(engine, stripe, {ours: 10_000})
    accounts |= ready_to_pay(engine, stripe, {theirs: 20_000}, first=10, slug=OTHER)
    with transaction(engine) as session:
        for slug in (SLUG, OTHER):
            campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
            assert start_payouts(session, campaign, actor="staff:test", now=T0).payouts == 1
            if slug == SLUG:
                own_id = campaign.id
    report = pay(engine, get_settings(), now=lambda: T0, campaign_id=own_id, wait=wait_none())
    assert report.sent == 1 and not any(theirs in e for e in report.errors)
    assert [len(stripe.paid_to(accounts[h])) for h in (ours, theirs)] == [1, 0]
    assert pay(engine, get_settings(), now=lambda: T0, campaign_id=other_id).sent == 1
    assert [len(stripe.paid_to(accounts[h])) for h in (ours, theirs)] == [1, 1]
