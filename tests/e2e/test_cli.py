"""The `rally` command as staff use it: output for people and scripts, and clear failures."""

import json
import re
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from config.settings import Settings


def raw_sql(settings: Settings, statement: str) -> None:
    """Run SQL through the database's own driver, as someone with a plain SQL client would."""
    url = make_url(settings.store_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as conn:
            conn.execute(statement)
    else:
        with psycopg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False)
        ) as conn:
            conn.execute(statement)


def test_show_json_has_the_campaign_plan_and_roster(rally, applied: Path) -> None:
    run = rally("campaign", "show", "first-vote-pa-2027", "--json")
    assert run.code == 0
    data = json.loads(run.out)
    assert data["campaign"]["committee"]["name"] == "Keystone Youth Vote Fund"
    assert [p["key"] for p in data["plan"]["phases"]] == [
        "planning",
        "execution",
        "amplification",
        "measurement",
    ]
    assert len(data["plan"]["milestones"]) == 5
    maya = next(c for c in data["roster"] if c["handle"] == "maya.votes.pa")
    assert (maya["segment"], maya["tier"], maya["rate_cents"], maya["rate_from"]) == (
        "gen_z",
        "macro",
        240000,
        "roster",
    )
    assert maya["tracking_link"].startswith("http://127.0.0.1:8000/t/")
    assert maya["tracking_url"].endswith(
        "utm_campaign=first-vote-pa-2027&utm_content=maya.votes.pa"
    )
    jordan = next(c for c in data["roster"] if c["handle"] == "jordanreyes_phl")
    assert (jordan["rate_cents"], jordan["rate_from"]) == (30000, "tier")


def test_show_for_people_prints_the_terms_plan_and_roster(rally, applied: Path) -> None:
    out = rally("campaign", "show", "first-vote-pa-2027").out
    assert "First Vote PA 2027" in out and "Keystone Youth Vote Fund" in out
    assert "Budget: $48,000 (creators $33,600, production $8,640, tools $5,760)" in out
    assert "Roster (50 creators)" in out and "80% of KPI targets" in out


def test_list_commands_answer_in_json_too(rally, applied: Path) -> None:
    (campaign,) = json.loads(rally("campaign", "list", "--json").out)
    assert (campaign["slug"], campaign["creators"]) == ("first-vote-pa-2027", 50)
    creators = json.loads(rally("creators", "list", "first-vote-pa-2027", "--json").out)
    assert len(creators) == 50 and {c["platform"] for c in creators} == {
        "tiktok",
        "instagram",
        "youtube",
    }


def test_an_empty_store_says_how_to_start(rally) -> None:
    assert "rally campaign apply" in rally("campaign", "list").out
    assert json.loads(rally("campaign", "list", "--json").out) == []


def test_a_mistake_is_one_line_and_a_nonzero_exit(rally, applied: Path) -> None:
    run = rally("campaign", "show", "first-vote-pa-2026")
    assert run.code == 1
    assert run.err == "error: no campaign 'first-vote-pa-2026' (campaigns: first-vote-pa-2027)\n"
    debug = rally("--debug", "campaign", "show", "first-vote-pa-2026")
    assert debug.code == 1 and "Traceback" in debug.err


def test_an_invalid_campaign_file_lists_its_problems_and_changes_nothing(
    rally, example: Path
) -> None:
    path = example / "campaign.yaml"
    path.write_text(path.read_text().replace("engagement_rate: 0.06", "engagement_rate: 6"))
    run = rally("campaign", "apply", path)
    assert run.code == 1
    assert run.err == f"error: {path}: kpis.engagement_rate: must be between 0 and 1 (got 6)\n"
    assert json.loads(rally("campaign", "list", "--json").out) == []


def test_a_missing_file_is_a_clear_error(rally, tmp_path: Path) -> None:
    run = rally("campaign", "apply", tmp_path / "nope.yaml")
    assert run.code == 1 and run.err.startswith(f"error: {tmp_path / 'nope.yaml'}: cannot read")


def test_audit_verify_names_an_entry_edited_with_a_sql_client(
    rally, applied: Path, settings: Settings
) -> None:
    ok = rally("audit", "verify")
    assert ok.code == 0 and "Audit log intact: 102 entries" in ok.out
    newest = json.loads(rally("audit", "export", "--since", "101").out)
    assert f"Newest entry 102 has hash {newest['hash']}" in ok.out
    entry = json.loads(rally("audit", "export").out.splitlines()[6])
    raw_sql(settings, "UPDATE audit_events SET summary = 'nothing to see' WHERE seq = 7")
    broken = rally("audit", "verify")
    what = f"{entry['action']} on {entry['entity_type']} {entry['entity_id']}"
    assert (broken.code, broken.err) == (
        1,
        f"error: audit log broken at entry 7: {what} does not match its hash: "
        "edited after it was written\n",
    )
    as_json = json.loads(rally("audit", "verify", "--json").out)
    assert (as_json["ok"], as_json["first_bad"]) == (False, 7)


def test_audit_verify_names_an_entry_deleted_with_a_sql_client(
    rally, applied: Path, settings: Settings
) -> None:
    raw_sql(settings, "DELETE FROM audit_events WHERE seq = 12")
    broken = rally("audit", "verify")
    assert (broken.code, broken.err) == (
        1,
        "error: audit log broken at entry 12: missing: deleted\n",
    )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET at = 'yesterday' WHERE seq = 3",
        "UPDATE audit_events SET changes = '{bad' WHERE seq = 3",
    ],
)
def test_audit_verify_names_an_entry_whose_values_were_garbled(
    rally, applied: Path, settings: Settings, statement: str
) -> None:
    if "changes" in statement and settings.store_url.startswith("postgresql"):
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            raw_sql(settings, statement)  # its json type refuses the edit: nothing to detect
        return
    raw_sql(settings, statement)
    broken = rally("audit", "verify")
    assert broken.code == 1
    assert broken.err.startswith("error: audit log broken at entry 3: ")
    if "cannot be read" in broken.err:
        export = rally("audit", "export")
        assert (export.code, export.err) == (
            1,
            "error: audit entry 3 cannot be read: run `rally audit verify`\n",
        )


def test_audit_export_writes_json_lines(rally, applied: Path, tmp_path: Path) -> None:
    run = rally("audit", "export")
    lines = [json.loads(line) for line in run.out.splitlines()]
    assert len(lines) == 102 and lines[0]["action"] == "campaign.created"
    assert run.err == "102 audit entries exported\n"
    target = tmp_path / "audit.jsonl"
    assert rally("audit", "export", "--since", "100", "--output", target).code == 0
    assert [json.loads(line)["seq"] for line in target.read_text().splitlines()] == [101, 102]
    # --out, as `rally report` names it, works here too
    assert rally("audit", "export", "--since", "101", "--out", target).code == 0
    assert [json.loads(line)["seq"] for line in target.read_text().splitlines()] == [102]


def test_db_status_and_upgrade_report_the_revision(rally, settings: Settings) -> None:
    status = json.loads(rally("db", "status", "--json").out)
    assert status["current"] is True and status["revision"] == status["head"]
    assert "is up to date" in rally("db", "upgrade").out


def test_rally_says_its_version_without_a_store(rally) -> None:
    shown = rally("--version")
    assert shown.code == 0 and re.fullmatch(r"rally \d+\.\d+\.\d+\n", shown.out)
