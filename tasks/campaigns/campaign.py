"""Applying a campaign file to the store, and reading campaigns back for people and scripts."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from config.campaign_file import CampaignFileError
from config.errors import RallyError
from store.audit import Change, record
from store.models import (
    Campaign,
    Creator,
    Milestone,
    RosterMember,
    RosterStatus,
    SprintPhase,
    SprintRun,
    SprintState,
)
from store.types import utcnow
from tasks.campaigns.configs import BUILTIN, Configs, applied_with, read_configs, store_configs
from tasks.campaigns.plan import plan_milestones, plan_phases
from tasks.campaigns.tracking import tracking_url


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


# --- reading --------------------------------------------------------------------------------


def get_campaign(session: Session, slug: str) -> Campaign:
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    if campaign is None:
        known = ", ".join(session.exec(select(Campaign.slug).order_by(Campaign.slug))) or "none yet"
        raise RallyError(f"no campaign {slug!r} (campaigns: {known})")
    return campaign


def list_campaigns(session: Session) -> list[dict[str, Any]]:
    active = RosterMember.status == RosterStatus.ACTIVE
    counts = dict(
        session.exec(
            select(RosterMember.campaign_id, func.count())
            .where(active)
            .group_by(col(RosterMember.campaign_id))
        ).all()
    )
    return [
        {
            "slug": c.slug,
            "name": c.name,
            "political": c.political,
            "paid": c.paid,
            "start_date": c.start_date.isoformat(),
            "weeks": c.weeks,
            "creators": counts.get(c.id or 0, 0),
            "updated_at": c.updated_at.isoformat(),
        }
        for c in session.exec(select(Campaign).order_by(Campaign.slug))
    ]


_specs: dict[str, CampaignSpec] = {}


def campaign_spec(campaign: Campaign) -> CampaignSpec:
    """The campaign's spec, validated once per version (its hash) rather than on every use."""
    spec = _specs.get(campaign.spec_hash)
    if spec is None:
        if len(_specs) > 64:
            _specs.clear()
        spec = _specs[campaign.spec_hash] = CampaignSpec.model_validate(campaign.spec)
    return spec


def running_live_sprints(session: Session) -> list[tuple[int, str]]:
    """(campaign id, slug) of each campaign whose live sprint is running: started on the
    calendar, not paused, stopped or finished."""
    rows = session.exec(
        select(Campaign.id, Campaign.slug)
        .join(SprintRun, col(SprintRun.campaign_id) == col(Campaign.id))
        .where(
            SprintRun.mode == "live",
            col(SprintRun.finished_at).is_(None),
            SprintRun.state == SprintState.RUNNING,
        )
        .order_by(col(Campaign.slug))
    ).all()
    return [(campaign_id or 0, slug) for campaign_id, slug in rows]


def staff(spec: CampaignSpec) -> list[str]:
    """Who gets the sprint's digests, prompts and alerts: the campaign's `staff`, else its
    internal reviewers."""
    return list(spec.staff or spec.approvers.get("internal", []))


def on_team(campaign: Campaign, email: str) -> bool:
    """Whether `email` is on the campaign's staff or in one of its approver groups: they may
    read its reports and watch its drafts' videos."""
    spec = campaign_spec(campaign)
    return email in spec.staff or any(email in members for members in spec.approvers.values())


def runs_sprint(campaign: Campaign, email: str) -> bool:
    """Whether `email` is one of the people `staff` names: they see the sprint's page and act
    on it (go-aheads, milestones), as the console's staff do; an approver alone does not."""
    return email in staff(campaign_spec(campaign))


def roster(session: Session, campaign: Campaign, *, public_url: str) -> list[dict[str, Any]]:
    """The campaign's active creators with their terms, codes and links."""
    spec = campaign_spec(campaign)
    query = (
        select(RosterMember, Creator)
        .join(Creator, RosterMember.creator_id == Creator.id)  # type: ignore[arg-type]
        .where(RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE)
        .order_by(Creator.handle)
    )
    rows = []
    for member, creator in session.exec(query):
        tier = spec.tiers.get(member.tier or "")
        rate = (
            member.rate_cents
            if member.rate_cents is not None
            else (round(tier.rate * 100) if tier else None)
        )
        rows.append(
            {
                "handle": creator.handle,
                "platform": creator.platform,
                "name": creator.name,
                "email": creator.email,
                "followers": creator.followers,
                "segment": member.segment,
                "tier": member.tier,
                "rate_cents": rate,
                "rate_from": "roster" if member.rate_cents is not None else "tier",
                "source_code": member.source_code,
                "tracking_link": f"{public_url}/t/{member.tracking_code}",
                "tracking_url": tracking_url(spec, creator.platform, creator.handle),
                "holdout": member.holdout,
                "attributes": creator.attributes,
            }
        )
    return rows


def campaign_overview(session: Session, slug: str, *, public_url: str) -> dict[str, Any]:
    """Everything `rally campaign show` prints, as plain data."""
    campaign = get_campaign(session, slug)
    phases = session.exec(
        select(SprintPhase)
        .where(SprintPhase.campaign_id == campaign.id)
        .order_by(col(SprintPhase.first_week))
    )
    milestones = session.exec(
        select(Milestone)
        .where(Milestone.campaign_id == campaign.id)
        .order_by(col(Milestone.week), col(Milestone.key))
    )
    return {
        "campaign": {
            **campaign.spec,
            "updated_at": campaign.updated_at.isoformat(),
            "source_path": campaign.source_path,
            "policy_hash": campaign.policy_hash,
            "followups_hash": campaign.followups_hash,
            "templates_hash": campaign.templates_hash,
        },
        "plan": {
            "phases": [p.model_dump(mode="json", exclude={"id", "campaign_id"}) for p in phases],
            "milestones": [
                m.model_dump(mode="json", exclude={"id", "campaign_id"}) for m in milestones
            ],
        },
        "roster": roster(session, campaign, public_url=public_url),
        "public_url": public_url,
    }
