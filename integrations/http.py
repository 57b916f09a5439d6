"""What every HTTP adapter does the same way: one call with transport failures mapped onto the
error tree, a JSON object body, and Retry-After."""

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from integrations.errors import TransientError, UnavailableError


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
