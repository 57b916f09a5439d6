"""The campaign's numbers against examples worked by hand: KPIs (with zero views and zero
spend), progress against targets, last-touch and linear attribution, holdout lift with its
intervals (with an empty holdout), and creator scorecards."""

from datetime import UTC, datetime, timedelta

import pytest

from tasks.reporting.measurement import (
    UNATTRIBUTED,
    Signup,
    Totals,
    Touch,
    against_targets,
    attribute,
    kpis,
    lift,
    recommend_budget,
    scorecards,
)

MON = datetime(2027, 2, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def test_kpis_of_one_video_worked_by_hand():
    totals = Totals(
        views=10_000,
        reach=8_000,
        likes=500,
        comments=100,
        shares=50,
        full_watches=2_500,
        clicks=200,
        signups=10,
        spend=300.0,
    )
    k = kpis(totals)
    assert k.engagement_rate == pytest.approx(650 / 10_000)  # 6.5%
    assert k.watch_through_rate == pytest.approx(0.25)
    assert k.virality == pytest.approx(5.0)  # shares per 1,000 views
    assert k.click_through_rate == pytest.approx(0.02)
    assert k.conversion_rate == pytest.approx(0.05)
    assert k.cpa == pytest.approx(30.0)
    assert k.cost_per_engaged_user == pytest.approx(300 / 650)


def test_zero_views_and_zero_spend_are_not_errors():
    nothing = kpis(Totals())
    assert (nothing.engagement_rate, nothing.click_through_rate, nothing.cpa) == (None, None, None)
    free = kpis(Totals(views=100, likes=5, clicks=4, signups=2, spend=0.0))
    assert free.cpa == 0.0 and free.cost_per_engaged_user == 0.0
    assert kpis(Totals(views=100, spend=50.0)).cpa is None  # spent, but no signup yet


def test_totals_add_up_across_weeks():
    week1 = Totals(views=100, likes=10, full_watches=20.0, signups=1, spend=10.0)
    week2 = Totals(views=300, likes=20, full_watches=30.0, signups=3, spend=30.0)
    both = week1 + week2
    assert (both.views, both.likes, both.signups, both.spend) == (400, 30, 4, 40.0)
    assert kpis(both).watch_through_rate == pytest.approx(50 / 400)


def test_progress_counts_costs_down_to_their_target():
    k = kpis(Totals(views=10_000, likes=650, clicks=200, signups=10, spend=300.0))
    progress = against_targets(
        k, {"engagement_rate": 0.05, "cpa": 8.0, "views": 20_000, "signups": None}
    )
    assert progress["engagement_rate"].met and progress["engagement_rate"].share == pytest.approx(
        1.3
    )
    assert not progress["cpa"].met and progress["cpa"].share == pytest.approx(8 / 30)
    assert progress["views"].share == pytest.approx(0.5)
    assert "signups" not in progress  # no target, no line
    unmeasured = against_targets(kpis(Totals()), {"engagement_rate": 0.05})["engagement_rate"]
    assert (unmeasured.value, unmeasured.share, unmeasured.met) == (None, None, False)


SIGNUPS = [
    Signup("ana", MON + 2 * DAY),  # clicked maya, then jordan
    Signup("ben", MON + DAY, creator="tyler"),  # clicked maya; the form carried tyler's code
    Signup("cy", MON),  # no touch at all
    Signup("dee", MON),  # clicked only after signing up
]
TOUCHES = [
    Touch("ana", MON, "maya", "v1"),
    Touch("ana", MON + DAY, "jordan", "v2"),
    Touch("ben", MON, "maya", "v1"),
    Touch("dee", MON + 3 * DAY, "maya", "v1"),
]


def test_last_touch_gives_each_signup_to_its_latest_touch():
    credit = attribute(SIGNUPS, TOUCHES, model="last")
    assert credit == {"jordan": 1.0, "tyler": 1.0, UNATTRIBUTED: 2.0}


def test_linear_splits_each_signup_over_its_touches():
    credit = attribute(SIGNUPS, TOUCHES, model="linear")
    assert credit == pytest.approx({"maya": 1.0, "jordan": 0.5, "tyler": 0.5, UNATTRIBUTED: 2.0})
    assert sum(credit.values()) == pytest.approx(len(SIGNUPS))


def test_attribution_by_video():
    credit = attribute(SIGNUPS, TOUCHES, model="linear", by="video")
    assert credit == pytest.approx({"v1": 1.0, "v2": 0.5, UNATTRIBUTED: 2.5})


def test_holdout_lift_and_its_intervals_worked_by_hand():
    result = lift(60, 1000, 40, 1000)
    assert (result.treated_rate, result.holdout_rate) == (0.06, 0.04)
    assert result.difference == pytest.approx(0.02)
    # se = sqrt(.06 * .94 / 1000 + .04 * .96 / 1000) = 0.0097365
    assert result.difference_interval == pytest.approx((0.000917, 0.039083), abs=1e-5)
    assert result.relative == pytest.approx(0.5)
    # log ratio ln(1.5) = 0.405465, se sqrt(.94 / 60 + .96 / 40) = 0.199165
    assert result.relative_interval == pytest.approx((0.01522, 1.21633), abs=1e-4)


def test_an_empty_holdout_or_one_without_signups_says_so():
    empty = lift(5, 100, 0, 0)
    assert empty.note == "no holdout" and empty.difference is None and empty.relative is None
    assert empty.treated_rate == 0.05
    none_held = lift(5, 100, 0, 100)
    assert none_held.difference == pytest.approx(0.05) and none_held.relative is None
    assert none_held.note == "no conversions in the holdout"


def test_scorecards_rank_by_signups_then_engagement_with_trend_and_tiers():
    week = lambda views, likes, signups, spend=0.0: Totals(  # noqa: E731
        views=views, likes=likes, signups=signups, spend=spend
    )
    cards = scorecards(
        {
            "maya": [week(1000, 50, 1, 40.0), week(1000, 80, 4, 40.0)],  # 5 signups
            "jordan": [week(1000, 90, 2), week(1000, 60, 2)],
            "tyler": [week(1000, 10, 0)],
            "sam": [week(500, 40, 0), week(500, 60, 0)],
        }
    )
    assert [(c.creator, c.rank, c.tier) for c in cards] == [
        ("maya", 1, "A"),
        ("jordan", 2, "B"),
        ("sam", 3, "B"),
        ("tyler", 4, "C"),
    ]
    maya = cards[0]
    assert maya.trend == pytest.approx(0.03) and maya.cost_per_result == pytest.approx(80 / 5)
    assert cards[1].trend == pytest.approx(-0.03)
    assert cards[3].trend is None  # one week: no trend yet


SPLIT = {"creators": 0.5, "paid": 0.3, "production": 0.1, "tools": 0.1}


def test_a_low_cost_per_signup_moves_paid_budget_to_creators():
    cheap = kpis(Totals(views=1000, clicks=100, signups=50, spend=300.0))  # $6 a signup
    advice = recommend_budget(cheap, target_cpa=10.0, split=SPLIT)
    assert advice.kind == "recommendation" and "organic creator partnerships" in advice.action
    assert advice.split == {"creators": 0.53, "paid": 0.27, "production": 0.1, "tools": 0.1}
    assert "cost per signup $6.00" in advice.because


def test_a_cost_over_twice_the_target_pivots_and_asks_for_an_audit():
    dear = kpis(Totals(views=1000, clicks=100, signups=10, spend=250.0))  # $25 a signup
    advice = recommend_budget(dear, target_cpa=10.0, split=SPLIT)
    assert "audit" in advice.action
    assert advice.split["paid"] == pytest.approx(0.225)
    assert advice.split["creators"] == pytest.approx(0.575)
    assert sum(advice.split.values()) == pytest.approx(1.0)


def test_middling_costs_and_no_signups_keep_the_split():
    middling = kpis(Totals(views=1000, clicks=100, signups=10, spend=120.0))  # $12 a signup
    assert recommend_budget(middling, target_cpa=10.0, split=SPLIT).split == SPLIT
    early = recommend_budget(kpis(Totals(views=1000, spend=50.0)), target_cpa=10.0, split=SPLIT)
    assert early.split == SPLIT and "too few signups" in early.action


@pytest.mark.parametrize("spend", [300.0, 250.0])  # $6 and $25 a signup
def test_an_organic_campaign_is_never_told_to_move_a_paid_budget(spend):
    organic = {"creators": 0.7, "paid": 0.0, "production": 0.18, "tools": 0.12}
    signups = 50 if spend == 300.0 else 10
    k = kpis(Totals(views=1000, clicks=100, signups=signups, spend=spend))
    advice = recommend_budget(k, target_cpa=10.0, split=organic)
    assert "paid budget" not in advice.action and advice.split == organic
    assert "no paid budget: organic posting only" in advice.because


@pytest.mark.parametrize(("fee_cents", "videos"), [(32500, 3), (10000, 3), (99999, 7), (1, 2)])
def test_a_creators_fee_spread_over_their_videos_adds_up_to_the_cent(fee_cents, videos):
    from tasks.payments.ledger import deliverable_fee

    shares = [deliverable_fee(fee_cents, videos, nth) for nth in range(1, videos + 2)]
    assert sum(shares) == fee_cents and shares[-1] == 0  # nothing for a video beyond them
    assert max(shares) - min(shares[:-1]) <= 1
