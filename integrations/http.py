"""What every HTTP adapter does the same way: one call with transport failures mapped onto the
error tree, a JSON object body, and Retry-After; and a JSON body a stranger sent, read safely."""

import json
import os
import re
import ssl
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import httpx

from config.errors import RallyError
from integrations.errors import TransientError, UnavailableError


def http_client(**options: Any) -> httpx.Client:
    """An httpx client (`options` as httpx takes them) on the process's one TLS context: each
    context httpx makes loads the whole certificate bundle again, 20-30 ms of CPU, and a
    sprint's tasks open dozens of clients."""
    return httpx.Client(verify=tls_context(), **options)


def client_or_own(
    client: httpx.Client | None, **options: Any
) -> AbstractContextManager[httpx.Client]:
    """`client`, left open for whoever gave it, else a client of its own (`http_client`),
    closed when the block ends."""
    return nullcontext(client) if client is not None else http_client(**options)


def tls_context() -> ssl.SSLContext:
    """The TLS context every client of this process shares, trusting what httpx would from the
    environment (`SSL_CERT_FILE`, else `SSL_CERT_DIR`, else certifi's bundle); made anew if
    those variables change, but a bundle rewritten in place is read again only by a new
    process."""
    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@cache
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    if cert_file:
        try:
            return ssl.create_default_context(cafile=cert_file)
        except ssl.SSLError:
            raise RallyError(f"SSL_CERT_FILE={cert_file}: holds no certificates (PEM)") from None
        except OSError as exc:  # missing, unreadable, a folder
            raise RallyError(f"SSL_CERT_FILE={cert_file}: {exc.strerror or exc}") from None
    if cert_dir:
        return ssl.create_default_context(capath=cert_dir)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def request(
    client: httpx.Client, method: str, url: str, *, where: str, **kwargs: Any
) -> httpx.Response:
    """One HTTP call: a timeout or a dropped connection is a `TransientError` (worth trying
    again); anything else httpx raises means the service cannot be reached (`UnavailableError`)."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise TransientError(f"{where}: timed out") from None
    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransientError(f"{where}: connection failed ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise UnavailableError(f"{where}: cannot reach it ({type(exc).__name__})") from None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or {} when it is not one (an HTML error page, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class NotJSON(ValueError):
    """A body that does not parse as JSON at all."""


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # an escaped UTF-16 surrogate: \ud800 to \udfff


def json_body(body: bytes | str) -> Any:
    """A body someone sent (a webhook, an uploaded line), parsed; ValueError saying why for one
    that is not JSON, nests too deeply for the parser, or holds a lone UTF-16 surrogate (valid
    JSON, but no text the store can keep: refusing it keeps the sender from retrying forever)."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    try:
        parsed = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise NotJSON(f"not JSON: {exc.msg}") from None
    except ValueError:  # not UTF-8, or a number of thousands of digits
        raise NotJSON("not JSON") from None
    if _SURROGATE.search(raw):  # paired ones make one character; a lone one stays a surrogate
        try:
            json.dumps(parsed, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("a text holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
    return parsed


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, from either of its forms (seconds, or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
