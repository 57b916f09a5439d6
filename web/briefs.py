"""The creator's brief at `/briefs/<token>`: they read it, acknowledge it, sign their contract,
follow their drafts and send new ones (with a video file if they like), and give the Spark Ads
authorization of a post staff asked to boost. The token in the link
is their only credential: an unknown or expired one gets the same plain 404 as any other
missing page."""

from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from config.errors import RallyError
from config.settings import Settings
from store.db import transaction
from tasks.briefs.contracts import MAX_NAME, Signature, SignedAlready, contract_html, sign
from tasks.briefs.contracts import latest as latest_contract
from tasks.briefs.portal import brief_sections, creator_portal
from tasks.briefs.status import acknowledge, open_brief
from tasks.review.creatives import Submission, submit
from tasks.review.uploads import (
    FORM_ROOM,
    Shelf,
    StoredVideo,
    UploadRefused,
    UploadSettings,
    attach_video,
    forget_video,
    keep_previous_video,
    member_has_video,
    store_video,
    too_large,
    video_place,
)
from web.deps import AppSettings, Clock, Store, VideoShelf
from web.pages import not_found, page_response
from web.review import form_of, form_too_large
from web.uploads import video_response

router = APIRouter()
LIMITS = {"caption": 5000, "script": 20000, "video_url": 2000, "duration": 12, "creative": 12}


@router.get("/briefs/{token}", response_class=HTMLResponse)
def brief_page(
    request: Request, token: str, engine: Store, settings: AppSettings, clock: Clock, fix: str = ""
) -> Response:
    """The creator's brief, their deliverables and drafts. The draft form starts as the next
    version of the creative being fixed (`fix`, else the first one sent back), its caption and
    details kept, so a fix is an edit, not a retyping; `fix=new` starts a new video."""
    return _brief(request, engine, settings, token, clock, fix=fix)


@router.post("/briefs/{token}/acknowledge")
async def acknowledge_brief(
    request: Request, token: str, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """The creator confirms they have read this version of the brief; the page comes back at
    the confirmation, where they clicked. The form is read bounded: anyone may post here."""
    form = await form_of(request)
    if form is None:
        return form_too_large()
    number = form.get("version", "")
    if not number.isdigit() or len(number) > 9:
        return PlainTextResponse("version: a version number, please.", status_code=400)
    return await run_in_threadpool(_acknowledge, request, engine, token, int(number), clock)


def _acknowledge(
    request: Request, engine: Engine, token: str, version: int, clock: Any
) -> Response:
    with transaction(engine) as session:
        page = acknowledge(session, token, version=version, now=clock())
    if page is None:
        return not_found(request)
    if page.brief.version != version:  # a newer version came meanwhile: that one is shown
        return RedirectResponse(f"/briefs/{token}#acknowledge-form", status_code=303)
    return RedirectResponse(f"/briefs/{token}#acknowledged", status_code=303)


@router.post("/briefs/{token}/contract")
async def sign_contract(
    request: Request, token: str, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """The creator signs their contract by typing their name: what the page showed (its
    version and hash), the name, their consent, their address and browser are kept. The form
    is read bounded: anyone may post here."""
    form = await form_of(request)
    if form is None:
        return form_too_large()
    number, text_hash = str(form.get("version", "")), str(form.get("text_hash", ""))
    if not number.isdigit() or len(number) > 9 or len(text_hash) > 64:
        return PlainTextResponse("version: the contract's version, please.", status_code=400)
    signature = Signature(
        version=int(number),
        text_hash=text_hash,
        name=str(form.get("name", ""))[: MAX_NAME * 2],
        agreed=form.get("agree") == "true",
        address=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )
    return await run_in_threadpool(_sign, request, engine, settings, token, signature, clock)


def _sign(
    request: Request,
    engine: Engine,
    settings: Settings,
    token: str,
    signature: Signature,
    clock: Any,
) -> Response:
    try:
        with transaction(engine) as session:
            page = open_brief(session, token, now=clock())
            if page is None:
                return not_found(request)
            sign(session, page.brief.member_id, signature, now=clock())
    except SignedAlready:  # a second tap on Sign: the page shows the contract as signed
        pass
    except RallyError as exc:
        return _brief(request, engine, settings, token, clock, contract_error=str(exc), status=409)
    return RedirectResponse(f"/briefs/{token}#contract", status_code=303)


@router.post("/briefs/{token}/spark")
async def authorize_spark(
    request: Request, token: str, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """The creator gives the Spark Ads authorization code of a post staff asked to boost, and
    the day it runs until; their consent, with their address and browser, goes in the audit
    log. Bounded: anyone may post here."""
    form = await form_of(request)
    if form is None:
        return form_too_large()
    creative = str(form.get("creative", ""))
    if not creative.isdigit() or len(creative) > 9:
        return PlainTextResponse("creative: which video, please.", status_code=400)
    given = SparkForm(
        creative=int(creative),
        code=str(form.get("code", ""))[:400],
        until=str(form.get("until", ""))[:20],
        agreed=form.get("agree") == "true",
        consent=(
            "the creator, on their brief page, from "
            f"{request.client.host if request.client else ''} "
            f"({request.headers.get('user-agent', '')[:120]})"
        ),
    )
    return await run_in_threadpool(_authorize, request, engine, settings, token, given, clock)


@dataclass(frozen=True)
class SparkForm:
    creative: int
    code: str
    until: str
    agreed: bool
    consent: str


def _authorize(
    request: Request, engine: Engine, settings: Settings, token: str, given: SparkForm, clock: Any
) -> Response:
    from datetime import date

    from store.models import Campaign, Creator, RosterMember
    from tasks.amplification.boosts import record_authorization, waiting_authorizations

    now = clock()
    try:
        with transaction(engine) as session:
            page = open_brief(session, token, now=now)
            if page is None:
                return not_found(request)
            member = session.get(RosterMember, page.brief.member_id)
            assert member is not None
            asked = waiting_authorizations(session, member.id or 0, now.date())
            if given.creative not in {c.id for c in asked}:
                raise RallyError("creative: this video is not waiting for your authorization")
            if not given.agreed:
                raise RallyError("consent: tick the box to authorize the boost")
            try:
                until = date.fromisoformat(given.until)
            except ValueError:
                raise RallyError("until: the last day the code runs, as a date") from None
            campaign = session.get(Campaign, member.campaign_id)
            creator = session.get(Creator, member.creator_id)
            assert campaign is not None and creator is not None
            record_authorization(
                session, campaign, given.creative, given.code, starts_on=now.date(),
                ends_on=until, consent=given.consent, actor=f"creator:@{creator.handle}", now=now,
            )  # fmt: skip
    except RallyError as exc:
        return _brief(request, engine, settings, token, clock, spark_error=str(exc), status=409)
    return RedirectResponse(f"/briefs/{token}#spark", status_code=303)


@dataclass(frozen=True)
class DraftForm:
    caption: str
    script: str
    video_url: str
    duration: str
    creative: str
    paid: bool
    ai_generated: bool
    keep_video: bool  # the previous version's video file, when no new one is chosen
    video: UploadFile | None


def read_draft_form(form: FormData) -> DraftForm:
    """The draft form's fields; ValueError (a plain 400) for a form not as the page sends it."""
    text = {}
    for field, most in LIMITS.items():
        value = form.get(field, "")
        if not isinstance(value, str) or len(value) > most:
            raise ValueError(field)
        text[field] = value
    if not text["caption"].strip():
        raise ValueError("caption")
    video = form.get("video")
    if isinstance(video, str) and video:
        raise ValueError("video")
    chosen = video if isinstance(video, UploadFile) and (video.filename or video.size) else None
    return DraftForm(
        **text,
        paid=form.get("paid") == "true",
        ai_generated=form.get("ai_generated") == "true",
        keep_video=form.get("keep_video") == "true",
        video=chosen,
    )


@router.post("/briefs/{token}/drafts")
async def submit_draft(
    request: Request,
    token: str,
    engine: Store,
    settings: AppSettings,
    shelf: VideoShelf,
    clock: Clock,
) -> Response:
    """A creator sends a draft from their brief page, with a video link or file or neither;
    the checks run at once. The body is bounded before it is read (a video of at most
    RALLY_MAX_UPLOAD_MB, and room for the text), and only for a live brief link."""
    limit_mb = settings.section(UploadSettings).max_upload_mb
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return Response("A form's length, please.", status_code=411)
    if int(length) > limit_mb * 1024 * 1024 + FORM_ROOM:
        return await run_in_threadpool(
            _brief, request, engine, settings, token, clock, error=too_large(limit_mb), status=413
        )
    slug = await run_in_threadpool(_live_campaign, engine, token, clock)
    if slug is None:  # before reading the body
        return not_found(request)
    async with request.form(
        max_files=1, max_fields=len(LIMITS) + 3, max_part_size=128 * 1024
    ) as form:
        draft = read_draft_form(form)
        try:
            await run_in_threadpool(
                _submit, engine, shelf, slug, token, clock, draft, limit_mb, settings.public_url
            )
        except RallyError as exc:
            status = exc.status if isinstance(exc, UploadRefused) else 409
            return await run_in_threadpool(
                _brief,
                request,
                engine,
                settings,
                token,
                clock,
                error=str(exc),
                status=status,
                sent=draft,
            )
    return RedirectResponse(f"/briefs/{token}#drafts", status_code=303)


def _live_campaign(engine: Engine, token: str, clock: Any) -> str | None:
    """The campaign of a live brief link, or None."""
    with transaction(engine, write=False) as session:
        page = open_brief(session, token, now=clock())
        return page.campaign_slug if page is not None else None


def _submit(
    engine: Engine,
    shelf: Shelf,
    slug: str,
    token: str,
    clock: Any,
    form: DraftForm,
    limit_mb: int,
    public_url: str,
) -> None:
    """Keep the video first (a bucket may take seconds; no transaction waits on it), then
    record the draft; a draft refused after its video was kept leaves no new file behind."""
    stored = None
    if form.video is not None:
        stored = store_video(shelf, slug, form.video.file, limit_mb=limit_mb)
    try:
        _record_draft(engine, shelf, token, clock, form, stored, public_url)
    except BaseException:
        if stored is not None:
            forget_video(shelf, slug, stored)
        raise


def _record_draft(
    engine: Engine,
    shelf: Shelf,
    token: str,
    clock: Any,
    form: DraftForm,
    stored: StoredVideo | None,
    public_url: str,
) -> None:
    with transaction(engine) as session:
        page = open_brief(session, token, now=clock())
        if page is None:
            raise RallyError("this brief link has expired")
        seconds = _number("duration", form.duration, float)
        creative_id = _number("creative", form.creative, int)
        actor = f"creator:@{page.handle}"
        draft = Submission(
            form.caption,
            form.script,
            form.video_url.strip() or None,
            seconds,
            form.paid,
            form.ai_generated,
        )
        result = submit(
            session,
            slug=page.campaign_slug,
            handle=page.handle,
            submission=draft,
            submitted_by=actor,
            now=clock(),
            creative_id=creative_id,
            public_url=public_url,
        )
        if stored is not None:
            attach_video(
                session,
                creative_id=result.creative_id,
                version=result.version,
                video=stored,
                actor=actor,
            )
        elif form.keep_video:
            keep_previous_video(
                session,
                shelf,
                creative_id=result.creative_id,
                version=result.version,
                actor=actor,
            )


@router.get("/briefs/{token}/videos/{name}")
def creator_video(
    request: Request, token: str, name: str, engine: Store, shelf: VideoShelf, clock: Clock
) -> Response:
    """A video the creator uploaded, for them to watch again with their brief link."""
    with transaction(engine, write=False) as session:
        page = open_brief(session, token, now=clock())
        if page is None or not member_has_video(session, page.brief.member_id, name):
            return not_found(request)
    return video_response(request, video_place(shelf, page.campaign_slug, name), name)


Number = TypeVar("Number", int, float)


def _number(field: str, text: str, kind: type[Number]) -> Number | None:
    """A form's number, or None when left empty; RallyError naming the field otherwise."""
    if not text.strip():
        return None
    try:
        return kind(text)
    except ValueError:
        raise RallyError(f"{field}: a number, please (got {text.strip()[:12]!r})") from None


def _brief(
    request: Request,
    engine: Engine,
    settings: Settings,
    token: str,
    clock: Any,
    *,
    fix: str = "",
    error: str | None = None,
    status: int = 200,
    sent: DraftForm | None = None,
    contract_error: str | None = None,
    spark_error: str | None = None,
) -> Response:
    from tasks.amplification.boosts import given_authorizations, waiting_authorizations

    with transaction(engine, write=False) as session:
        page = open_brief(session, token, now=clock())
        if page is None:
            return not_found(request)
        portal = creator_portal(session, page, token=token, public_url=settings.public_url)
        contract = latest_contract(session, page.brief.member_id)
        spark = waiting_authorizations(session, page.brief.member_id, clock().date())
        spark_given = given_authorizations(session, page.brief.member_id, clock().date())
    context: dict[str, Any] = {
        "spark": spark,
        "spark_given": spark_given,
        "spark_error": spark_error,
        "contract": contract,
        "contract_html": contract_html(contract.text) if contract else None,
        "contract_error": contract_error,
        "page": page,
        "brief": page.brief,
        "portal": portal,
        "form": _form(portal.creatives, fix, sent),
        "error": error,
        "upload_mb": settings.section(UploadSettings).max_upload_mb,
        "too_large": too_large(settings.section(UploadSettings).max_upload_mb),
    }
    prelude, sections = brief_sections(page.brief.content_html)
    # The brief was rendered by the sandbox with autoescaping: its HTML is Rally's own.
    context["prelude"] = Markup(prelude)
    context["sections"] = [(s, Markup(s.title), Markup(s.body)) for s in sections]
    return page_response(request, "brief.html", context, status_code=status)


def _form(creatives: list[dict[str, Any]], fix: str, sent: DraftForm | None) -> dict[str, Any]:
    """What the draft form starts with: what was just sent (when it was refused), else the
    creative being fixed with its last version's details, else an empty new video."""
    if sent is not None:
        fixing = next((c for c in creatives if str(c["id"]) == sent.creative), None)
        return {
            "fixing": fixing,
            "creative": sent.creative,
            "caption": sent.caption,
            "script": sent.script,
            "video_url": sent.video_url,
            "duration": sent.duration,
            "paid": sent.paid,
            "ai_generated": sent.ai_generated,
        }
    chosen = [c for c in creatives if c["may_resubmit"] and str(c["id"]) == fix]
    sent_back = [c for c in creatives if c["needs_fixing"]] if fix != "new" else []
    if not (chosen or sent_back):
        empty = {"caption": "", "script": "", "video_url": "", "duration": "", "creative": ""}
        return {"fixing": None, "paid": False, "ai_generated": False, **empty}
    fixing = (chosen or sent_back)[0]
    seconds = fixing["duration_seconds"]
    return {
        "fixing": fixing,
        "creative": str(fixing["id"]),
        "caption": fixing["caption"],
        "script": fixing["script"],
        "video_url": fixing["video_url"],
        "duration": f"{seconds:g}" if seconds else "",
        "paid": fixing["paid"],
        "ai_generated": fixing["ai_generated"],
    }
