"""The public signup page on `rally serve`: a burst of signups from one network address, sent at
once to two servers on one store, is held to the page's limit; and in a real browser, on a
phone and a desktop, a person signs up, sees what to do next and confirms by the emailed link.
"""

import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlmodel import col, select

from store.db import transaction
from store.models import ConsentStatus, Contact, ContactConsent, EngagementEvent, OutboxMessage
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits

pytestmark = pytest.mark.slow

BURST = 40


def confirmations(engine) -> list[OutboxMessage]:
    with transaction(engine, write=False) as session:
        return list(
            session.exec(
                select(OutboxMessage).where(
                    col(OutboxMessage.idempotency_key).startswith("confirm:")
                )
            )
        )


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.serve_process
def test_a_burst_from_one_address_on_two_servers_gets_the_limit_and_no_more(
    server: Server, second_server: Server, applied, engine
):
    urls = [server.ready(), second_server.ready()]
    start = threading.Barrier(BURST)

    def sign_up(i: int) -> int:
        form = {"name": f"Bot {i}", "email": f"bot{i}@example.org", "consent_email": "yes"}
        with httpx.Client(timeout=60) as client:
            client.get(f"{urls[i % 2]}/healthz")  # connected before the burst
            start.wait()
            return client.post(f"{urls[i % 2]}/join/{SLUG}", data=form).status_code

    with ThreadPoolExecutor(BURST) as pool:
        answers = Counter(pool.map(sign_up, range(BURST)))

    assert answers == {200: 5, 429: BURST - 5}
    with transaction(engine, write=False) as session:
        assert len(session.exec(select(Contact)).all()) == 5
        assert len(session.exec(select(EngagementEvent)).all()) == 5
    assert len(confirmations(engine)) == 5

    # Behind a proxy on this machine (uvicorn trusts its X-Forwarded-For), each visitor counts
    # on their own.
    proxied = httpx.post(
        f"{urls[0]}/join/{SLUG}",
        data={"name": "Ana", "email": "ana@example.org", "consent_email": "yes"},
        headers={"X-Forwarded-For": "203.0.113.50"},
    )
    assert proxied.status_code == 200


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_person_signs_up_on_a_phone_and_confirms_by_the_emailed_link(
    server: Server, applied, engine, tabs, tmp_path: Path
):
    tab = tabs()
    page = tab.page
    page.goto(f"{server.url}/join/{SLUG}")
    assert page.locator("h1").inner_text() == "Join First Vote PA 2027"
    assert page.locator("#intro").inner_text().startswith("Your first vote counts.")
    assert_page_fits(page, "join")

    # A mistake comes back beside its field, with what was typed kept.
    page.fill("input[name=name]", "Pat Lee")
    page.fill("input[name=email]", "pat.lee@")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign up").click()
    assert page.locator(".problem").inner_text() == "That does not look like an email address."
    assert page.input_value("input[name=name]") == "Pat Lee"
    assert_page_fits(page, "join-problems")

    page.set_viewport_size({"width": 390, "height": 844})
    trap = page.locator("input[name=website]").bounding_box()
    assert trap is not None and trap["x"] + trap["width"] <= 0  # off-screen: people never see it
    size = page.evaluate("getComputedStyle(document.querySelector('input[name=email]')).fontSize")
    assert float(size.removesuffix("px")) >= 16  # no zoom on focus on a phone
    page.fill("input[name=name]", "Pat Lee")
    page.fill("input[name=email]", "pat.lee@example.org")
    page.fill("input[name=phone]", "(215) 555-0123")
    page.check("input[name=consent_email]")
    page.check("input[name=consent_sms]")
    page.get_by_role("button", name="Sign up").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")  # the form works by keyboard

    assert page.locator("h1").inner_text() == "Thanks, Pat!"
    assert "pat.lee@example.org" in page.locator("#check-email").inner_text()
    assert "(215) 555-0123" in page.locator("#reply-yes").inner_text()
    assert page.locator("#next a").get_attribute("href") == "https://firstvotepa.example.org"
    register = page.get_by_role("link", name="Register to vote (2 minutes)")
    assert register.get_attribute("href", timeout=1000).startswith("https://www.pavoterservices")
    assert_page_fits(page, "joined")

    [email] = [m for m in confirmations(engine) if m.channel == "email"]
    link = re.search(r"http\S+/confirm/\S+", email.payload["text"])
    assert link is not None
    page.goto(link[0])
    assert_page_fits(page, "confirm")
    page.get_by_role("button", name="Confirm my email").click()
    assert "Thank you" in page.locator("[role=status]").inner_text()
    assert_page_fits(page, "confirmed")
    assert tab.dialogs == []
    with transaction(engine, write=False) as session:
        status = dict(session.exec(select(ContactConsent.channel, ContactConsent.status)).all())
    assert status == {"email": ConsentStatus.GRANTED, "sms": ConsentStatus.PENDING}

    page.goto(f"{server.url}/t/NO-SUCH-CODE")  # a creator's link mistyped by a fan
    assert page.locator("h1").inner_text() == "This link doesn't lead anywhere"
    assert_page_fits(page, "unknown-link")

    page.goto(f"{server.url}/join/no-such-campaign")  # a signup link from an old flyer
    assert page.locator("h1").inner_text() == "Not found"
    assert "brief" not in page.locator("main").inner_text()  # words for anyone, not creators
    assert_page_fits(page, "not-found")
