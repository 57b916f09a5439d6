"""What routes are given through `Depends`: the store, settings, clock and event writer the app
was built with (kept on `app.state` by `web.app.create_app`), and who is signed in: one sign-in
(`tasks.review.approvers`) serves approvers and staff alike.

The readers of `app.state` are `async` so that FastAPI calls them on the event loop, not in a
worker thread: they cost next to nothing on every webhook.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import Engine

from config.settings import Settings
from store.db import transaction
from tasks.engagement.writer import EventWriter
from tasks.review.approvers import who
from tasks.review.uploads import Shelf

SESSION_COOKIE = "rally_review"  # the signed-in browser session (`tasks.review.approvers`)


@dataclass(frozen=True)
class AppState:
    """What one app serves with; `create_app` puts it on `app.state.rally`."""

    engine: Engine
    settings: Settings
    clock: Callable[[], datetime]
    writer: EventWriter  # one per app: it groups the commits of every request's event
    shelf: Shelf  # where uploaded videos are kept (a folder, or a bucket and its connections)


class SignedOut(Exception):
    """No one is signed in on this browser (or their session has expired); `staff` when it
    was a staff console page, which says how staff get a new link."""

    def __init__(self, *, staff: bool = False) -> None:
        super().__init__("signed out")
        self.staff = staff


STATE_KEY = "rally.state"  # where a mounted app's requests carry the state (`web.app`)


def app_state_of(request: Request) -> AppState:
    """What the app was built with: on the request, for the REST API, which every app of a
    process shares; else on the app."""
    state: AppState = request.scope.get(STATE_KEY) or request.app.state.rally
    return state


async def store_engine(request: Request) -> Engine:
    return app_state_of(request).engine


async def app_settings(request: Request) -> Settings:
    return app_state_of(request).settings


async def video_shelf_of(request: Request) -> Shelf:
    return app_state_of(request).shelf


async def app_clock(request: Request) -> Callable[[], datetime]:
    return app_state_of(request).clock


async def event_writer(request: Request) -> EventWriter:
    return app_state_of(request).writer


Store = Annotated[Engine, Depends(store_engine)]
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # an id in a path: the store's are 32-bit
AppSettings = Annotated[Settings, Depends(app_settings)]
Clock = Annotated[Callable[[], datetime], Depends(app_clock)]
VideoShelf = Annotated[Shelf, Depends(video_shelf_of)]
Writer = Annotated[EventWriter, Depends(event_writer)]


def signed_in_email(request: Request, engine: Engine, clock: Callable[[], datetime]) -> str | None:
    """The email whose session cookie this browser sends, while the session is valid."""
    with transaction(engine, write=False) as session:
        return who(session, request.cookies.get(SESSION_COOKIE), kinds=("session",), now=clock())


def signed_in_approver(request: Request, engine: Store, clock: Clock) -> str:
    """The email of the approver whose session cookie this browser sends; raises `SignedOut`,
    which the app answers with the page that says to sign in again."""
    email = signed_in_email(request, engine, clock)
    if email is None:
        raise SignedOut
    return email


def signed_in_staff(request: Request, engine: Store, clock: Clock) -> str:
    """The same sign-in, for the staff console: its pages then show only the campaigns that
    list this email under `staff:`."""
    email = signed_in_email(request, engine, clock)
    if email is None:
        raise SignedOut(staff=True)
    return email


Approver = Annotated[str, Depends(signed_in_approver)]
StaffMember = Annotated[str, Depends(signed_in_staff)]
