"""The campaign's numbers: KPIs from totals, progress against targets, attribution of signups to
creators, and the lift a holdout shows. Plain functions over plain values, so every figure in a
report can be worked by hand.

A rate whose denominator is zero (no views yet, no clicks, no spend) is None, "not measurable
yet", never 0 and never an error: a report shows it as a dash.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

Z95 = 1.959964  # two-sided 95% normal quantile
LOWER_IS_BETTER = frozenset({"cpa", "cost_per_engaged_user"})


@dataclass(frozen=True)
class Totals:
    """Counts for one creator, segment, video or week (or all of them); `full_watches` is
    views times the full-watch rate, so that totals add up."""

    views: int = 0
    reach: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    full_watches: float = 0.0
    clicks: int = 0
    signups: int = 0
    spend: float = 0.0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def engagements(self) -> int:
        return self.likes + self.comments + self.shares


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Kpi:
    views: int
    reach: int
    engagement_rate: float | None  # (likes + comments + shares) / views
    watch_through_rate: float | None  # full watches / views
    virality: float | None  # shares per 1,000 views
    click_through_rate: float | None  # clicks / views
    conversion_rate: float | None  # signups / clicks
    signups: int
    cpa: float | None  # spend / signups
    cost_per_engaged_user: float | None  # spend / engagements

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kpis(totals: Totals) -> Kpi:
    t = totals
    return Kpi(
        views=t.views,
        reach=t.reach,
        engagement_rate=_ratio(t.engagements, t.views),
        watch_through_rate=_ratio(t.full_watches, t.views),
        virality=_ratio(t.shares * 1000, t.views),
        click_through_rate=_ratio(t.clicks, t.views),
        conversion_rate=_ratio(t.signups, t.clicks),
        signups=t.signups,
        cpa=_ratio(t.spend, t.signups),
        cost_per_engaged_user=_ratio(t.spend, t.engagements),
    )


@dataclass(frozen=True)
class Progress:
    value: float | None
    target: float
    share: float | None  # how far towards the target (1.0: met); costs count down to it
    met: bool


def against_targets(kpi: Kpi, targets: Mapping[str, float | None]) -> dict[str, Progress]:
    """Each KPI that has a target: its value, the share of the target reached, and whether it
    is met. For costs lower is better, so the share is target / value."""
    result = {}
    values = kpi.as_dict()
    for name, target in targets.items():
        if target is None or name not in values:
            continue
        value = values[name]
        if value is None:
            result[name] = Progress(None, target, None, False)
        elif name in LOWER_IS_BETTER:
            share = 1.0 if value == 0 else target / value
            result[name] = Progress(value, target, share, value <= target)
        else:
            share = value / target if target else 1.0
            result[name] = Progress(value, target, share, value >= target)
    return result


# --- attribution ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Touch:
    """A person met a creator's content: a tracking-link click (or a signup's own source
    code) at a time, for a video when known."""

    person: str
    at: datetime
    creator: str
    video: str | None = None


@dataclass(frozen=True)
class Signup:
    person: str
    at: datetime
    creator: str | None = None  # the source code the form carried, as a creator
    video: str | None = None  # the video the form's link came from, when known


UNATTRIBUTED = "(unattributed)"


def attribute(
    signups: Iterable[Signup],
    touches: Iterable[Touch],
    *,
    model: Literal["last", "linear"] = "last",
    by: Literal["creator", "video"] = "creator",
) -> dict[str, float]:
    """Credit for signups by creator (or video). Each signup's touches are the person's touches
    up to the signup, plus the signup's own source code. Last touch gives the whole signup to
    the latest; linear splits it equally over all of them. A signup with no touch is
    `(unattributed)`; credits add up to the number of signups."""
    by_person: dict[str, list[Touch]] = defaultdict(list)
    for touch in touches:
        by_person[touch.person].append(touch)
    credit: dict[str, float] = defaultdict(float)
    for signup in signups:
        before = [t for t in by_person.get(signup.person, []) if t.at <= signup.at]
        if signup.creator:
            before.append(Touch(signup.person, signup.at, signup.creator, signup.video))
        keys = [(t.video or UNATTRIBUTED) if by == "video" else t.creator for t in before]
        if not keys:
            credit[UNATTRIBUTED] += 1.0
        elif model == "last":
            latest = max(range(len(before)), key=lambda i: before[i].at)
            credit[keys[latest]] += 1.0
        else:
            for key in keys:
                credit[key] += 1.0 / len(keys)
    return dict(credit)


# --- holdout lift ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Lift:
    """Treated against held-out: the conversion rates, their difference with a 95% interval
    (Wald), and the relative lift with its 95% interval (on the log of the rate ratio). None
    where the data cannot say: an empty group, or no conversions on a side."""

    treated_rate: float | None
    holdout_rate: float | None
    difference: float | None
    difference_interval: tuple[float, float] | None
    relative: float | None
    relative_interval: tuple[float, float] | None
    note: str = ""


def lift(
    treated_conversions: int, treated_size: int, holdout_conversions: int, holdout_size: int
) -> Lift:
    if treated_size <= 0 or holdout_size <= 0:
        empty = "no holdout" if holdout_size <= 0 else "no treated group"
        return Lift(_ratio(treated_conversions, treated_size), None, None, None, None, None, empty)
    pt, ph = treated_conversions / treated_size, holdout_conversions / holdout_size
    se = math.sqrt(pt * (1 - pt) / treated_size + ph * (1 - ph) / holdout_size)
    difference = pt - ph
    interval = (difference - Z95 * se, difference + Z95 * se)
    if holdout_conversions == 0 or treated_conversions == 0:
        note = "no conversions in the holdout" if holdout_conversions == 0 else ""
        note = note or "no conversions in the treated group"
        return Lift(pt, ph, difference, interval, None, None, note)
    log_ratio = math.log(pt / ph)
    log_se = math.sqrt((1 - pt) / treated_conversions + (1 - ph) / holdout_conversions)
    relative = pt / ph - 1
    low, high = (math.exp(log_ratio - Z95 * log_se) - 1, math.exp(log_ratio + Z95 * log_se) - 1)
    return Lift(pt, ph, difference, interval, relative, (low, high))


# --- creators -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scorecard:
    creator: str
    rank: int
    kpi: Kpi
    trend: float | None  # change in engagement rate, last week against the one before
    tier: Literal["A", "B", "C"]

    @property
    def cost_per_result(self) -> float | None:
        return self.kpi.cpa


def scorecards(
    weekly: Mapping[str, Sequence[Totals]],
) -> list[Scorecard]:
    """Creators ranked by signups, then engagement rate; the top quarter is tier A, the bottom
    quarter C. `weekly` holds each creator's totals by week, oldest first."""
    rows = []
    for creator, weeks in weekly.items():
        total = sum(weeks, Totals())
        kpi = kpis(total)
        rates = [kpis(w).engagement_rate for w in weeks[-2:]]
        before, last = (rates[0], rates[1]) if len(rates) == 2 else (None, None)
        trend = last - before if last is not None and before is not None else None
        rows.append((creator, kpi, trend))
    rows.sort(key=lambda r: (-r[1].signups, -(r[1].engagement_rate or 0.0), r[0]))
    count = len(rows)
    cards = []
    for index, (creator, kpi, trend) in enumerate(rows):
        quarter = index / count if count else 0
        tier: Literal["A", "B", "C"] = "A" if quarter < 0.25 else ("C" if quarter >= 0.75 else "B")
        cards.append(Scorecard(creator, index + 1, kpi, trend, tier))
    return cards


# --- budget ---------------------------------------------------------------------------------

ORGANIC_CPA = 8.0  # a cost per signup this low says organic creator partnerships pay


@dataclass(frozen=True)
class Recommendation:
    """A suggestion for the next weeks' split, with the numbers behind it; staff decide."""

    action: str
    split: dict[str, float]
    because: list[str]
    kind: str = "recommendation"


def recommend_budget(
    kpi: Kpi, *, target_cpa: float | None, split: Mapping[str, float]
) -> Recommendation:
    """The decision table: a low cost per signup (under $8 and within target) moves a tenth of
    the paid budget to creator partnerships; a cost over twice the target pivots a quarter of
    it there and asks for an audit; anything else keeps the split. A campaign with no paid
    budget (organic only) is never told to move one: its advice is about the creators' budget."""
    current = {k: float(v) for k, v in split.items()}
    organic = current.get("paid", 0.0) <= 0
    if kpi.cpa is None or kpi.signups == 0:
        return Recommendation(
            "Hold the split: too few signups yet to judge the cost of one",
            current,
            [f"{kpi.signups} signup(s) so far"],
        )
    reasons = [f"cost per signup ${kpi.cpa:,.2f}"]
    if target_cpa is not None:
        reasons.append(f"target ${target_cpa:,.2f}")
    within = target_cpa is None or kpi.cpa <= target_cpa
    if organic:
        return _organic_advice(kpi, target_cpa, current, reasons)
    if kpi.cpa < ORGANIC_CPA and within:
        return Recommendation(
            "Move a tenth of the paid budget to organic creator partnerships",
            _shift(current, 0.10),
            [*reasons, f"under ${ORGANIC_CPA:,.0f}: organic partnerships pay"],
        )
    if target_cpa is not None and kpi.cpa > 2 * target_cpa:
        return Recommendation(
            "Pivot a quarter of the paid budget to creator partnerships and audit content, "
            "targeting and tracking",
            _shift(current, 0.25),
            [*reasons, "more than twice the target"],
        )
    return Recommendation(
        "Hold the split; give the top-tier creators more of the creators' budget",
        current,
        reasons,
    )


def _organic_advice(
    kpi: Kpi, target_cpa: float | None, split: dict[str, float], reasons: list[str]
) -> Recommendation:
    reasons = [*reasons, "no paid budget: organic posting only"]
    if target_cpa is not None and kpi.cpa is not None and kpi.cpa > 2 * target_cpa:
        return Recommendation(
            "Hold the split; audit content, targeting and tracking, and give the top-tier "
            "creators more of the creators' budget",
            split,
            [*reasons, "more than twice the target"],
        )
    return Recommendation(
        "Hold the split; give the top-tier creators more of the creators' budget", split, reasons
    )


def _shift(split: dict[str, float], share_of_paid: float) -> dict[str, float]:
    moved = split.get("paid", 0.0) * share_of_paid
    return {
        **split,
        "paid": round(split.get("paid", 0.0) - moved, 4),
        "creators": round(split.get("creators", 0.0) + moved, 4),
    }
