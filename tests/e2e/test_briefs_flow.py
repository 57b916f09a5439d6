"""`rally briefs generate` as staff run it: through the Prefect flow, with a summary that says
what happened, mail that goes out once, and failures named per creator."""

import json

import pytest

from tests.conftest import SLUG

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),  # the flow, not the store
]


def test_generate_send_again_and_fail_by_name(rally, applied, settings):
    first = rally("briefs", "generate", SLUG, "--send")
    assert first.code == 0, first.err
    assert "50 new or updated, 0 unchanged, 0 failed, 50 queued to send." in first.out
    assert "Email: 50 sent, 0 to retry, 0 failed." in first.out
    assert f"mail is in {settings.mailbox}" in first.out
    assert len(list(settings.mailbox.glob("*.eml"))) == 50

    again = rally("briefs", "generate", SLUG, "--send", "--json")
    assert again.code == 0, again.err
    summary = json.loads(again.out)
    assert (summary["rendered"], summary["unchanged"], summary["queued"]) == (0, 50, 0)
    assert summary["delivery"]["sent"] == 0
    assert len(list(settings.mailbox.glob("*.eml"))) == 50

    status = json.loads(rally("briefs", "status", SLUG, "--json").out)
    assert {row["email_status"] for row in status} == {"sent"}
    assert all(row["version"] == 1 and row["acknowledged_at"] is None for row in status)

    unknown = rally("briefs", "generate", SLUG, "--creator", "nobody.here")
    assert (
        unknown.code == 1 and "not on the roster of first-vote-pa-2027: @nobody.here" in unknown.err
    )

    # Without tier rates, only creators with a rate of their own in the roster can be briefed.
    roster = json.loads(rally("creators", "list", SLUG, "--json").out)
    priced = {r["handle"] for r in roster if r["rate_from"] == "roster"}
    unpriced = sorted({r["handle"] for r in roster} - priced)
    assert 0 < len(priced) < 50
    campaign = applied / "campaign.yaml"
    text = campaign.read_text()
    campaign.write_text(text[: text.index("tiers:")] + text[text.index("brief:") :])
    assert rally("campaign", "apply", campaign).code == 0
    failed = rally("briefs", "generate", SLUG)
    assert failed.code == 1
    counts = f"{len(priced)} new or updated, 0 unchanged, {len(unpriced)} failed"
    assert counts in failed.out
    named = "creator.compensation is missing: give the creator a rate in the roster"
    assert f"{named} or a tier with a rate: {', '.join('@' + h for h in unpriced)}" in failed.out
    assert not any(f"@{handle}" in failed.out for handle in priced)
    assert f"{len(unpriced)} brief(s) not generated" in failed.err


def test_the_review_deadlines_flow_escalates_what_is_overdue(rally, applied, engine):
    from datetime import timedelta

    from flows.delivery import deliver
    from flows.review import review_deadlines
    from store.db import transaction
    from store.types import utcnow
    from tasks.review.creatives import Submission, submit

    caption = (
        "#ad Paid for by Keystone Youth Vote Fund. Register now, code MAYAVOTESPA."
        " Not authorized by any candidate or candidate's committee."
    )
    with transaction(engine) as session:  # submitted two days ago: the 24 h deadline has passed
        submit(
            session,
            slug=SLUG,
            handle="maya.votes.pa",
            submission=Submission(caption, duration_seconds=20),
            submitted_by="creator:@maya.votes.pa",
            now=utcnow() - timedelta(days=2),
        )
    assert review_deadlines() == {"reminded": 1, "escalated": 1, "closed": 0}
    assert deliver()["email"]["sent"] >= 3  # the group's reminder and escalation emails
    queue = json.loads(rally("review", "queue", "--overdue", "--json").out)
    assert [(t["tier"], t["escalated_to"]) for t in queue] == [("internal", "internal_backup")]
