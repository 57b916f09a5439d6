"""Applying a campaign file to the store: checking what it names, then creating or updating the
campaign, its configs and its sprint plan, audited. (Reading campaigns back is in
`tasks.campaigns.campaign`, which a read command loads without any of this.)"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlmodel import Session, select

from config.campaign import CampaignSpec
from config.campaign_file import CampaignFileError
from store.audit import Change, record
from store.models import Campaign, Milestone, SprintPhase
from store.types import utcnow
from tasks.campaigns.configs import BUILTIN, Configs, applied_with, read_configs, store_configs
from tasks.campaigns.plan import plan_milestones, plan_phases


def check_references(spec: CampaignSpec, base: Path, *, file: str) -> Configs:
    """Check the files the campaign names (template, policy, rules, roster) and read the ones
    it is applied with, for `apply_campaign` to store.

    The spec keeps them as written, relative to the campaign file, so the same files applied
    from another checkout are the same campaign.
    """
    problems: list[tuple[str, str]] = []
    for path, value, kind in (
        ("brief.template", spec.brief.template, "folder"),
        ("policy", spec.policy, "file"),
        ("followups", spec.followups, "file"),
        ("roster", spec.roster, "file"),
    ):
        if value is None or value == BUILTIN:
            continue
        target = (base / value).resolve()
        if kind == "folder" and (
            target == base.resolve() or not target.is_relative_to(base.resolve())
        ):
            problems.append(
                (path, f"must be a folder inside the campaign's folder (got {value!r})")
            )
        elif not (target.is_dir() if kind == "folder" else target.is_file()):
            problems.append((path, f"no such {kind}: {value} (looked in {target.parent})"))
    problems += _destination_problems(spec)
    if problems:
        raise CampaignFileError(file, problems)
    configs = read_configs(spec, base, file=file)
    followups = configs.followups
    for i, rule in enumerate(followups.spec.rules):
        unknown = sorted(set(rule.when.segments) - spec.segment_ids())
        if unknown:
            problems.append((f"rules[{i}].when.segments", f"no such segment: {', '.join(unknown)}"))
        if rule.action == "notify_staff" and not spec.approvers.get(rule.staff_group):
            problems.append(
                (
                    f"rules[{i}].staff_group",
                    f"the campaign's approvers have no {rule.staff_group!r}",
                )
            )
    if problems:
        raise CampaignFileError(followups.source, problems)
    return configs


def _destination_problems(spec: CampaignSpec) -> list[tuple[str, str]]:
    """Destinations of a type Rally has no connector for, or without the options it needs.
    (The registry is imported here, not at the top: it loads every connector and httpx, which
    the commands that only read a campaign never need.)"""
    from integrations.destinations import DESTINATIONS

    problems = []
    for i, destination in enumerate(spec.destinations):
        kind = DESTINATIONS.get(destination.type)
        if kind is None:
            known = ", ".join(repr(name) for name in DESTINATIONS)
            problems.append((f"destinations[{i}].type", f"must be one of {known}"))
            continue
        missing = [o for o in kind.needs if not destination.options.get(o)]
        if missing:
            needed = f"a {destination.type} destination needs options: {', '.join(missing)}"
            problems.append((f"destinations[{i}]", needed))
    return problems


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": [1]}} -> {"a.b[0]": 1}: the field paths a person would name."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    before, after = _flatten(old), _flatten(new)
    return {
        p: [before.get(p), after.get(p)]
        for p in sorted(before.keys() | after.keys())
        if before.get(p) != after.get(p)
    }


@dataclass
class CampaignChange:
    campaign: Campaign
    outcome: Literal["created", "updated", "unchanged"]
    changed: list[str] = field(default_factory=list)
    plan_changed: bool = False


def _columns(spec: CampaignSpec, source_path: str | None) -> dict[str, Any]:
    committee = spec.committee
    return {
        "name": spec.name,
        "objective": spec.objective,
        "political": spec.political,
        "paid": spec.paid,
        "committee_name": committee.name if committee else None,
        "paid_for_by": committee.paid_for_by if committee else None,
        "jurisdiction": spec.jurisdiction,
        "timezone": spec.timezone,
        "start_date": spec.sprint.start,
        "weeks": spec.sprint.weeks,
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec.spec_hash(),
        "source_path": source_path,
    }


def apply_campaign(
    session: Session,
    spec: CampaignSpec,
    *,
    configs: Configs,
    source_path: str | None,
    actor: str,
) -> CampaignChange:
    """Create or update the campaign named by `spec.slug` with the policy, rules and templates
    read for it (`check_references`); identical files change nothing. A changed policy, rules
    or template set is a change like any other, audited with its old and new hash."""
    campaign = session.exec(select(Campaign).where(Campaign.slug == spec.slug)).first()
    values = _columns(spec, source_path)
    if campaign is None:
        campaign = Campaign(slug=spec.slug, **values)
        session.add(campaign)
        session.flush()
        summary = f"created campaign {spec.slug}: {spec.name}"
        created = {"spec": values["spec"]}
        created.update(
            {k: new for k, (_, new) in store_configs(session, campaign, configs).items()}
        )
        record(
            session, [Change(actor, "campaign.created", "campaign", spec.slug, summary, created)]
        )
        result = CampaignChange(campaign, "created")
    elif (
        campaign.spec_hash == values["spec_hash"]
        and campaign.source_path == source_path
        and applied_with(campaign, configs)
    ):
        result = CampaignChange(campaign, "unchanged")
    else:
        diff = spec_changes(campaign.spec, values["spec"])
        if campaign.source_path != source_path:
            diff["source_path"] = [campaign.source_path, source_path]
        diff.update(store_configs(session, campaign, configs))
        for key, value in values.items():
            setattr(campaign, key, value)
        campaign.updated_at = utcnow()
        summary = f"updated campaign {spec.slug}: {', '.join(diff)}"
        record(session, [Change(actor, "campaign.updated", "campaign", spec.slug, summary, diff)])
        result = CampaignChange(campaign, "updated", list(diff))
    result.plan_changed = _sync_plan(session, campaign, spec, actor)
    return result


def _sync_plan(session: Session, campaign: Campaign, spec: CampaignSpec, actor: str) -> bool:
    """Lay the phases and milestones on the calendar; keep milestone outcomes already recorded."""
    cid = campaign.id
    assert cid is not None
    changed: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    plans: tuple[tuple[type[SprintPhase] | type[Milestone], list[Any]], ...] = (
        (SprintPhase, plan_phases(spec)),
        (Milestone, plan_milestones(spec)),
    )
    for model, planned in plans:
        query = select(model).where(model.campaign_id == cid)
        rows: list[Any] = list(session.exec(query))
        existing = {row.key: row for row in rows}
        for item in planned:
            fields = {k: v for k, v in vars(item).items() if k in model.model_fields and k != "key"}
            row = existing.pop(item.key, None)
            if row is None:
                session.add(model(campaign_id=cid, key=item.key, **fields))
                changed["added"].append(item.key)
            elif any(getattr(row, k) != v for k, v in fields.items()):
                for k, v in fields.items():
                    setattr(row, k, v)
                changed["changed"].append(item.key)
        for key, row in existing.items():
            session.delete(row)
            changed["removed"].append(key)
    if not any(changed.values()):
        return False
    parts = [f"{verb} {', '.join(keys)}" for verb, keys in changed.items() if keys]
    summary = f"sprint plan of {spec.slug} from {spec.sprint.start}: {'; '.join(parts)}"
    record(session, [Change(actor, "sprint_plan.updated", "campaign", spec.slug, summary, changed)])
    return True
