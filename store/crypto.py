"""Secrets at rest: what Rally must keep and use again (a TikTok account's tokens) is stored
sealed with a key from the environment (`RALLY_SECRET_KEY`), never in the clear.

Fernet (AES-128-CBC with an HMAC-SHA256) from `cryptography`: a sealed value read back with
another key, or altered, is refused rather than misread.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from config.errors import RallyError

MIN_KEY_LENGTH = 32


class Sealer:
    """Seals and opens text with one key. Any text of 32 characters or more is a key (its
    SHA-256 is Fernet's key), so a random string from a password manager will do."""

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise RallyError(
                f"RALLY_SECRET_KEY must be at least {MIN_KEY_LENGTH} characters: Rally seals "
                'the tokens it keeps with it (make one with `python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"`)'
            )
        digest = hashlib.sha256(key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def open(self, sealed: str, what: str) -> str:
        """The text sealed in `sealed`; a RallyError naming `what` if this key did not seal it."""
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, ValueError):
            raise RallyError(
                f"{what} cannot be opened with this RALLY_SECRET_KEY: it was sealed with "
                "another key, or altered"
            ) from None
