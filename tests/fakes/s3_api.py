"""A local S3-compatible service (path-style, as MinIO and R2 serve it) for the uploads' bucket:
PUT, HEAD, GET (with ranges), DELETE of objects, each checked as S3 checks it:

- Signature Version 4, in the Authorization header or a presigned URL's query, recomputed
  here on its own (403 SignatureDoesNotMatch), the request's time within 15 minutes of the
  fake's (403 RequestTimeTooSkewed), a presigned URL's expiry (403 AccessDenied);
- the signed payload hash against the body received (400 XAmzContentSHA256Mismatch);
- an unknown bucket (404 NoSuchBucket) or key (404 NoSuchKey); errors as S3's XML.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Response

ACCESS_KEY = "RALLYFAKEACCESSKEY"
SECRET_KEY = "rally/fake+secret/key"
BUCKET = "rally-videos"
SKEW = timedelta(minutes=15)


@dataclass
class StoredObject:
    body: bytes
    content_type: str


def s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(status, body=body, headers={"Content-Type": "application/xml"})


def expected_signature(
    secret: str,
    request: RecordedRequest,
    *,
    signed_headers: list[str],
    amz_date: str,
    region: str,
    payload: str,
    drop_query: str = "",
) -> str:
    """SigV4 as S3 computes it on its side, from the request as it arrived."""
    pairs = [
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, values in request.query_all.items()
        if k != drop_query
        for v in values
    ]
    lines = [
        request.method,
        request.path,
        "&".join(f"{k}={v}" for k, v in sorted(pairs)),
        "".join(f"{n}:{' '.join(request.headers.get(n, '').split())}\n" for n in signed_headers),
        ";".join(signed_headers),
        payload,
    ]
    day = amz_date[:8]
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = (
        f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
        + hashlib.sha256("\n".join(lines).encode()).hexdigest()
    )
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class FakeS3(FakeHttpServer):
    def __init__(
        self,
        *,
        bucket: str = BUCKET,
        region: str = "us-east-1",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket, self.region = bucket, region
        self.ahead = timedelta(0)  # how far the fake's clock runs ahead of the real one
        self.objects: dict[str, StoredObject] = {}
        for method, handler in (
            ("PUT", self.put),
            ("GET", self.get),
            ("HEAD", self.head),
            ("DELETE", self.delete),
        ):
            self.route(method, "/{bucket}/{key:path}", handler)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def env(self) -> dict[str, str]:
        """The settings that point Rally's bucket at this fake."""
        return {
            "RALLY_S3_BUCKET": self.bucket,
            "RALLY_S3_ENDPOINT": self.url,
            "RALLY_S3_REGION": self.region,
            "RALLY_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "RALLY_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    # -- checks S3 makes of every request --------------------------------------------------------

    def _refusal(self, request: RecordedRequest) -> Response | None:
        if "X-Amz-Signature" in request.query:
            return self._presigned_refusal(request)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return s3_error(403, "AccessDenied", "Access Denied")
        fields = dict(part.strip().split("=", 1) for part in auth[17:].split(","))
        amz_date = request.headers.get("x-amz-date", "")
        payload = request.headers.get("x-amz-content-sha256", "")
        refused = self._credential_refusal(fields.get("Credential", ""), amz_date)
        if refused:
            return refused
        if not self._recent(amz_date):
            return s3_error(403, "RequestTimeTooSkewed", "The difference is too large.")
        signed = fields.get("SignedHeaders", "").split(";")
        wanted = expected_signature(
            SECRET_KEY,
            request,
            signed_headers=signed,
            amz_date=amz_date,
            region=self.region,
            payload=payload,
        )
        if "host" not in signed or not hmac.compare_digest(fields.get("Signature", ""), wanted):
            return s3_error(403, "SignatureDoesNotMatch", "The signature does not match.")
        if payload != "UNSIGNED-PAYLOAD" and payload != hashlib.sha256(request.body).hexdigest():
            return s3_error(400, "XAmzContentSHA256Mismatch", "The content SHA-256 differs.")
        return None

    def _presigned_refusal(self, request: RecordedRequest) -> Response | None:
        query = request.query
        amz_date = query.get("X-Amz-Date", "")
        refused = self._credential_refusal(query.get("X-Amz-Credential", ""), amz_date)
        if refused:
            return refused
        try:
            issued = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            lasts = timedelta(seconds=int(query.get("X-Amz-Expires", "")))
        except ValueError:
            return s3_error(400, "AuthorizationQueryParametersError", "Bad X-Amz-Date/Expires")
        if self.now() > issued + lasts:
            return s3_error(403, "AccessDenied", "Request has expired")
        wanted = expected_signature(
            SECRET_KEY,
            request,
            signed_headers=query.get("X-Amz-SignedHeaders", "").split(";"),
            amz_date=amz_date,
            region=self.region,
            payload="UNSIGNED-PAYLOAD",
            drop_query="X-Amz-Signature",
        )
        if not hmac.compare_digest(query["X-Amz-Signature"], wanted):
            return s3_error(403, "SignatureDoesNotMatch", "The signature does not match.")
        return None

    def _credential_refusal(self, credential: str, amz_date: str) -> Response | None:
        parts = credential.split("/")
        if len(parts) != 5 or parts[0] != ACCESS_KEY:
            return s3_error(403, "InvalidAccessKeyId", "The access key Id does not exist.")
        if parts[1:] != [amz_date[:8], self.region, "s3", "aws4_request"]:
            return s3_error(400, "AuthorizationHeaderMalformed", f"Bad scope {credential}")
        return None

    def _recent(self, amz_date: str) -> bool:
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return False
        return abs(self.now() - when) <= SKEW

    def _object(self, request: RecordedRequest) -> tuple[Response | None, str]:
        refused = self._refusal(request)
        if refused:
            return refused, ""
        if request.path_params["bucket"] != self.bucket:
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist"), ""
        return None, request.path_params["key"]

    # -- the calls -------------------------------------------------------------------------------

    def put(self, request: RecordedRequest) -> Response:
        refused, key = self._object(request)
        if refused:
            return refused
        content_type = request.headers.get("content-type", "binary/octet-stream")
        self.objects[key] = StoredObject(request.body, content_type)
        return Response(200, headers={"ETag": _etag(request.body)})

    def head(self, request: RecordedRequest) -> Response:
        refused, key = self._object(request)
        if refused:
            return Response(refused.status)  # S3 answers a HEAD with no body
        stored = self.objects.get(key)
        if stored is None:
            return Response(404)
        return Response(200, headers=_object_headers(stored))

    def get(self, request: RecordedRequest) -> Response:
        refused, key = self._object(request)
        if refused:
            return refused
        stored = self.objects.get(key)
        if stored is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        headers = _object_headers(stored)
        headers["Content-Type"] = request.query.get("response-content-type", stored.content_type)
        wanted = request.headers.get("range", "")
        if not wanted.startswith("bytes="):
            return Response(200, body=stored.body, headers=headers)
        first_text, _, last_text = wanted[6:].partition("-")
        size = len(stored.body)
        first = int(first_text) if first_text else max(size - int(last_text), 0)
        last = min(int(last_text), size - 1) if first_text and last_text else size - 1
        if first >= size:
            return s3_error(416, "InvalidRange", "The requested range is not satisfiable")
        part = stored.body[first : last + 1]
        headers.pop("Content-Length")
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Response(206, body=part, headers=headers)

    def delete(self, request: RecordedRequest) -> Response:
        refused, key = self._object(request)
        if refused:
            return refused
        self.objects.pop(key, None)
        return Response(204)


def _etag(body: bytes) -> str:
    return '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'


def _object_headers(stored: StoredObject) -> dict[str, str]:
    return {
        "Content-Type": stored.content_type,
        "Content-Length": str(len(stored.body)),
        "ETag": _etag(stored.body),
        "Accept-Ranges": "bytes",
    }
