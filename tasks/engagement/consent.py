"""Consent on each channel: what a channel needs before Rally may use it, STOP / START, and
YES to a confirmation text.

"STOP", "unsubscribe", "stop messaging me" and their variants, as the whole of a reply, DM or
text, opt the person out of that channel at once; "START" opts them back in. Each change gets
one confirmation on that channel, and anything still waiting to go to them there is withdrawn.
Consent given on the signup page is pending until the person confirms it (`confirm`): "YES"
(or "START") as the whole of a text confirms their texts; until then nothing but the request
to confirm goes to them on that channel. "HELP" by text is answered with who is texting, how
often, and where to find help, whatever their consent.
"""

import re
import unicodedata

from store.models import ConsentStatus

STOP = re.compile(
    r"^\W*(?:please\s+)?(?:stop(?:\W+stop){0,2}(?:\s*all)?(?:\s+it)?|unsubscribe(?:\s+me)?|revoke|opt\s*-?\s*out|cancel"
    r"|end|quit|stop\s+(?:messaging|texting|dming|dm'?ing|contacting|replying\s+to|sending)"
    r"(?:\s+me)?(?:\s+(?:messages|texts|dms))?"
    r"|remove\s+me(?:\s+from\s+(?:this|your)\s+list)?|leave\s+me\s+alone"
    r"|no\s+more\s+(?:messages|texts|dms)|unsub)"
    r"(?:[\s,.!]+(?:please|pls|now|thanks|thx|thank\s+you))?\W*$",
    re.IGNORECASE,
)
YES = re.compile(
    r"^\W*(?:yes|y|confirm|i\s+confirm)(?:[\s,.!]+(?:please|thanks|thank\s+you))?\W*$",
    re.IGNORECASE,
)
HELP = re.compile(r"^\W*(?:help|info)\W*$", re.IGNORECASE)
START = re.compile(
    r"^\W*(?:start|unstop|resubscribe|subscribe|opt\s*-?\s*in)(?:\s+(?:please|again))?\W*$",
    re.IGNORECASE,
)

# Channels whose messages need a recorded yes; a public reply needs only no STOP, and a DM may
# answer someone who wrote to us first.
NEEDS_GRANT = {"email", "sms"}


def _plain(text: str | None) -> str | None:
    """A short message as the keywords are matched on (full-width letters read as plain ones);
    None for one too long to be a keyword."""
    if not text or len(text) > 80:
        return None
    return unicodedata.normalize("NFKC", text)


def command(text: str | None) -> ConsentStatus | None:
    """REVOKED for a STOP message, GRANTED for START, None for anything else."""
    text = _plain(text)
    if text is None:
        return None
    if STOP.match(text):
        return ConsentStatus.REVOKED
    if START.match(text):
        return ConsentStatus.GRANTED
    return None


def confirms(text: str | None, channel: str | None) -> bool:
    """Whether a message is YES to the text that asked the person to confirm: on SMS only (an
    email's sender proves nothing; email is confirmed by its link)."""
    text = _plain(text)
    return channel == "sms" and text is not None and bool(YES.match(text))


def asks_for_help(text: str | None, channel: str | None) -> bool:
    """Whether a text is HELP (or INFO), which the carriers require an answer to."""
    text = _plain(text)
    return channel == "sms" and text is not None and bool(HELP.match(text))


def event_channel(source: str, kind: str) -> str | None:
    """The channel a person used, where STOP on it means that channel."""
    if source == "sms":
        return "sms"
    if source == "email":
        return "email"
    if kind == "dm":
        return "dm"
    if kind in ("comment", "reply", "mention"):
        return "reply"
    return None


OUTCOMES = (
    "capped",
    "opted out",
    "unconfirmed",
    "no consent",
    "no address",
    "holdout",
    "cannot render",
)


def outcome_kind(reason: str) -> str:
    """`no consent for sms` -> `no consent`: the kind a report counts; the reason stays whole."""
    return next((kind for kind in OUTCOMES if reason.startswith(kind)), reason.split(":")[0])


def withheld_for(channel: str, status: str | None, *, they_wrote_first: bool) -> str | None:
    """Why a message on `channel` may not go, given the person's consent there, or None."""
    if status == ConsentStatus.REVOKED:
        return f"opted out of {channel}"
    if status == ConsentStatus.PENDING:
        return f"unconfirmed {channel}: they have not confirmed it yet"
    if channel in NEEDS_GRANT and status != ConsentStatus.GRANTED:
        return f"no consent for {channel}"
    if channel == "dm" and status != ConsentStatus.GRANTED and not they_wrote_first:
        return "no consent for dm: they have not written to us"
    return None
