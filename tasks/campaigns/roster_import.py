"""Upserting a checked roster: creators on (platform, handle), then their place on the campaign.

New creators and new places are inserted in bulk (one statement each), so a roster of ten
thousand imports in seconds; every change is audited in the same transaction.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from config.campaign import CampaignSpec
from store.audit import Change, record
from store.bulk import insert_rows
from store.models import Campaign, Creator, RosterMember, RosterStatus
from store.types import utcnow
from tasks.campaigns.roster import RosterRow, RowProblem
from tasks.campaigns.tracking import source_code, tracking_code


@dataclass
class RosterChange:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[RowProblem] = field(default_factory=list)


def _profile(row: RosterRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "email": row.email,
        "phone": row.phone,
        "followers": row.followers,
        "attributes": row.attributes,
    }


def _known(values: dict[str, Any], creator: Creator) -> dict[str, Any]:
    """Only what the row says: an empty cell or a missing column never erases what Rally
    knows (another campaign's roster may have filled it). Attributes are merged."""
    known = {k: v for k, v in values.items() if v is not None and k != "attributes"}
    if values["attributes"]:
        known["attributes"] = {**creator.attributes, **values["attributes"]}
    return known


def _terms(row: RosterRow) -> dict[str, Any]:
    terms: dict[str, Any] = {
        "segment": row.segment,
        "tier": row.tier,
        "status": RosterStatus.ACTIVE.value,
    }
    if row.rate_cents is not None:
        terms["rate_cents"] = row.rate_cents
    if row.source_code:
        terms["source_code"] = row.source_code
    return terms


def _update(obj: Any, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Set the values that differ; return them as {field: [old, new]}."""
    diff = {k: [getattr(obj, k), v] for k, v in values.items() if getattr(obj, k) != v}
    for key, (_, new) in diff.items():
        setattr(obj, key, new)
    if diff:
        obj.updated_at = utcnow()
    return diff


def _existing_creators(session: Session, rows: list[RosterRow]) -> dict[tuple[str, str], Creator]:
    found: dict[tuple[str, str], Creator] = {}
    for platform in {r.platform for r in rows}:
        handles = [r.handle for r in rows if r.platform == platform]
        for start in range(0, len(handles), 500):
            chunk = handles[start : start + 500]
            query = select(Creator).where(
                Creator.platform == platform, col(Creator.handle).in_(chunk)
            )
            found.update({(c.platform, c.handle): c for c in session.exec(query)})
    return found


def import_roster(
    session: Session, campaign: Campaign, spec: CampaignSpec, rows: list[RosterRow], *, actor: str
) -> RosterChange:
    """Upsert the rows' creators and their terms on the campaign; audit each change."""
    assert campaign.id is not None
    result, changes = RosterChange(), []
    creators = _existing_creators(session, rows)
    query = select(RosterMember).where(RosterMember.campaign_id == campaign.id)
    members = {m.creator_id: m for m in session.exec(query)}
    codes = {m.source_code: m.creator_id for m in members.values()}
    reserved = set(codes) | {row.source_code for row in rows if row.source_code}

    accepted: list[tuple[RosterRow, int | None, str]] = []  # creator id (None: new), state
    for row in rows:
        creator = creators.get((row.platform, row.handle))
        holder = codes.get(row.source_code or "")
        if holder is not None and (creator is None or holder != creator.id):
            message = f"{row.source_code} already belongs to another creator on {spec.slug}"
            result.problems.append(RowProblem(row.row, row.handle, "source_code", message))
        elif creator is None:
            accepted.append((row, None, "new"))
        elif diff := _update(creator, _known(_profile(row), creator)):
            summary = f"@{row.handle}: {', '.join(diff)} changed"
            changes.append(
                Change(actor, "creator.updated", "creator", creator.id or 0, summary, diff)
            )
            accepted.append((row, creator.id, "changed"))
        else:
            accepted.append((row, creator.id, "same"))

    fresh = [row for row, _, state in accepted if state == "new"]
    profiles = [{"platform": r.platform, "handle": r.handle, **_profile(r)} for r in fresh]
    new_ids = insert_rows(session, Creator, profiles, key=("platform", "handle"))
    for r, profile in zip(fresh, profiles, strict=True):
        summary = f"new creator @{r.handle} on {r.platform}"
        changes.append(
            Change(
                actor,
                "creator.created",
                "creator",
                new_ids[(r.platform, r.handle)],
                summary,
                profile,
            )
        )

    joining: list[tuple[RosterRow, dict[str, Any]]] = []
    for row, known_id, state in accepted:
        creator_id = known_id or new_ids[(row.platform, row.handle)]
        member, terms = members.get(creator_id), _terms(row)
        if member is None:
            if "source_code" not in terms:
                terms["source_code"] = source_code(row.handle, reserved)
                reserved.add(terms["source_code"])
            codes[terms["source_code"]] = creator_id
            code = tracking_code(spec.slug, row.platform, row.handle)
            joining.append(
                (
                    row,
                    {
                        "campaign_id": campaign.id,
                        "creator_id": creator_id,
                        "tracking_code": code,
                        **terms,
                    },
                )
            )
        elif diff := _update(member, terms):
            codes[member.source_code] = creator_id
            summary = f"@{row.handle} on {spec.slug}: {', '.join(diff)} changed"
            changes.append(
                Change(actor, "roster.updated", "roster_member", member.id or 0, summary, diff)
            )
            result.updated += 1
        elif state == "changed":
            result.updated += 1
        else:
            result.unchanged += 1

    member_ids = insert_rows(
        session, RosterMember, [values for _, values in joining], key=("creator_id",)
    )
    for r, values in joining:
        summary = f"@{r.handle} joined {spec.slug} ({r.segment}, {r.tier or 'no tier'})"
        member_id = member_ids[(values["creator_id"],)]
        changes.append(Change(actor, "roster.added", "roster_member", member_id, summary, values))
    result.added = len(joining)
    record(session, changes)
    return result
