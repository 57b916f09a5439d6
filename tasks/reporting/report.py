"""The campaign report: the numbers of `metrics` through `measurement`, as one plain
structure that the HTML page, the CSV files, the JSON file and the Prefect artifact are all
written from, so they never disagree.
"""

import csv
import json
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from store.models import Campaign, Milestone, SprintRun
from tasks.amplification.metrics import paid_beside_organic
from tasks.campaigns.campaign import campaign_spec, get_campaign
from tasks.reporting.measurement import (
    Kpi,
    Totals,
    against_targets,
    attribute,
    kpis,
    lift,
    recommend_budget,
    scorecards,
)
from tasks.reporting.metrics import CampaignNumbers, read_numbers

KPI_NAMES = (
    "views",
    "reach",
    "engagement_rate",
    "watch_through_rate",
    "virality",
    "click_through_rate",
    "conversion_rate",
    "signups",
    "cpa",
    "cost_per_engaged_user",
)
TOP = 10


def weeks_so_far(session: Session, campaign: Campaign) -> int:
    run = session.exec(select(SprintRun).where(SprintRun.campaign_id == campaign.id)).first()
    return max(run.weeks_done, 1) if run else 1


def build_report(session: Session, slug: str, *, week: int | None = None) -> dict[str, Any]:
    """Everything a report shows, up to the end of `week` (by default the last week done)."""
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    weeks = min(week or weeks_so_far(session, campaign), campaign.weeks)
    numbers = read_numbers(session, campaign, weeks=weeks)
    total = kpis(numbers.total)
    targets = spec.kpis.model_dump()
    run = session.exec(select(SprintRun).where(SprintRun.campaign_id == campaign.id)).first()
    return {
        "campaign": {
            "slug": slug,
            "name": spec.name,
            "objective": spec.objective,
            "start": spec.sprint.start.isoformat(),
            "weeks": campaign.weeks,
            "mode": run.mode if run else "not started",
            "sample": run.sample if run else None,  # the share of the audience met one by one
        },
        "week": weeks,
        "targets": {k: v for k, v in targets.items() if v is not None},
        "totals": _kpi_row(total, numbers.total),
        "spend_from": numbers.spend_from,
        "progress": {k: asdict(v) for k, v in against_targets(total, targets).items()},
        "weekly": _weekly(numbers),
        "segments": _segments(numbers, spec),
        "scorecards": _scorecards(numbers),
        "funnel": _funnel(numbers.total),
        "attribution": _attribution(numbers),
        "lift": {
            **asdict(lift(*numbers.treated, *numbers.held_out)),
            "treated": {"converted": numbers.treated[0], "people": numbers.treated[1]},
            "holdout": {"converted": numbers.held_out[0], "people": numbers.held_out[1]},
            "measure": "commenters who went on to sign up",
            "holdout_creators": sorted(m.handle for m in numbers.members.values() if m.holdout),
        },
        "recommendation": asdict(
            recommend_budget(total, target_cpa=spec.kpis.cpa, split=spec.budget.split.model_dump())
        ),
        "milestones": _milestones(session, campaign),
        "paid": _paid(session, campaign, campaign.start_date + timedelta(weeks=weeks)),
    }


def _paid(session: Session, campaign: Campaign, end: date) -> dict[str, Any]:
    """The Spark Ads boosts' paid figures beside their posts' organic runs up to the report's
    `end`, and their totals (`tasks.amplification.metrics`)."""
    rows = paid_beside_organic(session, campaign, as_of=end)
    spend = sum(r["paid"]["spend_cents"] for r in rows)
    conversions = sum(r["paid"]["conversions"] for r in rows)
    plays = sum(r["paid"]["video_plays"] for r in rows)
    views = sum({r["creative"]: r["organic"]["views"] for r in rows}.values())  # a post once
    return {
        "boosts": rows,
        "spend_cents": spend,
        "conversions": conversions,
        "cost_per_conversion_cents": round(spend / conversions) if conversions else None,
        "lift": round(plays / views, 4) if views else None,
    }


def _kpi_row(kpi: Kpi, totals: Totals) -> dict[str, Any]:
    return {**kpi.as_dict(), "clicks": totals.clicks, "spend": round(totals.spend, 2)}


def _weekly(numbers: CampaignNumbers) -> list[dict[str, Any]]:
    rows, running = [], Totals()
    for week in range(1, numbers.weeks + 1):
        totals = numbers.by_week[week]
        running = running + totals
        rows.append(
            {
                "week": week,
                **_kpi_row(kpis(totals), totals),
                "views_to_date": running.views,
                "signups_to_date": running.signups,
            }
        )
    return rows


def _segments(numbers: CampaignNumbers, spec: CampaignSpec) -> list[dict[str, Any]]:
    benchmarks = {s.id: s.benchmarks.model_dump(exclude_none=True) for s in spec.segments}
    rows = []
    for segment, totals in sorted(numbers.by_segment.items()):
        kpi = kpis(totals)
        rows.append(
            {
                "segment": segment,
                **_kpi_row(kpi, totals),
                "benchmarks": benchmarks.get(segment, {}),
                "against_benchmarks": {
                    k: asdict(v)
                    for k, v in against_targets(kpi, benchmarks.get(segment, {})).items()
                },
            }
        )
    return rows


def _scorecards(numbers: CampaignNumbers) -> list[dict[str, Any]]:
    by_handle = {m.handle: m for m in numbers.members.values()}
    return [
        {
            "rank": card.rank,
            "creator": card.creator,
            "segment": by_handle[card.creator].segment if card.creator in by_handle else "",
            "holdout": by_handle[card.creator].holdout if card.creator in by_handle else False,
            "tier": card.tier,
            "trend": card.trend,
            "cost_per_result": card.cost_per_result,
            **card.kpi.as_dict(),
        }
        for card in scorecards(numbers.by_creator_week)
    ]


def _funnel(totals: Totals) -> list[dict[str, Any]]:
    steps = (
        ("Views", totals.views),
        ("Engaged", totals.engagements),
        ("Link clicks", totals.clicks),
        ("Signups", totals.signups),
    )
    return [
        {
            "step": name,
            "count": count,
            "of_previous": (count / steps[i - 1][1]) if i and steps[i - 1][1] else None,
        }
        for i, (name, count) in enumerate(steps)
    ]


def _attribution(numbers: CampaignNumbers) -> dict[str, Any]:
    result: dict[str, Any] = {"signups": len(numbers.signups)}
    for by in ("creator", "video"):
        last = attribute(numbers.signups, numbers.touches, model="last", by=by)
        linear = attribute(numbers.signups, numbers.touches, model="linear", by=by)
        keys = sorted(set(last) | set(linear), key=lambda k: (-last.get(k, 0.0), k))
        result[f"by_{by}"] = [
            {
                by: key,
                **({"creator": numbers.creator_of_video.get(key, "")} if by == "video" else {}),
                "last_touch": round(last.get(key, 0.0), 3),
                "linear": round(linear.get(key, 0.0), 3),
            }
            for key in keys
        ]
    return result


def _milestones(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Milestone).where(Milestone.campaign_id == campaign.id).order_by(col(Milestone.week))
    )
    return [
        {
            "key": m.key,
            "name": m.name,
            "week": m.week,
            "due_on": m.due_on.isoformat(),
            "status": m.status,
            "outcome": m.outcome or {},
        }
        for m in rows
    ]


# --- writing ---------------------------------------------------------------------------------


def write_report(report: dict[str, Any], out: Path, *, html: str | None = None) -> dict[str, Path]:
    """report.json, weekly.csv, scorecards.csv, attribution.csv and report.html in `out`
    (`html`: the page, when it is rendered already)."""
    from tasks.reporting.page import render_html

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "report.json",
        "weekly": out / "weekly.csv",
        "scorecards": out / "scorecards.csv",
        "attribution": out / "attribution.csv",
        "html": out / "report.html",
    }
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    _csv(paths["weekly"], report["weekly"])
    _csv(paths["scorecards"], report["scorecards"])
    _csv(paths["attribution"], report["attribution"]["by_creator"])
    paths["html"].write_text(render_html(report) if html is None else html)
    return paths


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        if not rows:
            return
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
