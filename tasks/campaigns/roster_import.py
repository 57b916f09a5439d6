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
        "agency": row.agency,
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


_Accepted = tuple[RosterRow, int | None, str]  # the row, its creator's id (None: new), its state


@dataclass
class _Import:
    """One import's working state: the campaign's places and source codes as they stand, what
    changed so far, and the audit entries to record at the end."""

    campaign_id: int
    spec: CampaignSpec
    actor: str
    members: dict[int, RosterMember]  # by creator id
    codes: dict[str, int]  # source code: the creator holding it
    reserved: set[str]  # codes taken on the campaign or claimed by a row
    result: RosterChange = field(default_factory=RosterChange)
    changes: list[Change] = field(default_factory=list)


def import_roster(
    session: Session, campaign: Campaign, spec: CampaignSpec, rows: list[RosterRow], *, actor: str
) -> RosterChange:
    """Upsert the rows' creators and their terms on the campaign; audit each change."""
    assert campaign.id is not None
    creators = _existing_creators(session, rows)
    query = select(RosterMember).where(RosterMember.campaign_id == campaign.id)
    members = {m.creator_id: m for m in session.exec(query)}
    codes = {m.source_code: m.creator_id for m in members.values()}
    reserved = set(codes) | {row.source_code for row in rows if row.source_code}
    state = _Import(campaign.id, spec, actor, members, codes, reserved)
    accepted = _accept_creators(state, rows, creators)
    new_ids = _insert_creators(session, state, [row for row, _, s in accepted if s == "new"])
    joining = _place_members(state, accepted, new_ids)
    _insert_members(session, state, joining)
    record(session, state.changes)
    return state.result


def _accept_creators(
    state: _Import, rows: list[RosterRow], creators: dict[tuple[str, str], Creator]
) -> list[_Accepted]:
    """Each row's creator, known (its profile updated with what the row says) or new. A row
    whose source code another creator holds on the campaign is refused as a problem."""
    accepted: list[_Accepted] = []
    for row in rows:
        creator = creators.get((row.platform, row.handle))
        holder = state.codes.get(row.source_code or "")
        if holder is not None and (creator is None or holder != creator.id):
            message = f"{row.source_code} already belongs to another creator on {state.spec.slug}"
            state.result.problems.append(RowProblem(row.row, row.handle, "source_code", message))
        elif creator is None:
            accepted.append((row, None, "new"))
        elif diff := _update(creator, _known(_profile(row), creator)):
            summary = f"@{row.handle}: {', '.join(diff)} changed"
            state.changes.append(
                Change(state.actor, "creator.updated", "creator", creator.id or 0, summary, diff)
            )
            accepted.append((row, creator.id, "changed"))
        else:
            accepted.append((row, creator.id, "same"))
    return accepted


def _insert_creators(
    session: Session, state: _Import, fresh: list[RosterRow]
) -> dict[tuple[Any, ...], int]:
    """The new creators inserted in one statement; their ids by (platform, handle)."""
    profiles = [{"platform": r.platform, "handle": r.handle, **_profile(r)} for r in fresh]
    new_ids = insert_rows(session, Creator, profiles, key=("platform", "handle"))
    for r, profile in zip(fresh, profiles, strict=True):
        summary = f"new creator @{r.handle} on {r.platform}"
        creator_id = new_ids[(r.platform, r.handle)]
        state.changes.append(
            Change(state.actor, "creator.created", "creator", creator_id, summary, profile)
        )
    return new_ids


def _place_members(
    state: _Import, accepted: list[_Accepted], new_ids: dict[tuple[Any, ...], int]
) -> list[tuple[RosterRow, dict[str, Any]]]:
    """Each accepted creator's terms on the campaign: a place already held is updated and
    counted; the values of each new place are returned to be inserted together."""
    joining: list[tuple[RosterRow, dict[str, Any]]] = []
    for row, known_id, creator_state in accepted:
        creator_id = known_id or new_ids[(row.platform, row.handle)]
        member, terms = state.members.get(creator_id), _terms(row)
        if member is None:
            joining.append((row, _new_place(state, row, creator_id, terms)))
        elif diff := _update(member, terms):
            state.codes[member.source_code] = creator_id
            summary = f"@{row.handle} on {state.spec.slug}: {', '.join(diff)} changed"
            state.changes.append(
                Change(
                    state.actor, "roster.updated", "roster_member", member.id or 0, summary, diff
                )
            )
            state.result.updated += 1
        elif creator_state == "changed":
            state.result.updated += 1
        else:
            state.result.unchanged += 1
    return joining


def _new_place(
    state: _Import, row: RosterRow, creator_id: int, terms: dict[str, Any]
) -> dict[str, Any]:
    """A new place's values: a row without a source code gets one no other place or row
    holds, and every place gets its tracking code."""
    if "source_code" not in terms:
        terms["source_code"] = source_code(row.handle, state.reserved)
        state.reserved.add(terms["source_code"])
    state.codes[terms["source_code"]] = creator_id
    code = tracking_code(state.spec.slug, row.platform, row.handle)
    return {
        "campaign_id": state.campaign_id,
        "creator_id": creator_id,
        "tracking_code": code,
        **terms,
    }


def _insert_members(
    session: Session, state: _Import, joining: list[tuple[RosterRow, dict[str, Any]]]
) -> None:
    """The new places inserted in one statement, each audited."""
    member_ids = insert_rows(
        session, RosterMember, [values for _, values in joining], key=("creator_id",)
    )
    for r, values in joining:
        summary = f"@{r.handle} joined {state.spec.slug} ({r.segment}, {r.tier or 'no tier'})"
        member_id = member_ids[(values["creator_id"],)]
        state.changes.append(
            Change(state.actor, "roster.added", "roster_member", member_id, summary, values)
        )
    state.result.added = len(joining)
