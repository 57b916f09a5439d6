"""The campaign report page (tasks/reporting/page.py) opened from a file:// URL in a real browser.

The reports are built here from `tasks.reporting.measurement` over a few hand-checkable totals:
three weeks (the first without views), 10,000 views, 100 signups and $1,944 of spend, so the cost
per signup is $19.44 against a target of $8.00.
"""

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from tasks.reporting.charts import bar_chart
from tasks.reporting.measurement import (
    Totals,
    against_targets,
    kpis,
    lift,
    recommend_budget,
    scorecards,
)
from tasks.reporting.page import render_html

CAMPAIGN_NAME = "First Vote PA 2027"
DASH = "\N{EN DASH}"  # what the page shows for "not measurable yet"
SCRIPT_HANDLE = "<script>window.pwned = 1; alert(1)</script>"
TARGETS = {"views": 20000, "engagement_rate": 0.06, "signups": 400, "cpa": 8.0}
SPLIT = {"creators": 0.5, "paid": 0.4, "tools": 0.1}


def creator_weeks(scale: int) -> list[Totals]:
    """One creator's three weeks: nothing in the first, then two weeks of activity."""
    return [
        Totals(),
        Totals(
            views=2000 * scale,
            reach=1600 * scale,
            likes=100 * scale,
            comments=20 * scale,
            shares=10 * scale,
            clicks=20 * scale,
            signups=20 * scale,
            spend=486.0 * scale,
        ),
        Totals(
            views=3000 * scale,
            reach=2400 * scale,
            likes=150 * scale,
            comments=30 * scale,
            shares=20 * scale,
            clicks=30 * scale,
            signups=30 * scale,
            spend=486.0 * scale,
        ),
    ]


def kpi_row(totals: Totals) -> dict[str, Any]:
    return {**kpis(totals).as_dict(), "clicks": totals.clicks, "spend": totals.spend}


def make_report(
    creators: dict[str, list[Totals]], *, weeks: int, holdout: tuple[int, int] = (0, 0)
) -> dict[str, Any]:
    """A report shaped like `build_report`'s, from creators' weekly totals."""
    by_week = [sum((c[w] for c in creators.values()), Totals()) for w in range(weeks)]
    total = sum(by_week, Totals())
    kpi = kpis(total)
    weekly, running = [], Totals()
    for week, totals in enumerate(by_week, start=1):
        running = running + totals
        weekly.append(
            {
                "week": week,
                **kpi_row(totals),
                "views_to_date": running.views,
                "signups_to_date": running.signups,
            }
        )
    funnel_counts = [
        ("Views", total.views),
        ("Engaged", total.engagements),
        ("Link clicks", total.clicks),
        ("Signups", total.signups),
    ]
    cards = scorecards({handle: c[:weeks] for handle, c in creators.items()})
    treated = (total.signups, total.clicks)
    return {
        "campaign": {
            "slug": "first-vote",
            "name": CAMPAIGN_NAME,
            "start": "2027-02-01",
            "objective": "Register first-time voters.",
            "weeks": 12,
            "mode": "rehearsal",
            "sample": 0.1,
        },
        "week": weeks,
        "targets": TARGETS,
        "totals": kpi_row(total),
        "progress": {k: asdict(v) for k, v in against_targets(kpi, TARGETS).items()},
        "weekly": weekly,
        "segments": [
            {
                "segment": "gen_z",
                **kpi_row(total),
                "benchmarks": {"engagement_rate": 0.07},
                "against_benchmarks": {
                    k: asdict(v) for k, v in against_targets(kpi, {"engagement_rate": 0.07}).items()
                },
            }
        ],
        "scorecards": [
            {
                "rank": c.rank,
                "creator": c.creator,
                "segment": "gen_z",
                "holdout": False,
                "tier": c.tier,
                "trend": c.trend,
                "cost_per_result": c.cost_per_result,
                **c.kpi.as_dict(),
            }
            for c in cards
        ],
        "funnel": [
            {
                "step": step,
                "count": n,
                "of_previous": n / funnel_counts[i - 1][1]
                if i and funnel_counts[i - 1][1]
                else None,
            }
            for i, (step, n) in enumerate(funnel_counts)
        ],
        "attribution": {
            "signups": total.signups,
            "by_creator": [
                {
                    "creator": c.creator,
                    "last_touch": float(c.kpi.signups),
                    "linear": float(c.kpi.signups),
                }
                for c in cards
            ],
            "by_video": [],
        },
        "lift": {
            **asdict(lift(*treated, *holdout)),
            "treated": {"converted": treated[0], "people": treated[1]},
            "holdout": {"converted": holdout[0], "people": holdout[1]},
            "measure": "commenters who went on to sign up",
            "holdout_creators": [],
        },
        "recommendation": asdict(recommend_budget(kpi, target_cpa=8.0, split=SPLIT)),
        "milestones": [
            {
                "key": "briefs_acknowledged",
                "name": "Every brief acknowledged",
                "week": 1,
                "due_on": "2027-02-07",
                "status": "missed",
                "outcome": {"acknowledged": 1, "briefs": 2, "share": 0.5},
            },
            {
                "key": "postmortem",
                "name": "Postmortem",
                "week": 12,
                "due_on": "2027-04-25",
                "status": "pending",
                "outcome": {},
            },
        ],
    }


def full_report() -> dict[str, Any]:
    """Three weeks, two creators (one with a <script> handle), a holdout of 100 people."""
    creators = {"maya.votes.pa": creator_weeks(1), SCRIPT_HANDLE: creator_weeks(1)}
    return make_report(creators, weeks=3, holdout=(1, 100))


def zero_report() -> dict[str, Any]:
    """Week 1 with nothing: no views, no creators' results, no holdout."""
    report = make_report({}, weeks=1)
    report["scorecards"], report["segments"], report["milestones"] = [], [], []
    return report


def open_report(browser, tmp_path: Path, report: dict[str, Any]):
    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    page = browser.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.as_uri())
    return page, dialogs


# --- in the browser ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_page_shows_the_campaign_kpis_and_charts(browser, tmp_path):
    page, _ = open_report(browser, tmp_path, full_report())
    assert CAMPAIGN_NAME in page.title()
    assert page.locator("h1").inner_text() == CAMPAIGN_NAME
    assert page.locator("#rehearsal-note").is_visible()

    cpa = page.locator(".kpi-table tr", has_text="Cost per signup")
    assert cpa.locator("td").nth(1).inner_text() == "$19.44"
    assert cpa.locator("td").nth(2).inner_text() == "$8.00"
    views = page.locator(".kpi-table tr", has_text="Views")
    assert views.locator("td").nth(1).inner_text() == "10,000"
    assert views.locator("td").nth(2).inner_text() == "20,000"

    assert page.locator("#chart-views svg rect").count() == 3  # one bar a week
    assert page.locator("#chart-signups svg rect").count() == 3
    for chart in ("#chart-views-to-date", "#chart-signups-to-date", "#chart-engagement"):
        assert page.locator(f"{chart} svg circle").count() >= 2, chart
    assert page.locator("#kpis svg rect").count() == 4  # every KPI with a target measured
    assert page.locator("#funnel svg rect").count() == 4
    assert page.locator("#lift svg circle").count() == 2  # difference and relative lift
    assert page.locator("#lift-note").count() == 0
    assert page.locator("#recommendation h2").inner_text().startswith("Recommendation")
    assert page.get_by_text("1 of 2 briefs acknowledged (50%)").is_visible()
    page.close()


@pytest.mark.slow
def test_a_script_in_a_creator_handle_is_shown_not_run(browser, tmp_path):
    page, dialogs = open_report(browser, tmp_path, full_report())
    scorecard = page.locator(".scorecards td", has_text=SCRIPT_HANDLE)
    assert scorecard.count() == 1 and scorecard.is_visible()
    assert scorecard.inner_text() == SCRIPT_HANDLE
    assert dialogs == []
    assert page.evaluate("window.pwned") is None
    page.close()


@pytest.mark.slow
def test_a_report_without_views_shows_dashes_and_no_holdout(browser, tmp_path):
    page, dialogs = open_report(browser, tmp_path, zero_report())
    rate = page.locator(".kpi-table tr", has_text="Engagement rate")
    assert rate.locator("td").nth(1).inner_text() == DASH
    assert rate.locator("td").nth(2).inner_text() == "6.00%"
    assert "not measurable yet" in rate.inner_text()
    assert (
        page.locator(".kpi-table tr", has_text="Cost per signup").locator("td").nth(1).inner_text()
        == DASH
    )
    assert page.locator("#chart-views svg rect").count() == 1
    assert page.locator("#lift-note").inner_text() == "No holdout."
    assert page.locator("#lift svg").count() == 0
    assert page.get_by_text("No creators yet.").is_visible()
    assert dialogs == []
    page.close()


# --- without a browser ------------------------------------------------------------------------


def test_week_one_with_nothing_renders():
    page = render_html(zero_report())
    assert CAMPAIGN_NAME in page
    assert "Week 1 of 12" in page
    assert "No holdout" in page
    assert "<script" not in page


def test_text_in_a_chart_is_escaped():
    svg = str(bar_chart(["<b>1</b>"], [5], label="a <i>chart</i>", y_label="views", fmt=str))
    assert "<b>" not in svg and "<i>" not in svg
    assert "&lt;b&gt;1&lt;/b&gt;" in svg


def test_attribution_says_why_it_counts_fewer_signups_than_the_kpis():
    report = full_report()
    report["attribution"]["signups"] = 13
    said = " ".join(render_html(report).split())
    assert "13 of the 100 signups can be attributed: a rehearsal meets only a 10% sample" in said
    report["campaign"]["mode"] = "live"
    said = " ".join(render_html(report).split())
    assert "13 of the 100 signups came through Rally's signup page and can be attributed" in said
    report["attribution"]["signups"] = 100
    assert "100 signups in all." in " ".join(render_html(report).split())
