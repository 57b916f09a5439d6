"""A draft of the next sprint's campaign file, written when a sprint's last week closes: the
same campaign starting the week after, its targets moved by what this sprint reached, and the
creators worth booking again named at the top. Staff edit it and apply it as a new campaign.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session

from tasks.campaigns.campaign import campaign_spec, get_campaign

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


def next_plan(session: Session, slug: str, report: dict[str, Any]) -> str:
    """The draft as YAML text, with a header that says where each change came from."""
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    plan = spec.model_dump(mode="json", exclude_none=True)
    plan["name"] = f"{spec.name} (next sprint)"
    plan["slug"] = f"{slug}-next"[:64]
    plan["sprint"]["start"] = (spec.sprint.start + timedelta(weeks=spec.sprint.weeks)).isoformat()
    plan["kpis"] = next_targets(plan.get("kpis", {}), report["progress"])
    plan.pop("roster", None)  # a path beside the old file; the next roster is for staff to name
    cards = [c for c in report["scorecards"] if not c.get("holdout")]
    best = ", ".join(f"@{c['creator']}" for c in cards[:5]) or "none yet"
    rest = ", ".join(f"@{c['creator']}" for c in cards[-5:][::-1] if c not in cards[:5])
    header = [
        f"# A draft of the sprint after {spec.name}, from its report of week {report['week']}.",
        "# Targets met were moved to what this sprint reached (views and signups a tenth more);",
        "# targets missed were kept. Add `roster: FILE` for the next sprint's creators, edit the",
        "# rest as needed, then: rally campaign apply <this file>",
        f"# Book again first (best scorecards): {best}",
    ]
    if rest:
        header.append(f"# Talk to before booking again (lowest scorecards): {rest}")
    return "\n".join(header) + "\n" + yaml.safe_dump(plan, sort_keys=False, allow_unicode=True)


def write_next_plan(session: Session, slug: str, report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(next_plan(session, slug, report), encoding="utf-8")
    partial.replace(path)
