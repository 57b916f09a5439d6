"""Generating briefs: each creator's brief rendered, stored as a new version only when its
inputs changed, and (with `send`) its email queued in the outbox in the same transaction.

A creator whose brief cannot render (a missing value, a template error) is reported with the
field and skipped; everyone else's brief is still made.
"""

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import SecurityError
from markupsafe import Markup, escape
from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from briefs.environment import BriefTemplates, Fields, MissingField, load_templates
from config.campaign import CampaignSpec
from config.errors import RallyError
from store.audit import Change, record
from store.models import (
    Brief,
    BriefCampaignInputs,
    Campaign,
    Creator,
    OutboxMessage,
    OutboxStatus,
    RosterMember,
    RosterStatus,
)
from tasks.brief_inputs import (
    HINTS,
    CreatorParts,
    as_context,
    campaign_digest,
    campaign_end,
    campaign_part,
    creator_rows,
    inputs_hash,
)
from tasks.campaigns import BUILTIN, campaign_spec, get_campaign, spec_changes
from tasks.outbox import cancel, enqueue

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


def campaign_templates(campaign: Campaign, spec: CampaignSpec) -> BriefTemplates:
    """The campaign's templates, checked: its folder (relative to its file) over the defaults."""
    folder: Path | None = None
    if spec.brief.template != BUILTIN:
        base = (Path(campaign.source_path).parent if campaign.source_path else Path.cwd()).resolve()
        folder = (base / spec.brief.template).resolve()
        if not folder.is_relative_to(base) or folder == base:
            raise RallyError(
                f"campaign {campaign.slug}: brief.template must be a folder inside {base} "
                f"(got {spec.brief.template!r})"
            )
        if not folder.is_dir():
            raise RallyError(
                f"campaign {campaign.slug}: brief.template: no such folder {folder} "
                "(re-apply the campaign from where its files are)"
            )
    templates = load_templates(folder)
    try:
        templates.check(BRIEF_TEMPLATES + EMAIL_TEMPLATES + REMINDER_TEMPLATES)
    except TemplateSyntaxError as exc:
        where = exc.filename or exc.name or "template"
        raise RallyError(f"{where}:{exc.lineno}: {exc.message}") from None
    except TemplateNotFound as exc:
        raise RallyError(f"brief template not found: {exc.message}") from None
    except SecurityError as exc:
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


def prepare(session: Session, slug: str, *, public_url: str) -> BriefRun:
    campaign = get_campaign(session, slug)
    spec = campaign_spec(campaign)
    templates = campaign_templates(campaign, spec)
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
        fingerprint=templates.fingerprint(),
        public_url=public_url,
        expires_at=campaign_end(spec),
    )


def escaped(value: Any) -> Any:
    """Every text in `value` escaped for HTML (Markup), so autoescaping leaves it as it is."""
    if isinstance(value, dict):
        return {k: escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escaped(v) for v in value]
    return escape(value) if isinstance(value, str) else value


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


def _problem(handle: str, exc: Exception) -> BriefProblem:
    if isinstance(exc, MissingField):
        hint = HINTS.get(exc.field)
        message = f"{exc.field} is missing" + (f": {hint}" if hint else "")
        return BriefProblem(handle, exc.field, message)
    return BriefProblem(handle, "template", f"{type(exc).__name__}: {exc}")


@dataclass
class RenderedBatch:
    """A batch rendered in a read transaction, ready to be stored in a write transaction."""

    member_ids: list[int]
    rows: list[dict[str, Any]] = field(default_factory=list)
    made: list[dict[str, Any]] = field(default_factory=list)
    contexts: dict[int, dict[str, Any]] = field(default_factory=dict)
    report: GenerationReport = field(default_factory=GenerationReport)


def render_batch(
    session: Session, run: BriefRun, member_ids: Sequence[int], *, now: datetime
) -> RenderedBatch:
    """Render the briefs of `member_ids` whose inputs changed since their newest version."""
    batch = RenderedBatch(list(member_ids))
    latest = latest_briefs(session, member_ids)
    for row in creator_rows(session, col(RosterMember.id).in_(member_ids)):
        member_id, handle = row.member_id, row.handle
        part = run.creator_part(row)
        digest = inputs_hash(run.campaign_digest, part, run.fingerprint)
        context = {"campaign": run.campaign_context, **run.creator_part.context(part)}
        previous = latest.get(member_id)
        if previous is not None and previous.inputs_hash == digest:
            batch.report.unchanged += 1
            batch.contexts[member_id] = context
            continue
        try:
            markdown = run.templates.render("brief.md.j2", context)
            page = run.templates.render(
                "brief.html.j2", {**context, "campaign": run.campaign_context_html}
            )
        except RENDER_ERRORS as exc:
            batch.report.failed.append(_problem(handle, exc))
            continue
        inputs = {"campaign_digest": run.campaign_digest, **part, "templates": run.fingerprint}
        version = previous.version + 1 if previous else 1
        batch.contexts[member_id] = context
        batch.made.append(
            {"handle": handle, "version": version, "inputs_hash": digest}
            | (
                {"changed": changed_fields(session, previous.inputs, inputs, run.campaign_inputs)}
                if previous
                else {}
            )
        )
        batch.rows.append(
            {
                "campaign_id": run.campaign.id,
                "member_id": member_id,
                "version": version,
                "inputs_hash": digest,
                "inputs": inputs,
                "content_markdown": markdown,
                "content_html": page,
                "token": secrets.token_urlsafe(24),
                "token_expires_at": run.expires_at,
                "created_at": now,
            }
        )
    return batch


def store_batch(
    session: Session, run: BriefRun, batch: RenderedBatch, *, actor: str, send: bool
) -> GenerationReport:
    """Store a rendered batch (one audit entry listing each new version and its hash). A brief
    that another run versioned since this batch was rendered is left out and reported."""
    report = batch.report
    latest = latest_briefs(session, batch.member_ids)
    rows, made = [], []
    for row, entry in zip(batch.rows, batch.made, strict=True):
        newest = latest.get(row["member_id"])
        if (newest.version if newest else 0) != row["version"] - 1:
            report.failed.append(
                BriefProblem(
                    entry["handle"], "version", "changed by another run meanwhile: generate again"
                )
            )
            continue
        rows.append(row)
        made.append(entry)
    if rows:
        keep_campaign_inputs(session, run)
        session.execute(insert(Brief.__table__), rows)  # type: ignore[attr-defined]
        report.rendered = len(rows)
        summary = f"{len(made)} brief version(s) generated on {run.campaign.slug}"
        details = {"campaign_digest": run.campaign_digest, "briefs": made}
        record(
            session,
            [Change(actor, "briefs.generated", "campaign", run.campaign.slug, summary, details)],
        )
    if send:
        report.queued, problems = queue_emails(session, run, batch.member_ids, batch.contexts)
        report.failed += problems
    return report


def generate_batch(
    session: Session,
    run: BriefRun,
    member_ids: Sequence[int],
    *,
    actor: str,
    send: bool,
    now: datetime,
) -> GenerationReport:
    """Render and store the briefs of `member_ids` in one transaction."""
    batch = render_batch(session, run, member_ids, now=now)
    return store_batch(session, run, batch, actor=actor, send=send)


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


def changed_fields(
    session: Session, before: dict[str, Any], after: dict[str, Any], campaign: dict[str, Any]
) -> list[str]:
    """The input fields that differ between a brief's inputs and the next ones (whose campaign
    part is `campaign`), campaign fields by their name."""
    own = {k: v for k, v in before.items() if k != "campaign_digest"}
    changed = list(spec_changes(own, {k: v for k, v in after.items() if k != "campaign_digest"}))
    if before.get("campaign_digest") != after.get("campaign_digest"):
        kept = session.get(BriefCampaignInputs, before.get("campaign_digest"))
        changed += [f"campaign.{p}" for p in spec_changes(kept.inputs if kept else {}, campaign)]
    return changed


def brief_link(public_url: str, token: str) -> str:
    return f"{public_url}/briefs/{token}"


def email_payload(
    templates: BriefTemplates,
    names: tuple[str, str, str],
    context: dict[str, Any],
    brief: Brief,
    *,
    public_url: str,
) -> dict[str, Any]:
    """Subject, text and HTML of an email about `brief`, rendered from `names`' templates."""
    full = {
        **context,
        "brief": {
            "link": brief_link(public_url, brief.token),
            "version": brief.version,
            "markdown": brief.content_markdown,
            "html": Markup(brief.content_html),  # rendered by the sandbox with autoescaping
        },
    }
    subject, text, page = (templates.render(name, full) for name in names)
    creator = context["creator"]
    return {
        "to": creator["email"],
        "to_name": creator.get("name", ""),
        "subject": subject,
        "text": text,
        "html": page,
    }


RENDER_ERRORS = (TemplateError, ArithmeticError, TypeError, ValueError)


def queue_emails(
    session: Session, run: BriefRun, member_ids: Sequence[int], contexts: dict[int, dict[str, Any]]
) -> tuple[int, list[BriefProblem]]:
    """Queue the email of each member's newest brief, unless that brief was queued before; an
    older version's email still waiting to go is withdrawn, so no creator gets stale terms."""
    latest = latest_briefs(session, member_ids)
    keys = {f"brief:{b.id}:email": b for b in latest.values() if b.member_id in contexts}
    already = set(
        session.exec(
            select(OutboxMessage.idempotency_key).where(
                col(OutboxMessage.idempotency_key).in_(list(keys))
            )
        )
    )
    messages, problems, queued_ids = [], [], []
    for key, brief in keys.items():
        if key in already:
            continue
        context = contexts[brief.member_id]
        try:
            payload = email_payload(
                run.templates, EMAIL_TEMPLATES, context, brief, public_url=run.public_url
            )
        except RENDER_ERRORS as exc:
            problem = _problem(context["creator"]["handle"], exc)
            problems.append(replace(problem, message=f"email: {problem.message}"))
            continue
        messages.append(
            {
                "channel": "email",
                "destination": "creator",
                "idempotency_key": key,
                "subject_type": "brief",
                "subject_id": str(brief.id),
                "payload": payload,
            }
        )
        queued_ids.append(brief.id or 0)
    queued = enqueue(session, messages)
    _withdraw_older(session, queued_ids)
    return queued, problems


def _withdraw_older(session: Session, brief_ids: list[int]) -> None:
    """Cancel the pending emails and reminders of earlier versions of these briefs."""
    if not brief_ids:
        return
    newest = select(Brief.member_id, Brief.version).where(col(Brief.id).in_(brief_ids)).subquery()
    older = select(Brief.id).join(
        newest,
        (col(Brief.member_id) == newest.c.member_id) & (col(Brief.version) < newest.c.version),
    )
    older_ids = [str(i) for i in session.exec(older)]
    if not older_ids:
        return
    pending = session.exec(
        select(OutboxMessage.id).where(
            col(OutboxMessage.subject_type).in_(("brief", "brief_reminder")),
            col(OutboxMessage.subject_id).in_(older_ids),
            OutboxMessage.status == OutboxStatus.PENDING,
        )
    )
    cancel(session, [i for i in pending if i is not None], "replaced by a newer version")
