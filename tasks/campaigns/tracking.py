"""Each creator's codes and links: the `/t/<code>` short link, UTM tags, the promo code."""

import base64
import hashlib
import re
from collections.abc import Container
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from config.campaign import CampaignSpec


def tracking_code(slug: str, platform: str, handle: str) -> str:
    """A stable, short, URL-safe code for the creator's `/t/<code>` link."""
    digest = hashlib.sha256(f"{slug}:{platform}:{handle}".encode()).digest()
    return base64.b32encode(digest).decode()[:10].lower()


def tracking_url(spec: "CampaignSpec", platform: str, handle: str) -> str:
    """The landing page with the creator's UTM tags (content = their handle)."""
    return tagged_url(
        spec.tracking.landing_url, spec.tracking.utm_medium, spec.slug, platform, handle
    )


def tagged_url(landing_url: str, medium: str, slug: str, platform: str, handle: str) -> str:
    """`landing_url` with UTM tags: source = platform, campaign = slug, content = handle."""
    parts = urlsplit(landing_url)
    tags = {
        "utm_source": platform,
        "utm_medium": medium,
        "utm_campaign": slug,
        "utm_content": handle,
    }
    query = f"{parts.query}&{urlencode(tags)}" if parts.query else urlencode(tags)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def source_code(handle: str, taken: Container[str]) -> str:
    """A promo code people can type: `maya.votes` -> `MAYAVOTES`, or `MAYAVOTES2` when taken."""
    base = re.sub(r"[^A-Z0-9]", "", handle.upper())[:12] or "CREATOR"
    code, n = base, 1
    while code in taken:
        n += 1
        code = f"{base}{n}"
    return code
