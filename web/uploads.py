"""Videos creators uploaded, for the campaign's approvers and staff once signed in, at the
address `tasks.review.uploads.upload_url(draft)` gives (the creator watches theirs from
their brief page, `web.briefs`). Anyone else, or a name that is not the draft's, gets the plain
"not found"."""

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from store.db import transaction
from tasks.review.uploads import media_type, video_file, video_for_approver
from web.deps import Approver, AppSettings, RowId, Store
from web.pages import not_found

router = APIRouter()


@router.get("/review/videos/{draft_id}/{name}")
def approver_video(
    request: Request,
    draft_id: RowId,
    name: str,
    email: Approver,
    engine: Store,
    settings: AppSettings,
) -> Response:
    """The video uploaded with a draft, streamed (with ranges, so a <video> can seek)."""
    with transaction(engine, write=False) as session:
        found = video_for_approver(session, draft_id=draft_id, name=name, email=email)
    path = video_file(settings.home, found[0], name) if found else None
    if path is None:
        return not_found(request)
    return FileResponse(path, media_type=media_type(name), content_disposition_type="inline")
