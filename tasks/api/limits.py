"""Each API token's request rate: at most `per_window` requests in each fixed window of
`window_seconds`, counted in this process (a token used through several web processes gets
that many per process). The answer carries what the `RateLimit` and `RateLimit-Policy`
headers say (IETF httpapi-ratelimit-headers): the quota, what is left, when it resets."""

import math
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Quota:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Policy": f'"per-token";q={self.limit};w={self.window_seconds}',
            "RateLimit": f'"per-token";r={self.remaining};t={self.reset_seconds}',
        }


class TokenLimits:
    """Fixed windows per token; `take` is safe from the server's worker threads."""

    def __init__(self, per_window: int, window_seconds: int = 60) -> None:
        self.per_window, self.window = per_window, window_seconds
        self._counts: dict[int, tuple[int, int]] = {}  # token -> (window number, requests)
        self._lock = threading.Lock()

    def take(self, token_id: int, now: float) -> Quota:
        """Count one request of `token_id` at `now` (seconds) if the window has room."""
        number = math.floor(now / self.window)
        reset = max(1, math.ceil((number + 1) * self.window - now))
        with self._lock:
            window, used = self._counts.get(token_id, (number, 0))
            if window != number:
                used = 0
                if len(self._counts) > 10_000:  # tokens not seen this window are forgotten
                    self._counts = {t: c for t, c in self._counts.items() if c[0] == number}
            allowed = used < self.per_window
            if allowed:
                used += 1
            self._counts[token_id] = (number, used)
        return Quota(allowed, self.per_window, self.per_window - used, reset, self.window)
