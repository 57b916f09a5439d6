"""Reports kept in the store and served to the campaign's staff: `rally report` and the weekly
report task store them as well as writing the files, a week reported again replaces its
report, and `/reports/...` shows them to the campaign's approvers once signed in, to no one
else."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import col, select

from store.db import transaction
from store.models import Report
from store.types import utcnow
from tasks.reporting.report import build_report
from tasks.reporting.stored import keep_report
from tasks.review.approvers import issue, sign_in_link
from tests.conftest import SLUG
from web.app import create_app
from web.deps import SESSION_COOKIE

STAFF = "dana.okafor@keystoneyouthvote.example.org"
STRANGER = "someone@elsewhere.example.org"


def report_week(settings, engine, week: int, *, now=None) -> Path:
    """Report `week` as the weekly report task does; the path of its report.html."""
    with transaction(engine, write=False) as session:
        report = build_report(session, SLUG, week=week)
    folder = settings.home / "reports" / SLUG / f"week-{week:02d}"
    return keep_report(engine, report, folder, now=now or utcnow())["html"]


def signed_in(settings, engine, email: str) -> TestClient:
    """A browser with `email`'s session, as the emailed sign-in link opens it."""
    client = TestClient(create_app(settings))
    with transaction(engine) as session:
        secret = issue(session, email, kind="session", lifetime=timedelta(hours=1), now=utcnow())
    client.cookies.set(SESSION_COOKIE, secret)
    return client


def stored(engine) -> list[Report]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(Report).order_by(col(Report.week))))


def test_rally_report_and_the_report_task_store_each_week_once(settings, engine, rally, applied):
    run = rally("report", SLUG, "--week", "1")
    assert run.code == 0, run.err
    assert f"{settings.public_url}/reports/{SLUG}/week-1" in run.out
    first = report_week(settings, engine, 2, now=utcnow() - timedelta(hours=1))
    [one, two] = stored(engine)
    assert (one.week, two.week) == (1, 2)
    assert two.html == first.read_text()
    assert two.data["week"] == 2 and two.data["campaign"]["slug"] == SLUG
    assert two.data["weekly"][1]["week"] == 2

    report_week(settings, engine, 2)  # reported again: replaces, never a second row
    [_, again] = stored(engine)
    assert again.id == two.id and again.made_at > two.made_at


def test_staff_read_a_stored_report_and_no_one_else_does(settings, engine, rally, applied):
    path = report_week(settings, engine, 1)
    report_week(settings, engine, 2)

    signed_out = TestClient(create_app(settings), follow_redirects=False)
    for address in ("/reports", f"/reports/{SLUG}", f"/reports/{SLUG}/week-1"):
        refused = signed_out.get(address)
        assert refused.status_code == 401 and "Please sign in" in refused.text, address

    # The emailed sign-in link can lead straight to a report.
    browser = TestClient(create_app(settings))
    with transaction(engine) as session:
        link = sign_in_link(
            session, STAFF, public_url=settings.public_url, now=utcnow(), next_path="/reports"
        )
    token = link.split("/review/signin/")[1].split("?")[0]
    page = browser.post(f"/review/signin/{token}", data={"next": f"/reports/{SLUG}/week-1"})
    assert page.status_code == 200 and str(page.url).endswith(f"/reports/{SLUG}/week-1")
    assert page.text == path.read_text()  # the same page as the file
    assert page.headers["cache-control"] == "no-store"

    latest = browser.get(f"/reports/{SLUG}", follow_redirects=False)
    assert latest.status_code == 303 and latest.headers["location"] == f"/reports/{SLUG}/week-2"
    listed = browser.get("/reports")
    assert listed.status_code == 200 and "First Vote PA 2027" in listed.text
    assert f'href="/reports/{SLUG}/week-2"' in listed.text
    assert f'href="/reports/{SLUG}/week-1"' in listed.text
    for missing in (f"/reports/{SLUG}/week-3", f"/reports/{SLUG}/week-x", "/reports/nope/week-1"):
        assert browser.get(missing).status_code == 404, missing
    assert browser.get("/reports/nope").status_code == 404

    stranger = signed_in(settings, engine, STRANGER)  # an approver of no campaign of these
    assert stranger.get(f"/reports/{SLUG}/week-1").status_code == 404
    assert stranger.get(f"/reports/{SLUG}").status_code == 404
    assert "No campaign lists you" in stranger.get("/reports").text


def test_a_campaign_without_reports_yet_is_listed_without_weeks(settings, engine, applied):
    staff = signed_in(settings, engine, STAFF)
    assert "No report yet" in staff.get("/reports").text
    assert staff.get(f"/reports/{SLUG}").status_code == 404


def test_the_list_says_when_each_report_was_made_in_the_campaigns_time_zone(
    settings, engine, applied
):
    report_week(settings, engine, 1, now=datetime(2027, 2, 8, 17, 30, tzinfo=UTC))
    listed = signed_in(settings, engine, STAFF).get("/reports")
    assert "made Mon Feb 8, 12:30 EST" in listed.text  # New York's time, as the campaign's
