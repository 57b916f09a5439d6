"""Videos creators uploaded, for the campaign's approvers and staff once signed in, at the
address `tasks.review.uploads.upload_url(draft)` gives (the creator watches theirs from
their brief page, `web.briefs`). Anyone else, or a name that is not the draft's, gets the plain
"not found". A video in a bucket is a redirect to a short-lived link to it."""

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from store.db import transaction
from tasks.review.uploads import media_type, video_for_approver, video_place
from web.deps import Approver, RowId, Store, VideoShelf
from web.pages import not_found

router = APIRouter()


def video_response(request: Request, place: Path | str | None, name: str) -> Response:
    """The stored video: streamed from disk (with ranges, so a <video> can seek), or a
    redirect to its bucket's link; "not found" when it is not there."""
    if place is None:
        return not_found(request)
    if isinstance(place, str):
        return RedirectResponse(place, status_code=302)
    return FileResponse(place, media_type=media_type(name), content_disposition_type="inline")


@router.get("/review/videos/{draft_id}/{name}")
def approver_video(
    request: Request, draft_id: RowId, name: str, email: Approver, engine: Store, shelf: VideoShelf
) -> Response:
    """The video uploaded with a draft."""
    with transaction(engine, write=False) as session:
        found = video_for_approver(session, draft_id=draft_id, name=name, email=email)
    place = video_place(shelf, found[0], name) if found else None
    return video_response(request, place, name)
