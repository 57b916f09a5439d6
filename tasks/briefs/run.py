"""What a run of brief generation works from: the campaign's checked templates, its part of the
inputs, the creators it covers, each creator's newest brief, and a problem named by creator and
field when a brief cannot be made.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import TemplateError, TemplateNotFound
from markupsafe import escape
from sqlalchemy import func
from sqlmodel import Session, col, select

from briefs.environment import BriefTemplates, Fields, MissingField
from config.campaign import CampaignSpec
from config.errors import RallyError
from store.models import (
    Brief,
    BriefCampaignInputs,
    Campaign,
    Creator,
    RosterMember,
    RosterStatus,
)
from tasks.briefs.inputs import (
    HINTS,
    CreatorParts,
    as_context,
    campaign_digest,
    campaign_end,
    campaign_part,
)
from tasks.campaigns.campaign import campaign_spec, get_campaign
from tasks.campaigns.configs import stored_templates

BRIEF_TEMPLATES = ("brief.md.j2", "brief.html.j2")
EMAIL_TEMPLATES = ("email_subject.txt.j2", "email.txt.j2", "email.html.j2")
REMINDER_TEMPLATES = ("reminder_subject.txt.j2", "reminder.txt.j2", "reminder.html.j2")


@dataclass(frozen=True)
class BriefProblem:
    handle: str
    field: str
    message: str


@dataclass
class GenerationReport:
    rendered: int = 0
    unchanged: int = 0
    queued: int = 0
    failed: list[BriefProblem] = field(default_factory=list)

    def add(self, other: "GenerationReport") -> None:
        self.rendered += other.rendered
        self.unchanged += other.unchanged
        self.queued += other.queued
        self.failed += other.failed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": [asdict(p) for p in self.failed]}


def campaign_templates(session: Session, campaign: Campaign) -> BriefTemplates:
    """The templates the campaign was applied with, checked to hold every one a run renders
    (a set applied by an older Rally may lack a newer one)."""
    templates = stored_templates(session, campaign)
    try:
        templates.check(BRIEF_TEMPLATES + EMAIL_TEMPLATES + REMINDER_TEMPLATES)
    except TemplateNotFound as exc:
        raise RallyError(
            f"campaign {campaign.slug} has no brief template {exc.message}: apply it again"
        ) from None
    except TemplateError as exc:
        raise RallyError(f"brief templates of {campaign.slug}: {exc}") from None
    return templates


@dataclass
class BriefRun:
    """What every batch of one generation shares, prepared once per batch task."""

    campaign: Campaign
    spec: CampaignSpec
    templates: BriefTemplates
    campaign_inputs: dict[str, Any]
    campaign_digest: str
    campaign_context: Fields
    campaign_context_html: Fields  # the same, escaped for HTML once per run, not per creator
    creator_part: CreatorParts
    fingerprint: str
    public_url: str
    expires_at: datetime


def escaped(value: Any) -> Any:
    """Every text in `value` escaped for HTML (Markup), so autoescaping leaves it as it is."""
    if isinstance(value, dict):
        return {k: escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escaped(v) for v in value]
    return escape(value) if isinstance(value, str) else value


def prepare(session: Session, slug: str, *, public_url: str) -> BriefRun:
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    templates = campaign_templates(session, campaign)
    part = campaign_part(spec)
    return BriefRun(
        campaign=campaign,
        spec=spec,
        templates=templates,
        campaign_inputs=part,
        campaign_digest=campaign_digest(part),
        campaign_context=as_context(part, "campaign"),
        campaign_context_html=as_context(escaped(part), "campaign"),
        creator_part=CreatorParts(spec, public_url=public_url),
        fingerprint=templates.version,
        public_url=public_url,
        expires_at=campaign_end(spec),
    )


def select_members(session: Session, campaign: Campaign, handles: Sequence[str] = ()) -> list[int]:
    """The active roster's member ids, or just those of `handles` (each must be on it)."""
    query = (
        select(RosterMember.id, Creator.handle)
        .join(Creator, col(RosterMember.creator_id) == col(Creator.id))
        .where(RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE)
        .order_by(col(Creator.handle))
    )
    rows = [(member_id, handle) for member_id, handle in session.exec(query) if member_id]
    if not handles:
        return [member_id for member_id, _ in rows]
    wanted = {h.removeprefix("@") for h in handles}
    unknown = sorted(wanted - {handle for _, handle in rows})
    if unknown:
        raise RallyError(
            f"not on the roster of {campaign.slug}: {', '.join('@' + h for h in unknown)}"
        )
    return [member_id for member_id, handle in rows if handle in wanted]


def latest_briefs(session: Session, member_ids: Sequence[int]) -> dict[int, Brief]:
    newest = (
        select(Brief.member_id, func.max(Brief.version).label("version"))
        .where(col(Brief.member_id).in_(member_ids))
        .group_by(col(Brief.member_id))
        .subquery()
    )
    query = select(Brief).join(
        newest,
        (col(Brief.member_id) == newest.c.member_id) & (col(Brief.version) == newest.c.version),
    )
    return {brief.member_id: brief for brief in session.exec(query)}


def brief_problem(handle: str, exc: Exception) -> BriefProblem:
    if isinstance(exc, MissingField):
        hint = HINTS.get(exc.field)
        message = f"{exc.field} is missing" + (f": {hint}" if hint else "")
        return BriefProblem(handle, exc.field, message)
    return BriefProblem(handle, "template", f"{type(exc).__name__}: {exc}")


def keep_campaign_inputs(session: Session, run: BriefRun) -> None:
    """Store the campaign's part of the inputs once per version of it."""
    if session.get(BriefCampaignInputs, run.campaign_digest) is None:
        session.add(
            BriefCampaignInputs(
                digest=run.campaign_digest,
                campaign_id=run.campaign.id or 0,
                inputs=run.campaign_inputs,
            )
        )
        session.flush()


def full_inputs(session: Session, brief: Brief) -> dict[str, Any]:
    """A brief's inputs whole: its own part with the campaign's part put back."""
    inputs = dict(brief.inputs)
    digest = inputs.pop("campaign_digest", None)
    if digest is None:  # kept whole
        return inputs
    kept = session.get(BriefCampaignInputs, digest)
    return {"campaign": kept.inputs if kept else {}, **inputs}


RENDER_ERRORS = (TemplateError, ArithmeticError, TypeError, ValueError)
