"""Roster CSV parsing: bad rows are named by row and field; every good row survives."""

from pathlib import Path

import pytest

from config.campaign import CampaignSpec
from config.campaign_file import load_campaign
from config.errors import RallyError
from tasks.campaigns.roster import parse_roster, read_roster
from tasks.campaigns.tracking import tracking_code, tracking_url

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "youth-vote"


@pytest.fixture(scope="module")
def spec() -> CampaignSpec:
    return load_campaign(EXAMPLE / "campaign.yaml")


def row(**fields: str) -> dict[str, str]:
    base = {
        "handle": "maya.votes",
        "platform": "tiktok",
        "name": "Maya",
        "email": "maya@example.org",
        "followers": "12000",
        "segment": "gen_z",
        "tier": "micro",
        "rate": "",
    }
    return {**base, **fields}


def test_the_example_roster_reads_clean(spec: CampaignSpec) -> None:
    rows, problems = read_roster(EXAMPLE / "roster.csv", spec)
    assert problems == []
    assert len(rows) == 50
    assert all(10_000 <= (r.followers or 0) <= 500_000 for r in rows)
    assert all(r.email.endswith("@example.org") for r in rows)
    assert rows[0].attributes.keys() == {"city", "zip"}


def test_values_are_read_the_way_people_write_them(spec: CampaignSpec) -> None:
    (parsed,), problems = parse_roster(
        [
            row(
                handle="@Maya.Votes",
                platform="TikTok",
                email="Maya@Example.org",
                followers="12.3K",
                rate="$1,250.50",
            )
        ],
        spec,
    )
    assert problems == []
    assert (parsed.handle, parsed.platform, parsed.email) == (
        "maya.votes",
        "tiktok",
        "maya@example.org",
    )
    assert parsed.followers == 12_300
    assert parsed.rate_cents == 125_050


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"handle": ""}, "handle", "required"),
        ({"handle": "has space"}, "handle", "must be 2-30 letters"),
        ({"platform": "myspace"}, "platform", "must be one of tiktok"),
        ({"email": "maya@"}, "email", "not an email address Rally can send to (got 'maya@')"),
        ({"email": "maya,jo@example.org"}, "email", "not an email address Rally can send to"),
        ({"email": "maya..t@example.org"}, "email", "not an email address Rally can send to"),
        ({"email": ""}, "email", "required"),
        ({"followers": "lots"}, "followers", "must be a whole number"),
        ({"followers": "-5"}, "followers", "must be a whole number"),
        ({"followers": "3000000000"}, "followers", "must be a whole number from 0 to 2 billion"),
        ({"followers": "1e30"}, "followers", "must be a whole number"),
        ({"followers": "inf"}, "followers", "must be a whole number"),
        ({"rate": "25,000,000"}, "rate", "must be an amount up to 20 million"),
        ({"rate": "NaN"}, "rate", "must be an amount"),
        ({"name": "Maya\x00"}, "name", "contains a control character ('\\x00')"),
        (
            {"segment": "boomers"},
            "segment",
            "must be one of gen_z, recruitment, suburban (got 'boomers')",
        ),
        ({"tier": "mega"}, "tier", "must be one of micro, mid, macro (got 'mega')"),
        ({"rate": "free"}, "rate", "must be an amount"),
        ({"source_code": "a b"}, "source_code", "must be 3-32 letters"),
    ],
)
def test_each_bad_field_is_named_and_the_other_rows_are_kept(
    spec: CampaignSpec, fields: dict[str, str], field: str, message: str
) -> None:
    records = [row(handle="first.ok"), row(**fields), row(handle="third.ok")]
    rows, problems = parse_roster(records, spec)
    assert [r.handle for r in rows] == ["first.ok", "third.ok"]
    (problem,) = problems
    assert (problem.row, problem.field) == (3, field)
    assert problem.message.startswith(message)
    assert str(problem).startswith("row 3")


def test_a_row_with_several_bad_fields_reports_each(spec: CampaignSpec) -> None:
    _, problems = parse_roster([row(email="nope", segment="", followers="x")], spec)
    assert [p.field for p in problems] == ["email", "segment", "followers"]
    assert (
        str(problems[0])
        == "row 2 (@maya.votes): email: not an email address Rally can send to (got 'nope')"
    )


def test_a_creator_listed_twice_is_reported_at_the_repeat(spec: CampaignSpec) -> None:
    rows, problems = parse_roster(
        [row(), row(name="Other"), row(handle="maya.votes", platform="youtube")], spec
    )
    assert [(r.platform, r.handle) for r in rows] == [
        ("tiktok", "maya.votes"),
        ("youtube", "maya.votes"),
    ]
    assert [str(p) for p in problems] == ["row 3 (@maya.votes): handle: repeats row 2"]


def test_a_file_missing_a_required_column_is_refused_whole(
    tmp_path: Path, spec: CampaignSpec
) -> None:
    path = tmp_path / "roster.csv"
    path.write_text("handle,emial,segment\nmaya,maya@example.org,gen_z\n")
    with pytest.raises(
        RallyError, match=r"missing column email \(columns found: handle, emial, segment\)"
    ):
        read_roster(path, spec)


def test_headers_are_matched_loosely_and_excel_bom_is_accepted(
    tmp_path: Path, spec: CampaignSpec
) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(
        "\ufeffUsername, Email ,Segment,Tier,Promo Code,Favourite Snack\n"
        "maya,m@example.org,gen_z,mid,maya10,chips\n"
    )
    (parsed,), problems = read_roster(path, spec)
    assert problems == []
    assert (parsed.handle, parsed.email, parsed.tier, parsed.source_code) == (
        "maya",
        "m@example.org",
        "mid",
        "MAYA10",
    )
    assert parsed.attributes == {"favourite_snack": "chips"}


def test_tracking_links_carry_the_creator_in_utm_content(spec: CampaignSpec) -> None:
    url = tracking_url(spec, "tiktok", "maya.votes")
    assert url == (
        "https://firstvotepa.example.org/register?utm_source=tiktok&utm_medium=creator"
        "&utm_campaign=first-vote-pa-2027&utm_content=maya.votes"
    )
    assert tracking_code(spec.slug, "tiktok", "maya.votes") == tracking_code(
        spec.slug, "tiktok", "maya.votes"
    )
    assert tracking_code(spec.slug, "tiktok", "maya.votes") != tracking_code(
        spec.slug, "youtube", "maya.votes"
    )


def test_a_cell_too_large_to_read_names_the_file_and_the_line(spec: CampaignSpec, tmp_path):
    path = tmp_path / "roster.csv"
    header = "handle,platform,name,email,segment\n"
    path.write_text(
        header
        + "ok,tiktok,Ok,ok@example.org,gen_z\n"
        + "big,tiktok,"
        + "x" * 200_000
        + ",big@example.org,gen_z\n"
    )
    with pytest.raises(RallyError, match=r"roster.csv: line 3: cannot read this row: field larger"):
        read_roster(path, spec)


def test_a_row_with_more_cells_than_columns_is_named_not_shifted(spec, tmp_path) -> None:
    """An unquoted "2,400" splits into two cells: the row is refused at its own line (a blank
    line above it counts), not stored with its values moved one column on; and a number too
    large for any decimal is a bad field, not an error that stops the file."""
    lines = (EXAMPLE / "roster.csv").read_text().splitlines()
    header, first, second, third = lines[0], lines[1], lines[2], lines[3]
    cells = header.split(",")
    rate = cells.index("rate")
    shifted = second.split(",")
    shifted[rate] = "2,400"
    huge = third.split(",")
    huge[cells.index("followers")] = "1e1000000"
    path = tmp_path / "roster.csv"
    path.write_text("\n".join([header, first, "", ",".join(shifted), ",".join(huge)]) + "\n")
    rows, problems = read_roster(path, spec)
    assert len(rows) == 1
    assert [(p.row, p.field) for p in problems] == [(4, "row"), (5, "followers")]
    assert "quote a value that holds a comma" in problems[0].message


def test_a_column_named_twice_is_refused_whole(spec, tmp_path) -> None:
    """Two `email` columns: which one is meant is not Rally's guess."""
    lines = (EXAMPLE / "roster.csv").read_text().splitlines()
    path = tmp_path / "roster.csv"
    path.write_text("\n".join([lines[0] + ", Email", lines[1] + ",other@example.org"]) + "\n")
    with pytest.raises(RallyError, match="column email given twice in the header"):
        read_roster(path, spec)
