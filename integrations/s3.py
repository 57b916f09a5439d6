"""An S3-compatible bucket (Amazon S3, Cloudflare R2, MinIO, Backblaze B2, Wasabi, ...) that
keeps creators' uploaded videos when `RALLY_S3_BUCKET` is set: put, head, delete, and
presigned links a browser plays the video from. Requests are signed with AWS Signature
Version 4 over httpx; four calls do not justify an SDK.

Addressing: with no `RALLY_S3_ENDPOINT` the bucket is Amazon's, in its region's host
(`https://<bucket>.s3.<region>.amazonaws.com/<key>`); with an endpoint (R2, MinIO, ...) the
bucket is the first segment of the path (`<endpoint>/<bucket>/<key>`), which they all accept.
"""

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import Field, SecretStr
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from config.settings import RallySettings
from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.http import http_client, request, retry_after

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CHUNK = 1024 * 1024
ERROR_PART = re.compile(r"<(Code|Message)>([^<]{0,300})</\1>")


class BucketSettings(RallySettings):
    s3_bucket: str = Field(
        "", description="Bucket for uploaded videos; empty keeps them under RALLY_HOME/uploads"
    )
    s3_endpoint: str = Field(
        "", description="An S3-compatible service's URL (R2, MinIO, ...); empty means Amazon S3"
    )
    s3_region: str = Field("us-east-1", description="The bucket's region (R2: auto)")
    s3_access_key_id: str = Field("", description="Access key id for the bucket")
    s3_secret_access_key: SecretStr = Field(SecretStr(""), description="Its secret access key")
    s3_link_minutes: int = Field(
        60, ge=1, le=7 * 24 * 60, description="How long a video link a page shows stays valid"
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _encode(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def signature(
    secret: str,
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    payload_sha256: str,
    amz_date: str,
    region: str,
) -> str:
    """Signature Version 4 of one request to S3: `headers` are the signed ones (lowercase
    names, `host` among them), `path` the decoded object path, `amz_date` like 20130524T000000Z."""
    canonical_query = "&".join(
        f"{k}={v}" for k, v in sorted((_encode(k), _encode(v)) for k, v in query)
    )
    names = sorted(headers)
    canonical_headers = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names)
    canonical_request = "\n".join(
        [
            method,
            _encode(path, safe="/-_.~"),
            canonical_query,
            canonical_headers,
            ";".join(names),
            payload_sha256,
        ]
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), day), region), "s3"), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


class Bucket:
    """One bucket, with the calls Rally makes of it. Failures map onto the adapters' error tree:
    a refused login or a missing bucket is `UnavailableError` (Rally's set-up, not the
    request, is wrong), 5xx and timeouts are `TransientError` after three tries."""

    def __init__(
        self,
        settings: BucketSettings,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tries: int = 3,
    ) -> None:
        if not settings.s3_bucket:
            raise ValueError("no bucket: RALLY_S3_BUCKET is empty")
        self.settings = settings
        self.clock = clock
        self.tries = tries
        self.client = client or http_client(timeout=httpx.Timeout(30.0, connect=5.0))
        bucket, region = settings.s3_bucket, settings.s3_region
        if settings.s3_endpoint:
            self.base, self.prefix = settings.s3_endpoint.rstrip("/"), f"/{bucket}/"
        else:
            self.base, self.prefix = f"https://{bucket}.s3.{region}.amazonaws.com", "/"
        parts = urlsplit(self.base)
        self.host, self.base_path = parts.netloc, parts.path
        self.origin = f"{parts.scheme}://{parts.netloc}"  # for the pages' CSP (`media-src`)

    def _path(self, key: str) -> str:
        return f"{self.base_path}{self.prefix}{key}"

    def _url(self, path: str, query: str = "") -> str:
        origin = self.origin + _encode(path, safe="/-_.~")
        return f"{origin}?{query}" if query else origin

    def _credential(self, amz_date: str) -> str:
        day = amz_date[:8]
        return f"{self.settings.s3_access_key_id}/{day}/{self.settings.s3_region}/s3/aws4_request"

    def _sign(
        self, method: str, path: str, payload_sha256: str, extra: dict[str, str]
    ) -> dict[str, str]:
        amz_date = self.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {
            "host": self.host,
            "x-amz-content-sha256": payload_sha256,
            "x-amz-date": amz_date,
            **{name.lower(): value for name, value in extra.items()},
        }
        signed = signature(
            self.settings.s3_secret_access_key.get_secret_value(),
            method=method,
            path=path,
            query=[],
            headers=headers,
            payload_sha256=payload_sha256,
            amz_date=amz_date,
            region=self.settings.s3_region,
        )
        headers["authorization"] = (
            f"{ALGORITHM} Credential={self._credential(amz_date)}, "
            f"SignedHeaders={';'.join(sorted(headers))}, Signature={signed}"
        )
        return headers

    def _call(
        self,
        method: str,
        key: str,
        *,
        payload_sha256: str = EMPTY_SHA256,
        extra: dict[str, str] | None = None,
        content: Callable[[], Any] | None = None,
    ) -> httpx.Response:
        path = self._path(key)
        where = f"S3 bucket {self.settings.s3_bucket}: {method} {key}"

        def once() -> httpx.Response:
            headers = self._sign(method, path, payload_sha256, extra or {})
            body = content() if content is not None else None
            response = request(
                self.client, method, self._url(path), where=where, headers=headers, content=body
            )
            _raise_for(response, where)
            return response

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: type(exc) is TransientError),  # not Unavailable
            stop=stop_after_attempt(self.tries),
            wait=wait_exponential(multiplier=0.5, max=4),
            reraise=True,
        )
        return retrying(once)

    def put(self, key: str, path: Path, *, sha256_hex: str, content_type: str) -> None:
        """Store the file at `path` as `key`; its SHA-256 is signed, so S3 refuses a body that
        arrived changed."""
        size = path.stat().st_size
        extra = {"content-type": content_type, "content-length": str(size)}
        self._call(
            "PUT",
            key,
            payload_sha256=sha256_hex,
            extra=extra,
            content=lambda: _file_chunks(path),
        )

    def size(self, key: str) -> int | None:
        """The stored object's size, or None when there is no such key."""
        try:
            response = self._call("HEAD", key)
        except _Missing:
            return None
        return int(response.headers.get("content-length", "0"))

    def delete(self, key: str) -> None:
        self._call("DELETE", key)  # S3 answers 204 for a key that is not there too

    def link(self, key: str, *, content_type: str) -> str:
        """A presigned GET link to `key`, valid for `s3_link_minutes`: what a page's <video>
        plays, straight from the bucket (with ranges, so it can seek)."""
        amz_date = self.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        query = [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", self._credential(amz_date)),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(self.settings.s3_link_minutes * 60)),
            ("X-Amz-SignedHeaders", "host"),
            ("response-content-type", content_type),
        ]
        path = self._path(key)
        signed = signature(
            self.settings.s3_secret_access_key.get_secret_value(),
            method="GET",
            path=path,
            query=query,
            headers={"host": self.host},
            payload_sha256="UNSIGNED-PAYLOAD",
            amz_date=amz_date,
            region=self.settings.s3_region,
        )
        encoded = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in query)
        return self._url(path, f"{encoded}&X-Amz-Signature={signed}")


class _Missing(PermanentError):
    """S3 has no such key (404 on a HEAD, NoSuchKey)."""


def _raise_for(response: httpx.Response, where: str) -> None:
    status = response.status_code
    if status < 300:
        return
    parts = dict(ERROR_PART.findall(response.text)) if response.content else {}
    code = parts.get("Code", "")
    said = f"{status} {code}: {parts.get('Message', '')}".strip(": ")
    if status == 404 and code in ("", "NoSuchKey"):
        raise _Missing(f"{where}: no such object")
    if status in (401, 403) or code == "NoSuchBucket":
        raise UnavailableError(f"{where}: refused ({said}); check RALLY_S3_* settings")
    if status == 429 or status >= 500:
        raise TransientError(f"{where}: {said}", retry_after=retry_after(response))
    raise PermanentError(f"{where}: {said}")
