"""Campaign as code: the example loads, and every kind of mistake is named by file and field."""

from pathlib import Path

import pytest
import yaml

from config.campaign_file import CampaignFileError, load_campaign
from config.errors import RallyError
from config.policy import BUILTIN_POLICIES
from tasks.campaigns.apply import check_references

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "youth-vote" / "campaign.yaml"


def write(tmp_path: Path, change: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    """The example campaign with some fields replaced or removed, as `campaign.yaml`."""
    data = yaml.safe_load(EXAMPLE.read_text())
    for dotted, value in (change or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[leaf] = value
    for key in drop:
        del data[key]
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path)
    return str(caught.value).splitlines()


def test_the_example_campaign_is_valid_and_uses_the_defaults() -> None:
    spec = load_campaign(EXAMPLE)
    assert spec.slug == "first-vote-pa-2027"
    assert spec.political and not spec.paid
    assert spec.committee and "Keystone Youth Vote Fund" in spec.committee.paid_for_by
    assert spec.sprint.weeks == 12
    assert spec.brief.deliverables.length == "15-30s"
    assert {s.id for s in spec.segments} == {"gen_z", "suburban", "recruitment"}
    assert spec.signup.intro and spec.signup.intro.startswith("Your first vote counts.")
    assert (spec.sms_program, spec.signup.limits.per_client) == ("First Vote PA", 5)


def test_without_a_signup_section_the_page_uses_plain_defaults(tmp_path: Path) -> None:
    spec = load_campaign(write(tmp_path, drop=("signup",)))
    assert spec.signup.intro is None and spec.signup.privacy_url is None
    assert spec.sms_program == spec.name
    assert (spec.signup.limits.per_client, spec.signup.limits.per_address) == (5, 3)


def test_a_rate_out_of_range_names_the_file_and_the_field_path(tmp_path: Path) -> None:
    path = write(tmp_path, {"kpis.engagement_rate": 1.5})
    assert problems(path) == [f"{path}: kpis.engagement_rate: must be between 0 and 1 (got 1.5)"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "timezone": "America/NewYork",
            "sprint.start": "next monday",
            "segments.1.id": "Suburban Parents",
            "budget.total": -5,
        },
        drop=("slug",),
    )
    found = problems(path)
    assert f"{path}: slug: required" in found
    assert any(
        p.startswith(f"{path}: timezone: unknown time zone 'America/NewYork'") for p in found
    )
    assert f"{path}: sprint.start: must be a date (YYYY-MM-DD) (got 'next monday')" in found
    assert any(p.startswith(f"{path}: segments[1].id: must be lowercase letters") for p in found)
    assert f"{path}: budget.total: must be at least 0 (got -5)" in found
    assert len(found) == 5


def test_a_misspelt_field_is_unknown_and_the_right_name_is_suggested(tmp_path: Path) -> None:
    path = write(tmp_path, {"kpis.engagment_rate": 0.05})
    assert problems(path) == [
        f"{path}: kpis.engagment_rate: unknown field (did you mean 'engagement_rate'?)"
    ]


@pytest.mark.parametrize(
    ("change", "drop", "expected"),
    [
        ({}, ("committee",), "committee: required for a political campaign"),
        (
            {"committee.paid_for_by": "Paid for by Someone Else"},
            (),
            "committee.paid_for_by: must name the committee",
        ),
        (
            {"budget.split.tools": 0.2},
            (),
            "budget.split: shares must add up to 1 (they add up to 1.08)",
        ),
        ({"segments.2.id": "gen_z"}, (), "segments[2]: duplicate segment 'gen_z'"),
        (
            {"brief.posting_weeks": [4, 14]},
            (),
            "brief.posting_weeks[1]: week 14 is after the sprint's 12 weeks",
        ),
        ({"brief.hashtags": ["#ok", "no hash"]}, (), "brief.hashtags[1]: must start with #"),
        (
            {"tracking.landing_url": "firstvotepa.example.org"},
            (),
            "tracking.landing_url: must be a full http(s) URL",
        ),
        (
            {"signup.privacy_url": "firstvotepa.example.org/privacy"},
            (),
            "signup.privacy_url: must be a full http(s) URL",
        ),
        ({"signup.limits.per_client": 0}, (), "signup.limits.per_client: must be at least 1"),
        ({"signup.sms_program": "x" * 41}, (), "signup.sms_program: "),
        ({"signup.intro": ""}, (), "signup.intro: "),
    ],
)
def test_rules_across_fields_name_the_field_to_fix(
    tmp_path: Path, change: dict, drop: tuple[str, ...], expected: str
) -> None:
    path = write(tmp_path, change, drop)
    assert any(p.startswith(f"{path}: {expected}") for p in problems(path)), problems(path)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text("name: Test\nslug: [unclosed\nobjective: x\n")
    (message,) = problems(path)
    assert message.startswith(f"{path}: line 3, column 10: not valid YAML")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text("- just\n- a list\n")
    assert problems(path) == [f"{path}: must be a mapping of campaign fields"]


def test_referenced_files_must_exist_next_to_the_campaign_file(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text((BUILTIN_POLICIES / "default.yaml").read_text())
    path = write(
        tmp_path, {"policy": "policy.yaml", "followups": "rules/missing.yaml"}, drop=("roster",)
    )
    with pytest.raises(CampaignFileError) as caught:
        check_references(load_campaign(path), tmp_path, file=str(path))
    assert str(caught.value) == (
        f"{path}: followups: no such file: rules/missing.yaml (looked in {tmp_path / 'rules'})"
    )
    ok = write(tmp_path, {"policy": "policy.yaml"}, drop=("roster",))
    spec = load_campaign(ok)
    check_references(spec, tmp_path, file=str(ok))
    assert spec.policy == "policy.yaml", "kept as written, so another checkout is the same campaign"


def test_referenced_policy_and_rules_files_are_checked_when_applied(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("rules: []\n")
    path = write(tmp_path, {"policy": "policy.yaml"}, drop=("roster",))
    with pytest.raises(CampaignFileError) as caught:
        check_references(load_campaign(path), tmp_path, file=str(path))
    assert str(caught.value).startswith(f"{tmp_path / 'policy.yaml'}: name: required")
    (tmp_path / "rules.yaml").write_text(
        "name: Ours\nrules:\n  - {id: gen_z_dm, when: {types: [dm], segments: [nobody]},"
        " action: tag, tags: [x]}\n"
    )
    path = write(tmp_path, {"followups": "rules.yaml"}, drop=("roster",))
    with pytest.raises(CampaignFileError) as caught:
        check_references(load_campaign(path), tmp_path, file=str(path))
    assert str(caught.value) == (
        f"{tmp_path / 'rules.yaml'}: rules[0].when.segments: no such segment: nobody"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sprint.start": "2027-02-30"},
            "sprint.start: must be a date (YYYY-MM-DD) (got '2027-02-30')",
        ),
        ({"timezone": "America"}, "timezone: unknown time zone 'America'"),
        ({"budget.total": float("inf")}, "budget.total: must be a finite number"),
        ({"kpis.cpa": float("nan")}, "kpis.cpa: must be a finite number"),
        ({"name": "First\x00Vote"}, "name: contains a control character ('\\x00')"),
        (
            {"brief.hashtags": ["#ok", "#bad\x1b"]},
            "brief.hashtags[1]: contains a control character",
        ),
    ],
)
def test_values_no_store_could_keep_are_named_by_field(
    tmp_path: Path, change: dict, expected: str
) -> None:
    path = write(tmp_path, change)
    assert any(p.startswith(f"{path}: {expected}") for p in problems(path)), problems(path)


def test_a_file_in_another_encoding_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(EXAMPLE.read_text(), encoding="utf-16")
    with pytest.raises(RallyError, match="not UTF-8 text"):
        load_campaign(path)


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ({"name": "crm", "type": "salesforce"}, "destinations[0].type: must be one of 'csv'"),
        (
            {"name": "hook", "type": "webhook"},
            "destinations[0]: a webhook destination needs options: url",
        ),
        (
            {"name": "events", "type": "mobilize", "options": {"organization_id": 1}},
            "destinations[0]: a mobilize destination needs options: event_id, timeslot_ids",
        ),
    ],
)
def test_a_destination_rally_cannot_sync_to_is_named_when_applied(
    tmp_path: Path, destination: dict, expected: str
) -> None:
    path = write(tmp_path, {"destinations": [destination]}, drop=("roster",))
    with pytest.raises(CampaignFileError) as caught:
        check_references(load_campaign(path), tmp_path, file=str(path))
    assert str(caught.value).startswith(f"{path}: {expected}")


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (LAUGHS, "line 2, column 8: not valid YAML: an alias (*a) stands for another value"),
        ("a: &a [*a]\n", "line 1, column 8: not valid YAML: an alias (*a)"),
        ("name: " + "[" * 50_000 + "]" * 50_000 + "\n", "not valid YAML: nested too deeply"),
        ("budget: {total: " + "9" * 5000 + "}\n", "not valid YAML: a number of 5,000 digits"),
    ],
    ids=["billion-laughs", "recursive-alias", "deep", "long-number"],
)
def test_a_campaign_file_that_would_blow_up_is_refused_at_once_and_named(tmp_path, text, said):
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    (line,) = problems(path)
    assert line.startswith(str(path)) and said in line


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "campaign.yaml"
    path.write_text(
        "signup:\n  limits: {per_client: 10000}\n  intro: Hi\n  limits:\n    per_client: 5\n"
    )
    (line,) = problems(path)
    assert (
        "line 4, column 3: not valid YAML: 'limits' is given twice here (first on line 2)" in line
    )


def test_payment_terms_default_to_half_on_approval_and_half_a_week_after_posting() -> None:
    splits = load_campaign(EXAMPLE).payments.splits
    assert [(s.on, s.share, s.live_days) for s in splits] == [
        ("approved", 0.5, 0),
        ("posted", 0.5, 7),
    ]


@pytest.mark.parametrize(
    ("payments", "said"),
    [
        ({"splits": [{"on": "approved", "share": 0.5}]}, "the shares add up to 0.5, not 1"),
        (
            {"splits": [{"on": "approved", "share": 0.5}, {"on": "approved", "share": 0.5}]},
            "one split per `on`",
        ),
        ({"splits": [{"on": "approved", "share": 1, "live_days": 3}]}, "live_days: only a split"),
        ({"splits": [{"on": "signed", "share": 1}]}, "payments.splits[0].on: must be one of"),
        ({"signup_bonus": {"per_signup": 2}}, "payments.signup_bonus.cap"),
    ],
)
def test_payment_terms_that_cannot_be_paid_are_named(tmp_path: Path, payments, said) -> None:
    found = problems(write(tmp_path, {"payments": payments}))
    assert any(said in line and "payments" in line for line in found), found


@pytest.mark.parametrize("text", ["name:\tFirst Vote\n", "budget: {total:\t5}\n", "slug: a\t\n"])
def test_a_tab_is_refused_as_yaml_refuses_it_whatever_else_the_file_holds(tmp_path, text):
    """Files are read with libyaml unless they could hold an alias; a tab, which libyaml takes
    in places PyYAML refuses, gets the same answer either way."""
    plain, starred = tmp_path / "plain.yaml", tmp_path / "starred.yaml"
    plain.write_text(text)
    starred.write_text(text + "# a note with a * in it\n")
    (said,) = problems(plain)
    (again,) = problems(starred)
    assert "not valid YAML" in said and "'\\t'" in said
    assert said.removeprefix(str(plain)) == again.removeprefix(str(starred))
