"""The staff console: only the people a campaign file lists under `staff:` get in, and only to
their campaigns; they mark milestones, send dead letters again and read the follow-up log (by
person, rule and channel, a page at a time) and the audit log, each change audited with their
email, on SQLite and PostgreSQL."""

import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlmodel import col, select

from benchmarks.pages import apply_example, seed_engagement
from store.db import transaction
from store.models import (
    AuditEvent,
    Campaign,
    Creative,
    CreativeStatus,
    Creator,
    Milestone,
    OutboxMessage,
    RosterMember,
    StaffRun,
)
from store.types import utcnow
from tasks.review.approvers import issue
from tasks.staff.access import staff_sign_in
from tasks.staff.runs import HERE
from tests.conftest import SLUG
from web.app import create_app
from web.deps import SESSION_COOKIE

STAFF = "dana.okafor@keystoneyouthvote.example.org"  # staff (and an internal reviewer)
LEGAL = "counsel@keystoneyouthvote.example.org"  # an approver only
OTHER = "second-campaign"


def signed_in(settings, engine, email: str) -> TestClient:
    client = TestClient(create_app(settings))
    with transaction(engine) as session:
        secret = issue(session, email, kind="session", lifetime=timedelta(hours=1), now=utcnow())
    client.cookies.set(SESSION_COOKIE, secret)
    return client


def other_campaign(engine, example: Path, tmp_path: Path) -> int:
    """A second campaign whose staff is somebody else."""
    folder = tmp_path / "other"
    folder.mkdir()
    for name in ("campaign.yaml", "roster.csv"):
        (folder / name).write_text((example / name).read_text())
    text = (folder / "campaign.yaml").read_text()
    text = text.replace(f"slug: {SLUG}", f"slug: {OTHER}").replace(
        "name: First Vote PA 2027", "name: Second Campaign"
    )
    text = re.sub(
        r"staff:.*\n.*\n", "staff: [someone.else@keystoneyouthvote.example.org]\n", text, count=1
    )
    (folder / "campaign.yaml").write_text(text)
    return apply_example(engine, folder).id or 0


def campaign_id(engine, slug: str = SLUG) -> int:
    with transaction(engine, write=False) as session:
        return session.exec(select(Campaign.id).where(Campaign.slug == slug)).one() or 0


def test_only_listed_staff_get_in_and_only_to_their_campaigns(
    settings, engine, rally, applied, tmp_path
):
    other_campaign(engine, applied, tmp_path)
    staff = signed_in(settings, engine, STAFF)
    listing = staff.get("/staff")
    assert listing.status_code == 200
    assert "First Vote PA 2027" in listing.text and "Second Campaign" not in listing.text
    assert staff.get(f"/staff/campaigns/{SLUG}").status_code == 200
    assert staff.get(f"/staff/campaigns/{OTHER}").status_code == 404
    assert staff.get(f"/staff/campaigns/{OTHER}/followups").status_code == 404
    assert staff.get(f"/staff/campaigns/{OTHER}/audit").status_code == 404
    refused = staff.post(
        f"/staff/campaigns/{OTHER}/milestones/strategy",
        data={"status": "met"},
        headers={"Origin": settings.public_url},
    )
    assert refused.status_code == 404

    approver = signed_in(settings, engine, LEGAL)  # reviews for the campaign, not its staff
    assert "No campaign lists you as staff" in approver.get("/staff").text
    assert approver.get(f"/staff/campaigns/{SLUG}").status_code == 404

    nobody = TestClient(create_app(settings))
    out = nobody.get(f"/staff/campaigns/{SLUG}")
    assert out.status_code == 401 and "Email me a new sign-in link" in out.text

    # The CLI gives staff a link (and nobody else); it opens the same sign-in as approvers'.
    assert rally("staff", "link", LEGAL, "--print").code == 1
    printed = rally("staff", "link", STAFF, "--print")
    assert printed.code == 0, printed.err
    token = re.search(r"/staff/signin/(\S+)\?next=/staff", printed.out)
    assert token
    door = nobody.get(f"/staff/signin/{token[1]}")
    assert door.status_code == 200 and "Sign in to the staff console" in door.text
    entered = nobody.post(f"/review/signin/{token[1]}", data={"next": "/staff"})
    assert entered.status_code == 200 and str(entered.url).endswith("/staff")
    assert "First Vote PA 2027" in entered.text
    assert nobody.get(f"/staff/signin/{token[1]}").status_code == 401  # used once


def test_an_emailed_link_is_scrubbed_once_sent(settings, engine, applied):
    from tasks.mail import deliver_email

    with transaction(engine) as session:
        staff_sign_in(
            session, STAFF, public_url=settings.public_url, now=utcnow(), send=True, actor="t"
        )
    deliver_email(engine, settings, now=utcnow)
    with transaction(engine, write=False) as session:
        sent = session.exec(
            select(OutboxMessage).where(OutboxMessage.subject_type == "review")
        ).one()
    assert sent.payload["to"] == STAFF and sent.status == "sent"
    assert (
        "/staff/signin/" not in sent.payload["text"]
        and "[sign-in link sent]" in sent.payload["text"]
    )


def test_staff_mark_a_milestone_done(settings, engine, applied):
    staff = signed_in(settings, engine, STAFF)
    page = staff.get(f"/staff/campaigns/{SLUG}")
    assert f'action="/staff/campaigns/{SLUG}/milestones/strategy"' in page.text
    forged = staff.post(
        f"/staff/campaigns/{SLUG}/milestones/strategy",
        data={"status": "met"},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    marked = staff.post(
        f"/staff/campaigns/{SLUG}/milestones/strategy",
        data={"status": "met", "note": "agreed with the board"},
        headers={"Origin": settings.public_url},
    )
    assert marked.status_code == 200 and "Strategy agreed: marked met." in marked.text
    assert f'action="/staff/campaigns/{SLUG}/milestones/strategy"' not in marked.text
    wrong = staff.post(f"/staff/campaigns/{SLUG}/milestones/strategy", data={"status": "done"})
    assert "a milestone is marked met or missed" in wrong.text
    with transaction(engine, write=False) as session:
        strategy = session.exec(select(Milestone).where(Milestone.key == "strategy")).one()
        actors = session.exec(
            select(AuditEvent.actor).where(AuditEvent.action == "milestone.met")
        ).all()
    assert strategy.status == "met"
    assert strategy.outcome == {"marked_by": STAFF, "note": "agreed with the board"}
    assert actors == [STAFF]


def test_staff_send_a_destinations_dead_letters_again(settings, engine, applied, tmp_path):
    ours, theirs = campaign_id(engine), other_campaign(engine, applied, tmp_path)
    with transaction(engine) as session:
        seed_engagement(session, ours, now=utcnow(), people=10, dead_every=5, prefix="ours")
        seed_engagement(session, theirs, now=utcnow(), people=10, dead_every=5, prefix="theirs")
    staff = signed_in(settings, engine, STAFF)
    page = staff.get(f"/staff/campaigns/{SLUG}")
    assert "400: email is not valid" in page.text and "Send the 2 again" in page.text
    retried = staff.post(
        f"/staff/campaigns/{SLUG}/leads/retry",
        data={"destination": "hubspot"},
        headers={"Origin": settings.public_url},
    )
    assert retried.status_code == 200
    assert "2 lead(s) queued again for hubspot" in retried.text

    with transaction(engine, write=False) as session:
        dead = session.exec(
            select(OutboxMessage.destination).where(
                OutboxMessage.channel == "lead", OutboxMessage.status == "dead"
            )
        ).all()
        audited = session.exec(select(AuditEvent).where(AuditEvent.action == "leads.retried")).one()
    # Only this campaign's hubspot letters went back in the queue.
    assert sorted(dead) == sorted(
        [f"{ours}:crm_export"] * 2 + [f"{theirs}:crm_export"] * 2 + [f"{theirs}:hubspot"] * 2
    )
    assert audited.actor == STAFF and audited.changes == {"destination": "hubspot", "queued": 2}


def test_the_follow_up_log_searches_filters_and_pages(settings, engine, applied):
    with transaction(engine) as session:
        seed_engagement(session, campaign_id(engine), now=utcnow(), people=120)
    staff = signed_in(settings, engine, STAFF)
    log = f"/staff/campaigns/{SLUG}/followups"

    first = staff.get(log)
    assert first.status_code == 200 and first.text.count('class="staff-entry"') == 50
    assert f'href="{log}?page=2"' in first.text and "Newer" not in first.text
    last = staff.get(log, params={"page": 3})
    assert last.text.count('class="staff-entry"') == 20 and "Older" not in last.text
    assert staff.get(log, params={"page": 4}).text.count('class="staff-entry"') == 0
    for bad in ({"page": 0}, {"page": 201}, {"person": "x" * 101}, {"page": "two"}):
        assert staff.get(log, params=bad).status_code == 400

    # By person: a part of the name, the email or the handle (with its @).
    by_name = staff.get(log, params={"person": "tester7"})
    names = re.findall(r"<strong>([^<]+)</strong>", by_name.text)
    assert sorted(names) == sorted(
        [
            f"{['Ana', 'Jamal', 'Priya', 'Luis', 'Mei'][n % 5]} Tester{n}"
            for n in (7, *range(70, 80))
        ]
    )
    assert "Thanks for asking, Priya! Here is how to help." in by_name.text
    assert "to person7@example.net" in by_name.text
    by_handle = staff.get(log, params={"person": "@person.fan42"})
    assert re.findall(r"<strong>([^<]+)</strong>", by_handle.text) == ["Priya Tester42"]
    assert "No follow-up matches" in staff.get(log, params={"person": "nobody"}).text
    assert "No follow-up matches" in staff.get(log, params={"person": "%"}).text

    # By rule and channel, with the rule named in words.
    by_rule = staff.get(log, params={"rule": "volunteer_interest_dm"})
    assert by_rule.text.count('class="staff-entry"') == 30 and "Direct message to" in by_rule.text
    by_channel = staff.get(log, params={"channel": "sms", "person": "ana"})
    entries = by_channel.text.count('class="staff-entry"')
    assert entries == len([n for n in range(120) if n % 4 == 3 and n % 5 == 0])
    assert "Text to" in by_channel.text and "Email to" not in by_channel.text
    paged = staff.get(log, params={"channel": "reply"})
    assert f'href="{log}?channel=reply&amp;page=2"' not in paged.text  # 30 fit on one page


def test_the_audit_log_pages_and_says_whether_its_chain_holds(settings, engine, applied):
    staff = signed_in(settings, engine, STAFF)
    audit = f"/staff/campaigns/{SLUG}/audit"
    first = staff.get(audit)
    assert first.status_code == 200 and "the log's chain holds" in first.text
    assert first.text.count('data-label="Entry"') == 50  # the roster's 50 + the campaign's
    assert f'href="{audit}?page=2"' in first.text
    second = staff.get(audit, params={"page": 2})
    assert "created campaign first-vote-pa-2027" in second.text
    assert staff.get(audit, params={"page": 201}).status_code == 400

    with transaction(engine) as session:
        entry = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).first()
        assert entry is not None
        entry.summary = "edited"
        session.add(entry)
    cached = staff.get(audit)
    assert "chain holds" in cached.text  # checked a moment ago: not walked again on each view
    again = staff.get(audit, params={"check": "true"})
    assert "the log's chain is broken at entry 1" in again.text


def test_no_rehearsal_beside_real_activity(settings, engine, applied):
    from benchmarks.pages import seed_pipeline

    with transaction(engine) as session:
        seed_pipeline(session, campaign_id(engine), now=utcnow(), per_creator=1)
    staff = signed_in(settings, engine, STAFF)
    page = staff.get(f"/staff/campaigns/{SLUG}")
    assert "Start the rehearsal" not in page.text
    assert "No rehearsal here: it has 50 brief(s) already" in page.text
    refused = staff.post(
        f"/staff/campaigns/{SLUG}/start",
        data={"action": "rehearsal", "weeks": "2"},
        headers={"Origin": settings.public_url},
    )
    assert "No rehearsal here: it has 50 brief(s) already." in refused.text
    assert not (settings.home / "runs").exists()  # nothing was started
    assert "50 of 50 creators sent their brief" in " ".join(page.text.split()).replace(
        '<span class="stat">', ""
    ).replace("</span>", "")


@pytest.mark.parametrize("action", ["nothing", "sprint"])
def test_starting_work_from_the_console(settings, engine, applied, action):
    staff = signed_in(settings, engine, STAFF)
    started = staff.post(
        f"/staff/campaigns/{SLUG}/start",
        data={"action": action},
        headers={"Origin": settings.public_url},
    )
    if action == "nothing":
        assert started.status_code == 400
        return
    assert "The sprint has started on its calendar." in started.text
    assert "Start the sprint" not in started.text
    with transaction(engine, write=False) as session:
        actors = session.exec(
            select(AuditEvent.actor).where(AuditEvent.action == "sprint.started")
        ).all()
    assert actors == [STAFF]


@pytest.mark.slow
def test_work_started_here_is_seen_from_every_web_process_with_how_it_ended(
    settings, engine, applied
):
    first, second = signed_in(settings, engine, STAFF), signed_in(settings, engine, STAFF)
    started = first.post(
        f"/staff/campaigns/{SLUG}/start",
        data={"action": "report"},
        headers={"Origin": settings.public_url},
        follow_redirects=False,
    )
    assert started.status_code == 303
    address = started.headers["location"]
    run_id = address.rsplit("/", 1)[1]
    deadline = time.monotonic() + 120
    while (run := ended(engine, run_id)) is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the command runs in a process of its own; it records its own end
    assert run is not None and run.exit_code == 0, run and run.output_tail

    # Another web process (nothing shared but the store) lists it and shows its output.
    shown = second.get(address)
    assert "Finished." in shown.text and "Make the report" in shown.text
    assert "report" in shown.text.lower() and run.output_tail.strip()
    assert str(escape(run.output_tail.strip().splitlines()[-1])) in shown.text
    listing = second.get(f"/staff/campaigns/{SLUG}").text
    assert f"/runs/{run_id}" in listing and ": finished</li>" in listing


@pytest.mark.slow
def test_a_run_whose_process_vanished_or_runs_elsewhere_says_so(settings, engine, applied):
    gone = subprocess.Popen(["true"])  # a process that has ended, as a killed one
    gone.wait()
    with transaction(engine) as session:
        for run_id, host, pid in (("vanished", HERE, gone.pid), ("away", "worker-7", 4242)):
            session.add(
                StaffRun(
                    id=run_id,
                    campaign_id=campaign_id(engine),
                    action="sync-leads/sync-leads",
                    title="Sync the leads",
                    started_by=STAFF,
                    started_at=utcnow(),
                    command=["rally", "leads", "sync"],
                    host=host,
                    pid=pid,
                    log_path=f"/nowhere/{run_id}.log",
                )
            )
    staff = signed_in(settings, engine, STAFF)
    vanished = staff.get(f"/staff/campaigns/{SLUG}/runs/vanished").text
    assert "It stopped without finishing" in vanished and "start it again" in vanished
    away = staff.get(f"/staff/campaigns/{SLUG}/runs/away").text
    assert "Running on worker-7" in away
    assert "It runs on worker-7: what it prints shows here when it ends." in away
    assert staff.get(f"/staff/campaigns/{SLUG}/runs/unknown").status_code == 404


def ended(engine, run_id: str) -> StaffRun | None:
    with transaction(engine, write=False) as session:
        run = session.get(StaffRun, run_id)
        return run if run is not None and run.exit_code is not None else None


def test_signed_out_staff_ask_for_a_new_link_that_opens_the_console(settings, engine, applied):
    browser = TestClient(create_app(settings))
    signed_out = browser.get(f"/staff/campaigns/{SLUG}")
    assert signed_out.status_code == 401
    assert "Email me a new sign-in link" in signed_out.text and "rally " not in signed_out.text
    back = re.search(r'name="next" value="([^"]+)"', signed_out.text)
    assert back is not None and back[1] == f"/staff/campaigns/{SLUG}"

    sent = browser.post("/review/new-link", data={"email": STAFF, "next": back[1]})
    assert sent.status_code == 200 and "staff console is on its way" in sent.text
    with transaction(engine, write=False) as session:
        (text,) = [
            m.payload["text"]
            for m in session.exec(select(OutboxMessage).where(OutboxMessage.channel == "email"))
            if m.payload["to"] == STAFF
        ]
    assert "sign in to Rally's staff console" in text
    link = re.findall(r"\S+/signin/\S+", text)[0].removeprefix(settings.public_url)
    button = browser.get(link)
    assert button.status_code == 200
    form = re.search(r'action="([^"]+)"', button.text)
    hidden = re.search(r'name="next" value="([^"]+)"', button.text)
    assert form is not None and hidden is not None
    opened = browser.post(form[1], data={"next": hidden[1]}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == f"/staff/campaigns/{SLUG}"
    assert "Pipeline" in browser.get(opened.headers["location"]).text
    used = browser.get(link)  # once only; the page offers a new one again, for the console
    assert used.status_code == 401 and "on a campaign's staff" not in used.text
    assert 'name="next" value="/staff' in used.text


def test_staff_list_creatives_by_state_and_record_a_post(
    settings, engine, applied, tmp_path, example
):
    from benchmarks.pages import seed_pipeline

    with transaction(engine) as session:
        seed_pipeline(session, campaign_id(engine), now=utcnow(), per_creator=1)
        for seeded in session.exec(select(Creative).limit(2)):  # approved, not posted yet
            seeded.status, seeded.posted_url = CreativeStatus.APPROVED, None
            session.add(seeded)
    staff = signed_in(settings, engine, STAFF)
    origin = {"Origin": settings.public_url}
    page = staff.get(f"/staff/campaigns/{SLUG}/creatives", params={"state": "approved"})
    assert page.status_code == 200
    approved = re.findall(r'id="creative-(\d+)"', page.text)
    assert approved and "Record the post" in page.text
    creative = int(approved[0])
    with transaction(engine, write=False) as session:
        handle = session.exec(
            select(Creator.handle)
            .join(RosterMember, col(RosterMember.creator_id) == col(Creator.id))
            .join(Creative, col(Creative.member_id) == col(RosterMember.id))
            .where(Creative.id == creative)
        ).one()
    address = f"/staff/campaigns/{SLUG}/creatives/{creative}/posted"

    # Someone else's video, or no video address at all: refused, named, nothing recorded.
    for url, said in (
        ("https://www.tiktok.com/@someone.else/video/7301234567890123456", "not @" + handle),
        ("not-a-url", "url: a web address"),
    ):
        refused = staff.post(address, data={"url": url}, headers=origin)
        assert said in refused.text and refused.url.path.endswith("/creatives"), url
    url = f"https://www.tiktok.com/@{handle}/video/7301234567890123456"
    done = staff.post(address, data={"url": url}, headers=origin)
    assert f"Creative {creative} recorded as posted." in done.text
    posted_page = staff.get(f"/staff/campaigns/{SLUG}/creatives", params={"state": "posted"})
    assert f'id="creative-{creative}"' in posted_page.text and url in posted_page.text
    with transaction(engine, write=False) as session:
        entry = session.exec(select(AuditEvent).where(AuditEvent.action == "creative.posted")).one()
    assert entry.actor == STAFF

    # Another campaign's creative is not theirs to record.
    other_campaign(engine, example, tmp_path)
    foreign = staff.post(
        f"/staff/campaigns/{OTHER}/creatives/{creative}/posted", data={"url": url}, headers=origin
    )
    assert foreign.status_code == 404
    counsel = signed_in(settings, engine, LEGAL)
    assert counsel.get(f"/staff/campaigns/{SLUG}/creatives").status_code == 404
