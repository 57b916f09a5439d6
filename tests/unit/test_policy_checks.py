"""Every rule of the default policy, with a caption that passes and one that fails, and the
routing of each kind of creative to the human tiers."""

from dataclasses import replace

import pytest

from config.campaign_file import CampaignFileError
from config.policy import load_policy, parse_policy
from tasks.review.checks import DraftFacts, evaluate
from tasks.review.routing import in_sample, route

POLICY = load_policy("default", base=None)
NOT_AUTHORIZED = "Not authorized by any candidate or candidate's committee."
GOOD = (
    "#ad Paid for by Keystone Youth Vote Fund. Registering takes two minutes: "
    f"link in bio, code MAYAVOTES #FirstVotePA #RegisterToVote {NOT_AUTHORIZED}"
)
BASE = DraftFacts(
    caption=GOOD,
    script="",
    duration_seconds=22,
    paid=False,
    ai_generated=False,
    sponsored=True,
    political=True,
    platform="tiktok",
    committee_name="Keystone Youth Vote Fund",
    disclaimer="Paid for by Keystone Youth Vote Fund (keystoneyouthvote.example.org). "
    + NOT_AUTHORIZED,
    tracking_markers=("k6ffnoipnb", "MAYAVOTES", "utm_content=maya.votes.pa"),
    deliverable_length="15-30s",
)


def outcome(facts: DraftFacts, rule_id: str) -> tuple[bool, str] | None:
    found = {f.rule_id: f for f in evaluate(POLICY, facts)}
    f = found.get(rule_id)
    return None if f is None else (f.passed, f.message)


def test_a_good_draft_passes_every_rule_that_applies():
    findings = evaluate(POLICY, BASE)
    assert [f.rule_id for f in findings if not f.passed] == []
    assert {f.rule_id for f in findings} == {
        "sponsorship_disclosure",
        "paid_for_by",
        "prohibited_claims",
        "tracking_link",
        "caption_limits",
        "duration",
    }  # not paid, not AI-made: the platform ban and the AI label do not apply


@pytest.mark.parametrize(
    ("rule", "change", "says"),
    [
        ("sponsorship_disclosure", {"caption": GOOD.replace("#ad ", "")}, "no sponsorship"),
        (
            "sponsorship_disclosure",
            {"caption": "#vote #pa #youth #firstvote " + GOOD},
            "buried (4 hashtags before it)",
        ),
        ("sponsorship_disclosure", {"caption": "#adventure time " + GOOD[4:]}, "no sponsorship"),
        ("paid_for_by", {"caption": GOOD.replace("Keystone Youth Vote Fund", "KYVF")}, "must say"),
        ("paid_for_by", {"caption": GOOD.replace("Fund.", "Fundraisers LLC.")}, "must say"),
        (
            "paid_for_by",
            {"caption": GOOD.replace(NOT_AUTHORIZED, "")},
            f'disclaimer is incomplete: add "{NOT_AUTHORIZED}"',
        ),
        ("paid_for_by", {"caption": GOOD.replace("any candidate", "a candidate")}, "incomplete"),
        (
            "synthetic_media_label",
            {"ai_generated": True, "caption": GOOD + " #madewithaiart"},
            "label",
        ),
        ("prohibited_claims", {"caption": GOOD + " vote via text message"}, "vote via text"),
        ("platform_political_ban", {"paid": True}, "does not allow paid political"),
        ("prohibited_claims", {"caption": GOOD + " You can vote by text!"}, '"vote by text"'),
        ("prohibited_claims", {"script": "just vote on twitter this year"}, "vote on twitter"),
        ("synthetic_media_label", {"ai_generated": True}, "needs a label"),
        ("tracking_link", {"caption": GOOD.replace("code MAYAVOTES", "")}, "your own link"),
        ("caption_limits", {"caption": GOOD + " " + "#x " * 9}, "use at most 8"),
        ("caption_limits", {"caption": GOOD + "x" * 2200}, "the limit is 2200"),
        ("duration", {"duration_seconds": 45}, "outside the brief's 15-30s"),
        ("duration", {"duration_seconds": None}, "give the video's duration"),
    ],
)
def test_each_rule_fails_a_draft_that_breaks_it(rule, change, says):
    passed, message = outcome(replace(BASE, **change), rule) or (True, "rule did not apply")
    assert not passed and says in message, message


@pytest.mark.parametrize(
    ("rule", "change"),
    [
        ("synthetic_media_label", {"ai_generated": True, "caption": GOOD + " #AIgenerated"}),
        ("tracking_link", {"caption": GOOD.replace("code MAYAVOTES", ""), "script": "k6ffnoipnb"}),
        (
            "sponsorship_disclosure",
            {"caption": "#vote Paid partnership with the campaign " + GOOD[4:]},
        ),
        ("paid_for_by", {"caption": GOOD.replace("candidate's", "candidate\u2019s")}),
        ("paid_for_by", {"caption": GOOD.replace("Not authorized", "not  authorized")}),
    ],
)
def test_each_rule_passes_a_draft_that_keeps_it(rule, change):
    result = outcome(replace(BASE, **change), rule)
    assert result is not None and result[0], result


def test_rules_apply_only_where_their_conditions_hold():
    organic_brand = replace(BASE, political=False, sponsored=True, committee_name=None)
    assert outcome(organic_brand, "paid_for_by") is None
    unpaid_creator = replace(BASE, sponsored=False)
    assert outcome(unpaid_creator, "sponsorship_disclosure") is None
    on_youtube = replace(BASE, paid=True, platform="youtube")
    assert outcome(on_youtube, "platform_political_ban") is None


@pytest.mark.parametrize(
    ("change", "tiers"),
    [
        ({"political": False, "committee_name": None}, ["internal"]),
        ({}, ["internal", "legal"]),  # political
        ({"political": False, "paid": True}, ["internal", "legal"]),
        (
            {"political": False, "caption": GOOD.replace("code MAYAVOTES", "")},
            ["internal", "legal"],
        ),
        (
            {"political": False, "ai_generated": True, "caption": GOOD + " #AIgenerated"},
            ["internal", "compliance"],
        ),
        (
            {"ai_generated": True, "caption": GOOD + " #AIgenerated"},
            ["internal", "legal", "compliance"],
        ),
    ],
)
def test_routing_sends_each_kind_of_creative_to_its_tiers(change, tiers):
    facts = replace(BASE, **change)
    key = "not-sampled"
    assert not in_sample(POLICY, key, 0.1)
    assert [t.id for t in route(POLICY, facts, evaluate(POLICY, facts), key)] == tiers


def test_the_audit_sample_is_about_one_in_ten_and_reproducible():
    plain = replace(BASE, political=False, committee_name=None)
    sampled = [
        k for k in range(2000) if "compliance" in [t.id for t in route(POLICY, plain, [], f"c:{k}")]
    ]
    assert 150 <= len(sampled) <= 250
    again = [
        k for k in range(2000) if "compliance" in [t.id for t in route(POLICY, plain, [], f"c:{k}")]
    ]
    assert sampled == again


def test_a_policy_file_with_mistakes_names_each_one():
    with pytest.raises(CampaignFileError) as caught:
        parse_policy(
            {
                "name": "x",
                "rules": [
                    {"id": "a", "description": "d", "severity": "fatal", "check": "disclosure"},
                    {"id": "a", "description": "d", "severity": "block", "check": "telepathy"},
                ],
                "tiers": [],
            },
            file="policy.yaml",
        )
    text = str(caught.value)
    assert "policy.yaml: rules[0].severity: must be one of 'block' or 'warn'" in text
    assert "rules[1].check: must be one of" in text and "tiers: must have at least 1" in text


def test_a_policy_with_a_repeated_id_or_a_broken_pattern_is_refused_by_name():
    rule = {"id": "a", "description": "d", "severity": "block", "check": "prohibited_claims"}
    tier = {"id": "internal", "name": "Internal", "group": "internal", "when": ["always"]}
    with pytest.raises(CampaignFileError) as caught:
        parse_policy(
            {
                "name": "x",
                "rules": [rule, {**rule, "params": {"patterns": ["(unclosed"]}}],
                "tiers": [tier, tier],
            },
            file="policy.yaml",
        )
    text = str(caught.value)
    assert "policy.yaml: rules[1].id: duplicate id 'a'" in text
    assert "policy.yaml: tiers[1].id: duplicate id 'internal'" in text
    assert "rules[1].params.patterns[0]: not a valid pattern" in text


def test_a_claim_a_phrase_and_a_pattern_both_find_is_reported_once():
    passed, message = outcome(
        replace(BASE, caption=GOOD + " You can vote by text!"), "prohibited_claims"
    ) or (True, "")
    assert not passed and message.count("vote by text") == 1, message
