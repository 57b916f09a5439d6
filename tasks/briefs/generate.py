"""Generating briefs: each creator's brief rendered, stored as a new version only when its
inputs changed, and (with `send`) its email queued in the outbox in the same transaction.

A creator whose brief cannot render (a missing value, a template error) is reported with the
field and skipped; everyone else's brief is still made.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col

from store.audit import Change, record
from store.models import (
    Brief,
    BriefCampaignInputs,
    RosterMember,
)
from tasks.briefs.emails import queue_emails
from tasks.briefs.inputs import (
    creator_rows,
    inputs_hash,
)
from tasks.briefs.run import (
    RENDER_ERRORS,
    BriefProblem,
    BriefRun,
    GenerationReport,
    brief_problem,
    keep_campaign_inputs,
    latest_briefs,
)
from tasks.campaigns.apply import spec_changes


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
            batch.report.failed.append(brief_problem(handle, exc))
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
