"""What the staff console's Boosts page shows of a campaign's Spark Ads: the budget the boosts
commit against the cap, each post on its way to a boost (recommended, asked, reviewed as a
paid placement, authorized) with what it waits for, and the boosts with their paid figures
beside their posts' organic runs. Read only: acting on them is `rally boost`, which talks to
TikTok."""

from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from store.models import (
    Boost,
    BoostStatus,
    Campaign,
    Creative,
    Creator,
    RosterMember,
    SparkAuthorization,
    SparkRequest,
)
from tasks.amplification.boosts import boost_cap, committed_cents, paid_review_refusal
from tasks.amplification.metrics import paid_beside_organic
from tasks.amplification.winners import winners
from tasks.campaigns.campaign import campaign_spec


def boosts_overview(session: Session, campaign: Campaign, *, today: date) -> dict[str, Any]:
    """The page's figures (see the module); `enabled` False when the campaign file has no
    `amplification:`, `political` True when the policy refuses every boost."""
    spec = campaign_spec(campaign)
    if spec.amplification is None or spec.political:
        return {"enabled": spec.amplification is not None, "political": spec.political}
    found = winners(session, campaign)
    picked = {w.post.creative_id: w for w in found.picks}
    asked = set(
        session.exec(
            select(SparkRequest.creative_id).where(SparkRequest.campaign_id == campaign.id)
        ).all()
    )
    boosted = {
        b.creative_id: b
        for b in session.exec(
            select(Boost).where(
                Boost.campaign_id == campaign.id, Boost.status != BoostStatus.CANCELLED
            )
        )
    }
    unfinished = {c for c, b in boosted.items() if b.remote_ad_id is None}
    ids = sorted((set(picked) | asked) - set(boosted) | unfinished)
    rows = session.exec(
        select(Creative, Creator.handle)
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(col(Creative.id).in_(ids))
    ).all()
    rank = {w.post.creative_id: n for n, w in enumerate(found.picks)}  # best first
    on_the_way = []
    # Recommended posts first, best first; then the others asked about, oldest first.
    for creative, handle in sorted(rows, key=lambda r: _rank(rank, r[0].id or 0)):
        pick = picked.get(creative.id or 0)
        on_the_way.append(
            {
                "creative": creative.id,
                "title": creative.title,
                "creator": handle,
                "views": pick.post.views if pick else None,
                "engagement_multiple": pick.engagement_multiple if pick else None,
                "conversion_multiple": pick.conversion_multiple if pick else None,
                "recommended": pick is not None,
                "stands": _stands(
                    session,
                    campaign,
                    creative,
                    creative.id in asked,
                    boosted.get(creative.id or 0),
                    today,
                ),
            }
        )
    cap, capped_by = boost_cap(session, campaign)
    return {
        "enabled": True,
        "political": False,
        "committed_cents": committed_cents(session, campaign, today),
        "cap_cents": cap,
        "capped_by": capped_by,
        "medians": {
            "engagement_rate": found.median_engagement_rate,
            "conversion_rate": found.median_conversion_rate,
            "above": found.above_median,
            "min_views": found.min_views,
            "considered": found.considered,
        },
        "on_the_way": on_the_way,
        "boosts": paid_beside_organic(session, campaign, as_of=today),
    }


def _rank(rank: dict[int, int], creative_id: int) -> tuple[int, int]:
    return rank.get(creative_id, len(rank)), creative_id


def _stands(
    session: Session,
    campaign: Campaign,
    creative: Creative,
    asked: bool,
    unfinished: Boost | None,
    today: date,
) -> dict[str, str | None]:
    """Where a post not yet boosted stands, in a sentence, and the command of its next step
    (none while it waits for someone)."""
    slug, number = campaign.slug, creative.id
    if unfinished is not None:
        return {
            "said": f"Boost {unfinished.id} stopped part way: start it again to go on, or give "
            f"it up with `rally boost cancel {slug} {unfinished.id} --reason ...`.",
            "next": f"rally boost start {slug} {number}",
        }
    if not asked:
        return {"said": "Not asked yet: asking emails its creator and sends it to legal review "
                "as a paid placement.", "next": f"rally boost ask {slug} {number}"}  # fmt: skip
    waiting = paid_review_refusal(session, creative)
    code = session.exec(
        select(col(SparkAuthorization.ends_on))
        .where(SparkAuthorization.creative_id == creative.id, SparkAuthorization.ends_on >= today)
        .order_by(col(SparkAuthorization.id).desc())
    ).first()
    why = waiting.split(": ", 1)[1] if waiting else ""
    said = [why[:1].upper() + why[1:] + "." if why else "Approved as a paid placement."]
    said.append(
        "Waiting for the creator's code."
        if code is None
        else f"Authorized until {code:%b} {code.day}."
    )
    ready = code is not None and waiting is None
    return {"said": " ".join(said), "next": f"rally boost start {slug} {number}" if ready else None}
