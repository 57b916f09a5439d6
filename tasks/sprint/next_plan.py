"""A draft of the next sprint's campaign file and roster, written when a sprint's last week
closes: the same campaign starting the week after, its targets moved by what this sprint
reached, and its creators with their tiers moved by their scorecards (the top quarter up a
tier, at that tier's rate). Staff edit them and apply them as a new campaign.
"""

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from store.models import Creator, RosterMember, RosterStatus
from tasks.campaigns.campaign import campaign_spec, get_campaign

ROSTER = "next-roster.csv"
COUNTS = ("views", "signups")  # targets that grow with a sprint that met them
STRETCH = 1.1


def next_targets(targets: dict[str, Any], progress: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A target met becomes what was reached (a count target a tenth more than that); a target
    missed stays, to be met next time."""
    moved = dict(targets)
    for name, target in targets.items():
        reached = progress.get(name, {})
        value = reached.get("value")
        if target is None or value is None or not reached.get("met"):
            continue
        if name in COUNTS:
            moved[name] = round(value * STRETCH)
        else:
            moved[name] = round(float(value), 4)
    return moved


def next_tier(spec: CampaignSpec, tier: str | None) -> str | None:
    """The tier above `tier` by rate, or None at the top (or without tiers)."""
    ladder = sorted(spec.tiers, key=lambda name: spec.tiers[name].rate)
    if tier not in ladder or tier == ladder[-1]:
        return None
    return ladder[ladder.index(tier) + 1]


def next_roster(session: Session, slug: str, report: dict[str, Any]) -> tuple[str, list[str]]:
    """The active creators as a roster CSV, each with this sprint's scorecard rank and tier
    beside them; creators in the top quarter move up a tier (their own rate dropped, so the
    tier's applies). The CSV, and the handles moved up."""
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    cards = {c["creator"]: c for c in report["scorecards"]}
    rows = session.exec(
        select(RosterMember, Creator)
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE)
        .order_by(col(Creator.handle))
    ).all()
    extra = sorted({k for _, creator in rows for k in creator.attributes})
    head = ["handle", "platform", "name", "email", "phone", "followers", "segment", "tier"]
    head += ["rate", "last_rank", "last_scorecard", *extra]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=head, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    moved = []
    for member, creator in rows:
        card = cards.get(creator.handle, {})
        tier, rate = member.tier, member.rate_cents
        higher = next_tier(spec, tier) if card.get("tier") == "A" else None
        if higher is not None:
            tier, rate = higher, None
            moved.append(creator.handle)
        writer.writerow(
            {
                **{k: str(v) for k, v in creator.attributes.items()},
                "handle": creator.handle,
                "platform": creator.platform,
                "name": creator.name or "",
                "email": creator.email or "",
                "phone": creator.phone or "",
                "followers": creator.followers or "",
                "segment": member.segment or "",
                "tier": tier or "",
                "rate": f"{rate / 100:.2f}" if rate is not None else "",
                "last_rank": card.get("rank", ""),
                "last_scorecard": card.get("tier", ""),
            }
        )
    return out.getvalue(), moved


def next_plan(
    session: Session, slug: str, report: dict[str, Any], *, moved: list[str] | None = None
) -> str:
    """The draft as YAML text, with a header that says where each change came from."""
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    plan = spec.model_dump(mode="json", exclude_none=True)
    plan["name"] = f"{spec.name} (next sprint)"
    plan["slug"] = f"{slug}-next"[:64]
    plan["sprint"]["start"] = (spec.sprint.start + timedelta(weeks=spec.sprint.weeks)).isoformat()
    plan["kpis"] = next_targets(plan.get("kpis", {}), report["progress"])
    plan["roster"] = ROSTER
    cards = [c for c in report["scorecards"] if not c.get("holdout")]
    best = ", ".join(f"@{c['creator']}" for c in cards[:5]) or "none yet"
    rest = ", ".join(f"@{c['creator']}" for c in cards[-5:][::-1] if c not in cards[:5])
    header = [
        f"# A draft of the sprint after {spec.name}, from its report of week {report['week']}.",
        "# Targets met were moved to what this sprint reached (views and signups a tenth more);",
        "# targets missed were kept. Its roster, next-roster.csv beside it, moves the creators",
        "# with the best scorecards (the top quarter) up a tier. Edit both, then:",
        "# rally campaign apply <this file>",
        f"# Book again first (best scorecards): {best}",
    ]
    if rest:
        header.append(f"# Talk to before booking again (lowest scorecards): {rest}")
    if moved:
        header.append(f"# Moved up a tier: {', '.join('@' + h for h in moved)}")
    return "\n".join(header) + "\n" + yaml.safe_dump(plan, sort_keys=False, allow_unicode=True)


def write_next_plan(session: Session, slug: str, report: dict[str, Any], path: Path) -> None:
    """The plan at `path` and its roster beside it, each written whole or not at all."""
    roster, moved = next_roster(session, slug, report)
    _write(path.parent / ROSTER, roster)
    _write(path, next_plan(session, slug, report, moved=moved))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
