"""The report as one HTML page, for campaign staff: a Jinja template
(`templates/report.html.j2` beside this module) and inline SVG charts from `tasks.reporting.charts`.

The page stands alone: no scripts, no external styles or fonts, so it opens from a file://
URL and prints. Everything from the report is data and is escaped; a value that is None is
"not measurable yet" and shows as a dash.
"""

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from tasks.reporting import charts
from tasks.reporting.charts import DASH

TEMPLATES = Path(__file__).resolve().parent / "templates"
TOP_ROWS = 15
RATES = frozenset(
    {"engagement_rate", "watch_through_rate", "click_through_rate", "conversion_rate"}
)
MONEY = frozenset({"cpa", "cost_per_engaged_user", "cost_per_result", "spend"})
LABELS = {
    "views": "Views",
    "reach": "Reach",
    "engagement_rate": "Engagement rate",
    "watch_through_rate": "Watch-through rate",
    "virality": "Shares per 1,000 views",
    "click_through_rate": "Click-through rate",
    "conversion_rate": "Conversion rate (signups per click)",
    "signups": "Signups",
    "cpa": "Cost per signup (CPA)",
    "cost_per_engaged_user": "Cost per engaged user",
}


# --- formatting ------------------------------------------------------------------------------


def count(value: float | None) -> str:
    """A count with thousands separators: 2,548,599."""
    return DASH if value is None else f"{value:,.0f}"


def money(value: float | None) -> str:
    """Dollars and cents: $19.44."""
    return DASH if value is None else f"${value:,.2f}"


def cents(value: int | None) -> str:
    """Cents as dollars and cents: 7550 is $75.50."""
    return DASH if value is None else money(value / 100)


def percent(value: float | None, digits: int = 2) -> str:
    """A rate as a percentage: 0.0733 is 7.33%."""
    return DASH if value is None else f"{value * 100:,.{digits}f}%"


def points(value: float | None) -> str:
    """A difference of rates in percentage points: 0.0387 is +3.87 pp."""
    return DASH if value is None else f"{value * 100:+.2f} pp"


def kpi(name: str, value: float | None) -> str:
    """A KPI's value in its own unit: a rate as a percentage, a cost in dollars, else a count."""
    if value is None:
        return DASH
    if name in RATES:
        return percent(value)
    if name in MONEY:
        return money(value)
    return f"{value:,.2f}" if name == "virality" else count(value)


def trend(value: float | None) -> str:
    """The change of a creator's engagement rate: ▲ +0.95 pp, ▼ -0.17 pp, or a dash."""
    if value is None:
        return DASH
    shown = round(value * 100, 2)
    return f"{'▲' if shown > 0 else '▼' if shown < 0 else '='} {points(shown / 100)}"


def label(name: str, short: bool = False) -> str:
    """A KPI's or key's name for people: click_through_rate is "Click-through rate"; `short`
    leaves out what is in parentheses."""
    text = LABELS.get(name, name.replace("_", " ").capitalize())
    return text.split(" (")[0] if short else text


def signed_percent(value: float | None) -> str:
    """A relative change as a signed whole percentage: 1.59 is +159%."""
    return DASH if value is None else f"{value * 100:+,.0f}%"


def outcome_text(outcome: Mapping[str, Any]) -> str:
    """A milestone's outcome in a line: its note, briefs acknowledged, KPIs behind, or else
    its keys and numbers."""
    if "note" in outcome:
        return str(outcome["note"])
    if "acknowledged" in outcome and "briefs" in outcome:
        share = outcome.get("share")
        of = f"{count(outcome['acknowledged'])} of {count(outcome['briefs'])} briefs acknowledged"
        return of + (f" ({percent(share, 0)})" if share is not None else "")
    if "behind" in outcome:
        shares, wanted = outcome.get("shares") or {}, outcome.get("wanted")
        bar = f"{percent(wanted, 0)} of target" if wanted is not None else "target"
        behind = [
            f"{label(k, short=True).lower()} {percent(shares.get(k), 0)}" for k in outcome["behind"]
        ]
        return f"under {bar}: {', '.join(behind)}" if behind else f"every KPI at {bar} or more"
    return "; ".join(f"{label(k).lower()} {_number(v)}" for k, v in outcome.items()) or DASH


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return count(value) if isinstance(value, int) else f"{value:,.2f}"


# --- charts ----------------------------------------------------------------------------------


def weekly_charts(report: Mapping[str, Any]) -> dict[str, Markup]:
    """Views and signups a week, to date against their targets, and the engagement rate."""
    weeks = report["weekly"]
    labels = [str(w["week"]) for w in weeks]
    targets = report["targets"]

    def to_date(key: str, name: str) -> Markup:
        return charts.line_chart(
            labels,
            [charts.Series(f"{name} to date", [w[f"{key}_to_date"] for w in weeks])],
            label=f"{name.capitalize()} to date against the target",
            y_label=f"{name} to date",
            fmt=count,
            target=targets.get(key),
        )

    return {
        "views": charts.bar_chart(
            labels,
            [w["views"] for w in weeks],
            label="Views per week",
            y_label="views",
            fmt=count,
        ),
        "views_to_date": to_date("views", "views"),
        "signups": charts.bar_chart(
            labels,
            [w["signups"] for w in weeks],
            label="Signups per week",
            y_label="signups",
            fmt=count,
        ),
        "signups_to_date": to_date("signups", "signups"),
        "engagement": charts.line_chart(
            labels,
            [charts.Series("engagement rate", [w["engagement_rate"] for w in weeks])],
            label="Engagement rate per week against the target",
            y_label="engagement rate",
            fmt=percent,
            axis_fmt=lambda v: percent(v, 1),
            target=targets.get("engagement_rate"),
        ),
    }


def lift_chart(lift: Mapping[str, Any]) -> Markup | None:
    """The difference and the relative lift with their 95% intervals; None without numbers."""
    rows = []
    if lift.get("difference") is not None and lift.get("difference_interval"):
        low, high = lift["difference_interval"]
        rows.append(charts.Interval("Difference", lift["difference"], low, high, points))
    if lift.get("relative") is not None and lift.get("relative_interval"):
        low, high = lift["relative_interval"]
        rows.append(charts.Interval("Relative lift", lift["relative"], low, high, signed_percent))
    if not rows:
        return None
    return charts.interval_chart(rows, label="Holdout lift with 95% intervals")


def page_charts(report: Mapping[str, Any]) -> dict[str, Markup | None]:
    """Every chart of the page, by name."""
    progress = report["progress"]
    shares = [(label(k, short=True), p["share"], p["met"]) for k, p in progress.items()]
    funnel = [(s["step"], s["count"], s["of_previous"]) for s in report["funnel"]]
    return {
        "shares": charts.share_chart(shares, label="Share of target per KPI") if shares else None,
        **weekly_charts(report),
        "funnel": charts.funnel_chart(funnel, label="Funnel from views to signups")
        if funnel
        else None,
        "lift": lift_chart(report["lift"]),
    }


# --- the page --------------------------------------------------------------------------------


@cache
def environment() -> Environment:
    """The report's Jinja environment: autoescaped, and strict about missing names."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    env.filters.update(
        count=count,
        money=money,
        cents=cents,
        percent=percent,
        points=points,
        kpi=kpi,
        trend=trend,
        label=label,
        outcome=outcome_text,
        signed=signed_percent,
    )
    return env


def render_html(report: dict[str, Any]) -> str:
    """The whole report as one self-contained HTML page."""
    attribution = report["attribution"]
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            campaign=report["campaign"],
            charts=page_charts(report),
            lower_is_better=("cpa", "cost_per_engaged_user"),
            by_creator=attribution["by_creator"][:TOP_ROWS],
            by_video=attribution["by_video"][:TOP_ROWS],
            top_rows=TOP_ROWS,
        )
    )
