"""Rally's HTTP API for scripts: a creator's draft submitted with their brief link's token, and
an approver's decision with an API token (`rally review token EMAIL`). JSON in and out; errors
are `{"error": "..."}` with a 4xx status."""

from typing import Literal

from fastapi import APIRouter, Header
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from config.errors import RallyError
from store.db import transaction
from tasks.briefs.status import open_brief
from tasks.review.approvers import who
from tasks.review.creatives import Submission, submit
from tasks.review.decisions import decide
from web.deps import AppSettings, Clock, RowId, Store

router = APIRouter(prefix="/api")
PATHS = ("/api/briefs/", "/api/review/")  # this API's, apart from the REST API's /api/v1


class DraftIn(BaseModel):
    caption: str = Field(min_length=1, max_length=5000)
    script: str = Field("", max_length=20000)
    video_url: str | None = Field(None, max_length=2000)
    duration_seconds: float | None = Field(None, ge=0, le=3600)
    paid: bool = False
    ai_generated: bool = False
    creative: int | None = Field(None, ge=1, le=2**31 - 1)
    title: str | None = Field(None, max_length=200)


class DecisionIn(BaseModel):
    decision: Literal["approve", "request_changes", "reject"]
    version: int
    note: str = Field("", max_length=5000)
    checklist: dict[str, bool] = {}


def _error(message: str, status: int) -> JSONResponse:
    """The API's answer to a request it refuses: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status)


def too_large(detail: str) -> JSONResponse:
    return _error(detail, 413)


def refusal(exc: RequestValidationError) -> JSONResponse:
    """A body not as this API takes it: 400, naming the field at fault and why (never
    repeating what was sent)."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return _error("the body is not JSON", 400)
    field = ".".join(str(part) for part in first["loc"] if part != "body") or "the body"
    return _error(f"{field}: {first['msg']}", 400)


@router.post("/briefs/{token}/drafts")
def submit_draft(
    token: str, draft: DraftIn, engine: Store, settings: AppSettings, clock: Clock
) -> JSONResponse:
    """A creator's draft, with their brief link's token; the checks run at once."""
    submission = Submission(
        draft.caption,
        draft.script,
        draft.video_url,
        draft.duration_seconds,
        draft.paid,
        draft.ai_generated,
        draft.title,
    )
    try:
        with transaction(engine) as session:
            page = open_brief(session, token, now=clock())
            if page is None:
                return _error("not found", 404)
            result = submit(
                session,
                slug=page.campaign_slug,
                handle=page.handle,
                submission=submission,
                submitted_by=f"creator:@{page.handle}",
                now=clock(),
                creative_id=draft.creative,
                public_url=settings.public_url,
            )
    except RallyError as exc:
        return _error(str(exc), 409)
    return JSONResponse(
        {
            "creative": result.creative_id,
            "version": result.version,
            "outcome": "changes_requested" if result.blocked else "in_review",
            "tiers": result.tiers,
            "findings": [vars(f) for f in result.findings],
        },
        status_code=201,
    )


@router.post("/review/tasks/{task_id}/decisions")
def record_decision(
    task_id: RowId,
    body: DecisionIn,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
    authorization: str = Header(""),
) -> JSONResponse:
    """An approver's decision, with their API token as `Authorization: Bearer <token>`."""
    token = authorization.removeprefix("Bearer ").strip()
    try:
        with transaction(engine) as session:
            approver = who(session, token, kinds=("api",), now=clock())
            if approver is None:
                return _error("a valid API token is required (rally review token EMAIL)", 401)
            result = decide(
                session,
                task_id=task_id,
                decision=body.decision,
                approver=approver,
                now=clock(),
                note=body.note,
                confirmed=[item for item, done in body.checklist.items() if done],
                version=body.version,
                public_url=settings.public_url,
            )
    except RallyError as exc:
        return _error(str(exc), 409)
    return JSONResponse(
        {
            "task": task_id,
            "status": result.task.status,
            "applied": result.applied,
            "next_tier": result.next_tier,
            "creative_status": result.creative.status,
        }
    )
