"""Reading campaigns back for people and scripts: one campaign, the list, the overview `rally
campaign show` prints, and who is on a campaign's team. Applying a campaign file is in
`tasks.campaigns.apply`."""

from typing import TYPE_CHECKING, Any

from sqlalchemy import func, tuple_
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.models import Campaign, Creator, Milestone, RosterMember, RosterStatus, SprintPhase
from tasks.campaigns.tracking import tagged_url

if TYPE_CHECKING:
    # Validating a spec needs its classes; reading a campaign back (`campaign_overview`) does
    # not, and `rally campaign show` starts faster without them.
    from config.campaign import CampaignSpec


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


_specs: dict[str, "CampaignSpec"] = {}


def campaign_spec(campaign: Campaign) -> "CampaignSpec":
    """The campaign's spec, validated once per version (its hash) rather than on every use."""
    from config.campaign import CampaignSpec

    spec = _specs.get(campaign.spec_hash)
    if spec is None:
        if len(_specs) > 64:
            _specs.clear()
        spec = _specs[campaign.spec_hash] = CampaignSpec.model_validate(campaign.spec)
    return spec


def running_live_sprints(session: Session) -> list[tuple[int, str]]:
    """(campaign id, slug) of each campaign whose live sprint is running: started on the
    calendar, not paused, stopped or finished."""
    from store.models import SprintRun, SprintState  # the sprint's tables: not for read commands

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


def staff(spec: "CampaignSpec") -> list[str]:
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


def roster(
    session: Session,
    campaign: Campaign,
    *,
    public_url: str,
    after: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The campaign's active creators with their terms, codes and links (read from the spec as
    stored, the validated file's JSON), by handle and platform; with `after` (a handle and
    platform) and `limit`, one page of them."""
    tiers, tracking = campaign.spec.get("tiers") or {}, campaign.spec["tracking"]
    query = (
        select(RosterMember, Creator)
        .join(Creator, RosterMember.creator_id == Creator.id)  # type: ignore[arg-type]
        .where(RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE)
        .order_by(col(Creator.handle), col(Creator.platform))
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(col(Creator.handle), col(Creator.platform)) > tuple_(*after))
    rows = []
    for member, creator in session.exec(query):
        tier = tiers.get(member.tier or "")
        rate = (
            member.rate_cents
            if member.rate_cents is not None
            else (round(tier["rate"] * 100) if tier else None)
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
                "tracking_url": tagged_url(
                    tracking["landing_url"],
                    tracking["utm_medium"],
                    campaign.slug,
                    creator.platform,
                    creator.handle,
                ),
                "holdout": member.holdout,
                "attributes": creator.attributes,
            }
        )
    return rows


def campaign_overview(
    session: Session, slug: str, *, public_url: str, with_roster: bool = True
) -> dict[str, Any]:
    """Everything `rally campaign show` prints, as plain data (the roster left out where a
    caller pages through it on its own: the API's campaign)."""
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
        **({"roster": roster(session, campaign, public_url=public_url)} if with_roster else {}),
        "public_url": public_url,
    }
