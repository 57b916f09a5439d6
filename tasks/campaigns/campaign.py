"""Reading campaigns back for people and scripts: one campaign, the list, the overview `rally
campaign show` prints, and who is on a campaign's team. Applying a campaign file is in
`tasks.campaigns.apply`.

The list, the overview and the roster read plain rows (`store.tables`): a read command then
builds none of the campaign's model classes, most of its start-up otherwise."""

from typing import TYPE_CHECKING, Any, Protocol

from pydantic_core import to_jsonable_python
from sqlalchemy import Row, func, tuple_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.tables import campaigns, creators, milestones, roster_members, sprint_phases
from tasks.campaigns.tracking import tagged_url

if TYPE_CHECKING:
    # Validating a spec needs its classes; reading a campaign back (`campaign_overview`) does
    # not, and `rally campaign show` starts faster without them.
    from config.campaign import CampaignSpec
    from store.models import Campaign, Creator, RosterMember

ACTIVE = "active"  # RosterStatus.ACTIVE, without loading the roster's model class


class CampaignRecord(Protocol):
    """What `roster` reads of a campaign: a `Campaign` or a row of `campaign_row`."""

    @property
    def id(self) -> int | None: ...
    @property
    def slug(self) -> str: ...
    @property
    def spec(self) -> dict[str, Any]: ...


def get_campaign(session: Session, slug: str) -> "Campaign":
    from store.models import Campaign

    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    if campaign is None:
        raise _no_campaign(session, slug)
    return campaign


def roster_member(
    session: Session, campaign: "Campaign", handle: str, *, active: bool = False
) -> "tuple[RosterMember, Creator] | None":
    """The campaign's roster member with exactly this handle (no @), and their creator; with
    `active`, only one still on the roster."""
    from store.models import Creator, RosterMember

    query = (
        select(RosterMember, Creator)
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(RosterMember.campaign_id == campaign.id, Creator.handle == handle)
    )
    if active:
        query = query.where(RosterMember.status == ACTIVE)
    found = session.exec(query).first()
    return (found[0], found[1]) if found else None


def campaign_row(session: Session, slug: str) -> Row[Any]:
    """The campaign as a plain row of `store.tables.campaigns`' columns."""
    row = session.execute(sa_select(campaigns).where(campaigns.c.slug == slug)).first()
    if row is None:
        raise _no_campaign(session, slug)
    return row


def _no_campaign(session: Session, slug: str) -> RallyError:
    slugs = session.execute(sa_select(campaigns.c.slug).order_by(campaigns.c.slug)).scalars()
    return RallyError(f"no campaign {slug!r} (campaigns: {', '.join(slugs) or 'none yet'})")


def list_campaigns(session: Session) -> list[dict[str, Any]]:
    counts = dict(
        session.execute(
            sa_select(roster_members.c.campaign_id, func.count())
            .where(roster_members.c.status == ACTIVE)
            .group_by(roster_members.c.campaign_id)
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
        for c in session.execute(sa_select(campaigns).order_by(campaigns.c.slug))
    ]


_specs: dict[str, "CampaignSpec"] = {}


def campaign_spec(campaign: "Campaign | Row[Any]") -> "CampaignSpec":
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
    from store.models import Campaign, SprintRun, SprintState

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


def on_team(campaign: "Campaign", email: str) -> bool:
    """Whether `email` is on the campaign's staff or in one of its approver groups: they may
    read its reports and watch its drafts' videos."""
    spec = campaign_spec(campaign)
    return email in spec.staff or any(email in members for members in spec.approvers.values())


def runs_sprint(campaign: "Campaign", email: str) -> bool:
    """Whether `email` is one of the people `staff` names: they see the sprint's page and act
    on it (go-aheads, milestones), as the console's staff do; an approver alone does not."""
    return email in staff(campaign_spec(campaign))


def roster(
    session: Session,
    campaign: CampaignRecord,
    *,
    public_url: str,
    after: tuple[str, str] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The campaign's active creators with their terms, codes and links (read from the spec as
    stored, the validated file's JSON), by handle and platform; with `after` (a handle and
    platform) and `limit`, one page of them."""
    tiers, tracking = campaign.spec.get("tiers") or {}, campaign.spec["tracking"]
    member, creator = roster_members.c, creators.c
    query = (
        sa_select(roster_members, creators)
        .join(creators, member.creator_id == creator.id)
        .where(member.campaign_id == campaign.id, member.status == ACTIVE)
        .order_by(creator.handle, creator.platform)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(creator.handle, creator.platform) > tuple_(*after))
    rows = []
    for row in session.execute(query):
        tier = tiers.get(row.tier or "")
        rate = (
            row.rate_cents
            if row.rate_cents is not None
            else (round(tier["rate"] * 100) if tier else None)
        )
        rows.append(
            {
                "handle": row.handle,
                "platform": row.platform,
                "name": row.name,
                "email": row.email,
                "followers": row.followers,
                "segment": row.segment,
                "tier": row.tier,
                "rate_cents": rate,
                "rate_from": "roster" if row.rate_cents is not None else "tier",
                "source_code": row.source_code,
                "tracking_link": f"{public_url}/t/{row.tracking_code}",
                "tracking_url": tagged_url(
                    tracking["landing_url"],
                    tracking["utm_medium"],
                    campaign.slug,
                    row.platform,
                    row.handle,
                ),
                "holdout": row.holdout,
                "attributes": row.attributes,
            }
        )
    return rows


def campaign_overview(
    session: Session, slug: str, *, public_url: str, with_roster: bool = True
) -> dict[str, Any]:
    """Everything `rally campaign show` prints, as plain data (the roster left out where a
    caller pages through it on its own: the API's campaign)."""
    campaign = campaign_row(session, slug)
    phase, milestone = sprint_phases.c, milestones.c
    phases = session.execute(
        sa_select(*_shown(sprint_phases))
        .where(phase.campaign_id == campaign.id)
        .order_by(phase.first_week)
    )
    plan_milestones = session.execute(
        sa_select(*_shown(milestones))
        .where(milestone.campaign_id == campaign.id)
        .order_by(milestone.week, milestone.key)
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
            "phases": [to_jsonable_python(row._asdict()) for row in phases],
            "milestones": [to_jsonable_python(row._asdict()) for row in plan_milestones],
        },
        **({"roster": roster(session, campaign, public_url=public_url)} if with_roster else {}),
        "public_url": public_url,
    }


def _shown(plan_table: Any) -> list[Any]:
    """A plan table's columns but its keys (`id`, `campaign_id`), as the overview shows a row."""
    return [c for c in plan_table.c if c.name not in ("id", "campaign_id")]
