"""Tiered review as approvers and creators live it: routing, decisions and refusals, deadlines on
a clock the test controls, change requests and new versions, and the chain of custody."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

import config.policy as policy_module
from config.policy import load_policy
from store.db import transaction
from store.models import OutboxMessage, ReviewTask
from tasks.review.creatives import Submission, submit
from tasks.review.deadlines import sweep_reviews
from tasks.review.decisions import decide
from tasks.review.routing import ReviewRefused
from tests.conftest import SLUG
from tests.helpers import generate

T0 = datetime(2027, 2, 15, 14, 0, tzinfo=UTC)
DANA = "dana.okafor@keystoneyouthvote.example.org"  # internal
LI = "li.chen@keystoneyouthvote.example.org"  # internal
COUNSEL = "counsel@keystoneyouthvote.example.org"  # legal
OUTSIDE = "outside.counsel@lawfirm.example.com"  # legal's backup
GOOD = (
    "#ad Paid for by Keystone Youth Vote Fund. Register in two minutes, code MAYAVOTESPA."
    " Not authorized by any candidate or candidate's committee."
)


def send(engine, caption=GOOD, *, creative=None, by="creator:@maya.votes.pa", at=T0, **extra):
    with transaction(engine) as session:
        return submit(
            session,
            slug=SLUG,
            handle="maya.votes.pa",
            submission=Submission(caption, duration_seconds=extra.pop("duration", 20), **extra),
            submitted_by=by,
            now=at,
            creative_id=creative,
        )


def open_tasks(engine) -> list[ReviewTask]:
    with transaction(engine, write=False) as session:
        return list(
            session.exec(
                select(ReviewTask).where(ReviewTask.status == "open").order_by(col(ReviewTask.id))
            )
        )


def rule(engine, task_id, decision, who, *, at=T0, note="", version=None, checked=True):
    with transaction(engine) as session:
        return decide(
            session,
            task_id=task_id,
            decision=decision,
            approver=who,
            now=at,
            note=note,
            confirmed=["all"] if checked else [],
            version=version,
        )


def emails_to(engine, address: str) -> list[str]:
    with transaction(engine, write=False) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.channel == "email"))
        return [m.payload["subject"] for m in rows if m.payload["to"] == address]


def test_a_blocking_finding_goes_straight_back_to_the_creator(engine, applied):
    result = send(engine, "Register today! #FirstVotePA")
    assert result.blocked and result.tiers == []
    assert open_tasks(engine) == []  # no reviewer's time taken
    failed = {f.rule_id for f in result.findings if not f.passed}
    assert {"sponsorship_disclosure", "paid_for_by"} <= failed
    (subject,) = emails_to(engine, "maya.thompson@example.org")
    assert "needs changes" in subject


def test_internal_then_legal_approve_and_the_creative_is_cleared(engine, applied, rally):
    result = send(engine)
    assert result.tiers == ["internal", "legal"] and not result.blocked
    (internal,) = open_tasks(engine)
    assert internal.due_at == T0 + timedelta(hours=24)
    assert emails_to(engine, DANA) and emails_to(engine, LI)  # the whole group is told
    step = rule(engine, internal.id, "approve", DANA)
    assert step.next_tier == "legal"
    (legal,) = open_tasks(engine)
    assert legal.tier == "legal" and emails_to(engine, COUNSEL)
    done = rule(engine, legal.id, "approve", COUNSEL)
    assert done.next_tier is None and done.creative.status == "approved"

    posted = rally(
        "creatives", "posted", result.creative_id, "https://www.tiktok.com/@maya.votes.pa/video/1"
    )
    assert posted.code == 0
    chain = json.loads(rally("creatives", "history", result.creative_id, "--json").out)
    summaries = [e["summary"] for e in chain["audit"]]
    assert "submitted creative" in summaries[0] and "approved by " + DANA in summaries[1]
    assert (
        "approved by " + COUNSEL in summaries[2]
        and "posted at https://www.tiktok.com" in summaries[3]
    )
    assert chain["versions"][0]["brief_version"] is None  # no brief was generated in this test


def test_the_four_refusals(engine, applied):
    send(engine, by=DANA)  # staff submitted on the creator's behalf
    (task,) = open_tasks(engine)
    with pytest.raises(ReviewRefused, match="is not in the internal group"):
        rule(engine, task.id, "approve", COUNSEL)
    with pytest.raises(
        ReviewRefused, match="made or submitted this creative: someone else must review it"
    ):
        rule(engine, task.id, "approve", DANA)
    with pytest.raises(ReviewRefused, match="version 2 is not the one in review"):
        rule(engine, task.id, "approve", LI, version=2)
    first = rule(engine, task.id, "approve", LI)
    again = rule(engine, task.id, "approve", LI)  # the same decision sent twice
    assert first.applied and not again.applied
    assert len(open_tasks(engine)) == 1  # legal opened once, not twice
    with pytest.raises(ReviewRefused, match="already decided: approved by " + LI):
        rule(engine, task.id, "reject", LI, note="changed my mind")


def test_approval_needs_the_checklist_or_a_reason_and_changes_need_notes(engine, applied):
    send(engine)
    (task,) = open_tasks(engine)
    with pytest.raises(ReviewRefused, match="confirm the checklist"):
        rule(engine, task.id, "approve", DANA, checked=False)
    with pytest.raises(ReviewRefused, match="say what must change"):
        rule(engine, task.id, "request_changes", DANA)
    assert rule(engine, task.id, "approve", DANA, checked=False, note="no KPI yet, fine").applied


def test_a_change_request_then_a_new_version_starts_again_at_the_first_tier(engine, applied):
    first = send(engine)
    (internal,) = open_tasks(engine)
    rule(engine, internal.id, "approve", DANA)
    (legal,) = open_tasks(engine)
    back = rule(engine, legal.id, "request_changes", COUNSEL, note="Say 'by May 3' precisely")
    assert back.creative.status == "changes_requested" and open_tasks(engine) == []
    assert any("needs changes" in s for s in emails_to(engine, "maya.thompson@example.org"))

    second = send(
        engine, GOOD + " by May 3", creative=first.creative_id, at=T0 + timedelta(hours=2)
    )
    assert (second.creative_id, second.version) == (first.creative_id, 2)
    (fresh,) = open_tasks(engine)
    assert fresh.tier == "internal"
    with pytest.raises(ReviewRefused, match="outdated"):  # a decision on version 1 is refused
        rule(engine, legal.id, "approve", COUNSEL)


def test_deadlines_remind_then_escalate_and_never_approve(engine, applied):
    send(engine)
    (internal,) = open_tasks(engine)
    rule(engine, internal.id, "approve", DANA)
    (legal,) = open_tasks(engine)

    def tick(at):
        return sweep_reviews(engine, now=at)  # what `rally serve` and the sweep flow run

    assert tick(T0 + timedelta(hours=19)) == {"reminded": 0, "escalated": 0, "closed": 0}
    assert tick(T0 + timedelta(hours=20, minutes=1)) == {"reminded": 1, "escalated": 0, "closed": 0}
    assert tick(T0 + timedelta(hours=24, minutes=1)) == {"reminded": 0, "escalated": 1, "closed": 0}
    assert tick(T0 + timedelta(days=30)) == {"reminded": 0, "escalated": 0, "closed": 0}
    (still,) = open_tasks(engine)
    assert still.id == legal.id and still.escalated_to == "legal_backup"  # blocked, not approved
    assert any("escalated" in s for s in emails_to(engine, OUTSIDE))
    done = rule(engine, legal.id, "approve", OUTSIDE, at=T0 + timedelta(days=30))
    assert done.creative.status == "approved"


def test_posting_before_approval_is_recorded_and_flagged(engine, applied, rally):
    result = send(engine)
    run = rally(
        "creatives", "posted", result.creative_id, "https://www.tiktok.com/@maya.votes.pa/video/9"
    )
    assert run.code == 1 and "BEFORE APPROVAL" in run.out
    chain = json.loads(rally("creatives", "history", result.creative_id, "--json").out)
    assert chain["status"] == "in_review" and chain["posted_url"].endswith("/9")
    assert "BEFORE APPROVAL" in chain["audit"][-1]["summary"]


def test_the_cli_queue_show_and_decide(engine, applied, rally, monkeypatch):
    submitted = rally(
        "creatives",
        "submit",
        SLUG,
        "maya.votes.pa",
        "--caption",
        GOOD,
        "--duration",
        "20",
        "--json",
    )
    assert submitted.code == 0, submitted.err
    assert json.loads(submitted.out)["tiers"] == ["internal", "legal"]
    queue = json.loads(rally("review", "queue", "--as", DANA, "--json").out)
    assert [t["tier"] for t in queue] == ["internal"]
    assert json.loads(rally("review", "queue", "--as", COUNSEL, "--json").out) == []
    task = queue[0]["task"]
    shown = json.loads(rally("review", "show", task, "--json").out)
    assert {f["rule"] for f in shown["findings"]} >= {"sponsorship_disclosure", "paid_for_by"}
    assert all(f["explanation"] for f in shown["findings"])
    untokened = rally("review", "approve", task, "--as", DANA, "--confirm", "all")
    assert untokened.code == 1 and "API token in RALLY_REVIEW_TOKEN" in untokened.err
    counsel = rally("review", "token", COUNSEL).out.strip().splitlines()[-1]
    monkeypatch.setenv("RALLY_REVIEW_TOKEN", counsel)
    posing = rally("review", "approve", task, "--as", DANA, "--confirm", "all")
    assert posing.code == 1 and f"your API token is {COUNSEL}'s" in posing.err
    refused = rally("review", "approve", task, "--as", COUNSEL)
    assert refused.code == 1 and "is not in the internal group" in refused.err
    monkeypatch.setenv("RALLY_REVIEW_TOKEN", rally("review", "token", DANA).out.splitlines()[-1])
    unconfirmed = rally("review", "approve", task, "--as", DANA)
    assert unconfirmed.code == 1 and "confirm the checklist" in unconfirmed.err
    ok = rally("review", "approve", task, "--as", DANA, "--confirm", "all")
    assert ok.code == 0 and "the legal review is open now" in ok.out
    (legal,) = json.loads(rally("review", "queue", "--as", COUNSEL, "--json").out)
    monkeypatch.setenv("RALLY_REVIEW_TOKEN", counsel)
    sent_back = rally(
        "review", "request-changes", legal["task"], "--as", COUNSEL, "--note", "Cut 0:05", "--json"
    )
    assert sent_back.code == 0, sent_back.err
    assert json.loads(sent_back.out) == {
        "task": legal["task"],
        "decision": "request_changes",
        "applied": True,
        "status": "changes_requested",
        "next_tier": None,
        "creative": shown["creative"],
        "creative_status": "changes_requested",
    }
    stranger = rally("review", "token", "someone@example.org")
    assert stranger.code == 1 and "not an approver or staff of any campaign" in stranger.err


def test_no_one_reviews_their_own_work_or_two_tiers_of_one_version(engine, example, rally):
    campaign = example / "campaign.yaml"
    text = campaign.read_text()
    text = text.replace("internal: [dana", "internal: [maya.thompson@example.org, dana")
    campaign.write_text(text.replace("legal: [counsel", f"legal: [{DANA}, counsel"))
    assert rally("campaign", "apply", campaign).code == 0
    send(engine)  # submitted on her brief page, so as creator:@maya.votes.pa
    (task,) = open_tasks(engine)
    with pytest.raises(ReviewRefused, match="made or submitted this creative"):
        rule(engine, task.id, "approve", "maya.thompson@example.org")
    rule(engine, task.id, "approve", DANA)
    (legal,) = open_tasks(engine)
    with pytest.raises(ReviewRefused, match="already decided the internal review"):
        rule(engine, legal.id, "approve", DANA)
    assert rule(engine, legal.id, "approve", COUNSEL).creative.status == "approved"


def test_a_campaign_may_bring_its_own_policy(engine, example, rally):
    own = example / "strict-policy.yaml"
    text = (Path(policy_module.__file__).parent / "policies" / "default.yaml").read_text()
    own.write_text(
        text.replace('phrases: ["vote by text",', 'phrases: ["register today", "vote by text",')
    )
    campaign = example / "campaign.yaml"
    campaign.write_text(
        campaign.read_text().replace("policy: default", "policy: strict-policy.yaml")
    )
    assert rally("campaign", "apply", campaign).code == 0
    result = send(engine, GOOD + " Register today!")
    assert result.blocked
    assert [f.message for f in result.findings if not f.passed] == [
        'prohibited claim: "register today"'
    ]
    assert result.policy_version != load_policy("default", base=None).version


def test_a_post_must_be_the_creators_own_video_and_is_replaced_only_with_force(
    engine, applied, rally
):
    result = send(engine)
    for url, said in (
        ("not-a-url", "url: a web address of the posted video"),
        ("https://vm.tiktok.com/ZMabc/", "a short link hides whose video it is"),
        ("https://www.tiktok.com/@someone.else/video/7", "that video is @someone.else's"),
    ):
        refused = rally("creatives", "posted", result.creative_id, url)
        assert refused.code == 1 and said in refused.err, url
    first = "https://www.tiktok.com/@maya.votes.pa/video/7311"
    early = rally("creatives", "posted", result.creative_id, first, "--json")
    assert early.code == 1  # before approval: recorded and flagged
    assert json.loads(early.out) == {
        "creative": result.creative_id,
        "url": first,
        "approved": False,
    }
    again = rally("creatives", "posted", result.creative_id, first.replace("7311", "7312"))
    assert again.code == 1 and "give --force to replace it" in again.err
    chain = json.loads(rally("creatives", "history", result.creative_id, "--json").out)
    assert chain["posted_url"] == first  # the valid address was kept
    forced = rally(
        "creatives", "posted", result.creative_id, first.replace("7311", "7312"), "--force"
    )
    assert "BEFORE APPROVAL" in forced.out
    chain = json.loads(rally("creatives", "history", result.creative_id, "--json").out)
    assert chain["posted_url"].endswith("/7312")


def test_a_version_replaced_in_review_says_so_and_the_history_shows_captions_and_notes(
    engine, applied, rally
):
    first = send(engine)
    (internal,) = open_tasks(engine)
    rule(engine, internal.id, "request_changes", DANA, note="Say the deadline out loud")
    second = send(engine, GOOD + " Register by May 3.", creative=first.creative_id)
    third = send(engine, GOOD + " Register by May 3!", creative=first.creative_id)
    assert second.version == 2 and third.version == 3
    chain = json.loads(rally("creatives", "history", first.creative_id, "--json").out)
    assert [v["status"] for v in chain["versions"]] == [
        "changes_requested",
        "superseded",
        "in_review",
    ]

    shown = rally("creatives", "history", first.creative_id).out
    assert f"caption: {GOOD} Register by May 3!" in shown
    assert f"internal: changes_requested by {DANA}: Say the deadline out loud" in shown


def test_review_emails_name_the_campaign_creator_and_creative_and_give_local_deadlines(
    engine, settings, applied
):
    generate(settings, engine, SLUG, handles=["maya.votes.pa"])  # her brief, as she has one
    site = "https://rally.example.org"
    with transaction(engine) as session:
        first = submit(
            session,
            slug=SLUG,
            handle="maya.votes.pa",
            submission=Submission(GOOD, duration_seconds=20),
            submitted_by="creator:@maya.votes.pa",
            now=T0,
            public_url=site,
        )
    (asked,) = payloads_to(engine, DANA)
    assert asked["subject"] == (
        'First Vote PA 2027: Internal review of @maya.votes.pa\'s "Video by @maya.votes.pa" '
        f"(creative {first.creative_id}, version 1)"
    )
    assert "due Tue Feb 16, 09:00 EST" in asked["text"]  # 24 h after 14:00 UTC, in Philadelphia

    (internal,) = open_tasks(engine)
    with transaction(engine) as session:
        decide(session, task_id=internal.id or 0, decision="request_changes", approver=DANA,
               now=T0, note="Say the deadline", public_url=site)  # fmt: skip
    (told,) = [
        p for p in payloads_to(engine, "maya.thompson@example.org") if "needs" in p["subject"]
    ]
    assert told["subject"].startswith('First Vote PA 2027: your draft "Video by @maya.votes.pa"')
    assert f"{site}/briefs/" in told["text"] and "Say the deadline" in told["text"]


def payloads_to(engine, address: str) -> list[dict]:
    with transaction(engine, write=False) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.channel == "email"))
        return [m.payload for m in rows if m.payload["to"] == address]
