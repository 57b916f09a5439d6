"""A new sign-in link for an approver who asks for one on the signed-out page: emailed only
to an address a campaign lists (staff or approvers), the same answer for anyone, and limited
per network address and per email address, so the form floods no inbox and probes nothing."""

import hashlib
import secrets
from datetime import datetime

from sqlmodel import Session

from tasks.outbox import enqueue
from tasks.rate_limits import admit, forget_idle
from tasks.review.approvers import LINK_LIFETIME, STAFF_PAGES, reviews_anything, sign_in_link
from tasks.review.routing import review_email

LINK_REQUESTS_PER_CLIENT, CLIENT_WINDOW = 10, 15 * 60.0
LINK_REQUESTS_PER_ADDRESS, ADDRESS_WINDOW = 3, 3600.0


def _account(value: str) -> str:
    """How a network or email address is kept in the rate windows: hashed."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def count_link_request(session: Session, *, email: str, client: str) -> float:
    """Count a request for a new sign-in link against the limits per network address and per
    email address, in the caller's (short) transaction: 0.0 when within them, else the
    seconds until another would be. Every request counts, whoever the address belongs to."""
    forget_idle(session, "signin client")
    forget_idle(session, "signin address")
    wait = admit(
        session,
        "signin client",
        _account(client),
        requests=LINK_REQUESTS_PER_CLIENT,
        window=CLIENT_WINDOW,
    )
    if wait:
        return wait
    return admit(
        session,
        "signin address",
        _account(email.lower()),
        requests=LINK_REQUESTS_PER_ADDRESS,
        window=ADDRESS_WINDOW,
    )


def email_new_link(
    session: Session, email: str, *, public_url: str, now: datetime, next_path: str
) -> bool:
    """Email a fresh sign-in link to `email` if it is an approver or staff of a campaign
    (through the outbox, which scrubs the link once sent); whether it was is for tests and
    logs only, never for the person asking."""
    address = email.strip().lower()
    if not reviews_anything(session, address):
        return False
    link = sign_in_link(session, address, public_url=public_url, now=now, next_path=next_path)
    pages = "staff console" if next_path.startswith(STAFF_PAGES) else "review pages"
    text = (
        f"You asked for a new link to sign in to Rally's {pages}.\n"
        f"Open it (the link signs you in once, within {LINK_LIFETIME.days} days): {link}\n"
        "If you did not ask for it, ignore this email: nothing happens without the link.\n"
    )
    key = f"signin:{secrets.token_hex(8)}"  # every request its own email
    enqueue(session, [review_email(address, key=key, subject="Your sign-in link", text=text)])
    return True
