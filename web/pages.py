"""How Rally's pages are answered: its Jinja templates, and the headers every response carries.

Links carry tokens (a creator's brief, an approver's sign-in), so no response leaks them: no
referrer leaves the site, nothing is cached or indexed, and pages load nothing from elsewhere.
"""

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from store.db import connection_dropped

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
# blob: is the file a creator has chosen, played in the page before it is sent.
MEDIA_SRC = "media-src 'self' https: blob:"
HEADERS = {
    # Links carry tokens: no other site ever sees them. (Same-origin requests keep their
    # Origin header, which the review forms check.)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; "
    f"script-src 'self'; img-src 'self' https: data:; {MEDIA_SRC}; "
    "form-action 'self'; frame-ancestors 'none'",
}


PRIVATE_HEADERS = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]


class PrivateHeaders:
    """Adds `HEADERS` to every response: a plain ASGI middleware, which costs a fraction of
    Starlette's `@app.middleware("http")` on every webhook and page."""

    def __init__(self, app: Any, media: str = "") -> None:
        """`media`: one more origin pages may play video from (the uploads' bucket)."""
        self.app = app
        self.raw = PRIVATE_HEADERS
        if media:
            policy = HEADERS["Content-Security-Policy"].replace(MEDIA_SRC, f"{MEDIA_SRC} {media}")
            self.raw = [
                (name, policy.encode() if name == b"content-security-policy" else value)
                for name, value in PRIVATE_HEADERS
            ]
        self.names = {name for name, _ in self.raw}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                kept = [(n, v) for n, v in headers if n.lower() not in self.names]
                message = {**message, "headers": kept + self.raw}
            await send(message)

        await self.app(scope, receive, with_headers)


class RetryDroppedConnection:
    """A page or link read (GET, HEAD) that failed because the database dropped its
    connection goes once more, on a fresh one, before anything was answered: a failover costs
    the person nothing. Other requests are not repeated here (the event writer repeats its own
    group, which is safe to repeat)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started or not connection_dropped(exc):
                raise
            await self.app(scope, receive, send)


def page_response(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    """The template `name` rendered with `context`, as an HTML response."""
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def not_found(request: Request, *, status_code: int = 404) -> Response:
    """The plain "not found" page: what an unknown link, a stranger's task or a refused form
    gets alike, so none of them tells what exists."""
    return page_response(request, "not_found.html", {}, status_code=status_code)


def form_fields(body: bytes, *, max_fields: int, max_chars: int | None = None) -> dict[str, str]:
    """A form-encoded body's fields (the first of each name, each cut to `max_chars` if
    given); more than `max_fields` is a ValueError, answered 400."""
    pairs = parse_qsl(
        body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=max_fields
    )
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value[:max_chars])
    return form


async def request_body(request: Request, limit: int) -> bytes | None:
    """A page's request body, or None past `limit` bytes (see `bounded_body`)."""
    return await bounded_body(dict(request.scope["headers"]), request.receive, limit)


async def bounded_body(headers: dict[bytes, bytes], receive: Any, limit: int) -> bytes | None:
    """The request's body, or None as soon as it says or proves to be over `limit` bytes (it
    is never read, or kept, past that)."""
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)  # the sender went away; whatever is answered reaches no one
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)
