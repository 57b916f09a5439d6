"""The errors every adapter raises, so the outbox drain can decide what to do with a message."""


class IntegrationError(Exception):
    """Delivering to an outside system failed."""


class TransientError(IntegrationError):
    """Worth retrying: a timeout, a 429 or 5xx, a temporary refusal (SMTP 4xx). `retry_after` is
    how many seconds the remote asked us to wait (its Retry-After), when it said."""

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class Deferred(TransientError):
    """This message may not go yet (the person's quiet hours): back in the queue until
    `retry_after` seconds from now, neither tried again at once nor counted as a try."""


class UnavailableError(TransientError):
    """The system as a whole cannot take messages now (down, or refusing our login): stop this
    pass and leave the remaining messages pending instead of failing each one."""


class PermanentError(IntegrationError):
    """This message can never succeed as it is (an invalid address, a 4xx other than 429)."""
