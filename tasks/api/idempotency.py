"""`Idempotency-Key` on the API's POSTs: the first request with a key is done and its answer
kept for a day; a retry with the same key and the same request gets that answer again and
does nothing; the same key with a different request is refused. A key whose first request is
still being answered is refused for a moment (409), and taken over if that request died
without answering (`ABANDONED`)."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from store.db import transaction
from store.models import ApiIdempotencyKey

KEPT = timedelta(days=1)
ABANDONED = timedelta(minutes=5)  # an unanswered key this old belongs to a request that died
MAX_KEY = 255


class KeyRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def request_hash(method: str, path: str, body: Any) -> str:
    """What makes two requests the same one: method, path and the body's JSON."""
    text = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def begin(engine: Engine, token_id: int, key: str, digest: str, *, now: datetime) -> Answer | None:
    """Take `key` for this request: None to go ahead and do it, or the answer it got before."""
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise KeyRefused(400, f"Idempotency-Key must be 1 to {MAX_KEY} printable characters")
    try:
        with transaction(engine) as session:
            session.execute(
                delete(ApiIdempotencyKey).where(
                    col(ApiIdempotencyKey.token_id) == token_id,
                    col(ApiIdempotencyKey.created_at) < now - KEPT,
                )
            )
            found = session.get(ApiIdempotencyKey, (token_id, key))
            if found is None:
                session.add(
                    ApiIdempotencyKey(
                        token_id=token_id, key=key, request_hash=digest, created_at=now
                    )
                )
                return None
            if found.request_hash != digest:
                raise KeyRefused(422, "this Idempotency-Key was used for a different request")
            if found.status is not None:
                return Answer(found.status, found.body or {})
            if found.created_at > now - ABANDONED:
                raise KeyRefused(409, "a request with this Idempotency-Key is being answered")
            found.created_at = now  # its first request died unanswered: this one does it
            session.add(found)
            return None
    except IntegrityError:  # another request took the key a moment before this one
        raise KeyRefused(409, "a request with this Idempotency-Key is being answered") from None


def finish(engine: Engine, token_id: int, key: str, answer: Answer) -> None:
    """Keep the answer the request got, for its retries."""
    with transaction(engine) as session:
        session.execute(
            update(ApiIdempotencyKey)
            .where(col(ApiIdempotencyKey.token_id) == token_id, col(ApiIdempotencyKey.key) == key)
            .values(status=answer.status, body=answer.body)
        )


def abandon(engine: Engine, token_id: int, key: str) -> None:
    """Free the key of a request that failed before it was done: a retry may do it."""
    with transaction(engine) as session:
        session.execute(
            delete(ApiIdempotencyKey).where(
                col(ApiIdempotencyKey.token_id) == token_id, col(ApiIdempotencyKey.key) == key
            )
        )
