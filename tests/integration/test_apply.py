"""Applying campaigns and rosters: idempotent, audited, and forgiving of bad rows."""

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, text
from sqlmodel import SQLModel, select

from store.db import transaction
from store.models import AuditEvent, Creator, Milestone, MilestoneStatus, RosterMember


def snapshot(engine: Engine) -> dict[str, list[Any]]:
    """Every row of every table, for before/after comparisons."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(table.select().order_by(*table.primary_key.columns))
            ]
            for table in SQLModel.metadata.sorted_tables
        }


def actions(engine: Engine) -> list[str]:
    with transaction(engine, write=False) as session:
        return [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.seq))]  # type: ignore[arg-type]


def newest_entry(engine: Engine) -> AuditEvent | None:
    with transaction(engine, write=False) as session:
        return session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()  # type: ignore[attr-defined]


def edit_yaml(path: Path, **changes: Any) -> None:
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def edit_roster(path: Path, change: Any) -> None:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = change(rows)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_applying_the_example_creates_campaign_plan_roster_and_audit(
    rally, engine: Engine, example: Path
) -> None:
    run = rally("campaign", "apply", example / "campaign.yaml", "--json")
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["outcome"] == "created" and report["plan_changed"]
    assert (report["roster"]["added"], report["roster"]["skipped"]) == (50, [])
    kinds = actions(engine)
    assert kinds.count("campaign.created") == 1 and kinds.count("sprint_plan.updated") == 1
    assert kinds.count("creator.created") == 50 and kinds.count("roster.added") == 50
    assert rally("audit", "verify").code == 0


def test_applying_the_same_files_twice_changes_nothing_and_says_so(
    rally, engine: Engine, example: Path
) -> None:
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
    before = snapshot(engine)
    again = rally("campaign", "apply", example / "campaign.yaml")
    assert again.code == 0
    assert "Nothing changed: the store already matches these files." in again.out
    assert "0 added, 0 updated, 50 unchanged" in again.out
    assert snapshot(engine) == before


def test_a_changed_target_updates_the_campaign_and_audits_old_and_new(
    rally, engine: Engine, example: Path
) -> None:
    rally("campaign", "apply", example / "campaign.yaml")
    edit_yaml(example / "campaign.yaml", kpis__signups=5000)
    run = rally("campaign", "apply", example / "campaign.yaml", "--json")
    report = json.loads(run.out)
    assert (report["outcome"], report["changed"], report["plan_changed"]) == (
        "updated",
        ["kpis.signups"],
        False,
    )
    assert report["roster"]["unchanged"] == 50
    last = newest_entry(engine)
    assert last is not None and last.action == "campaign.updated"
    assert last.changes == {"kpis.signups": [4000, 5000]}
    assert last.actor == "staff:test"


def test_moving_the_start_date_moves_the_plan_and_keeps_milestone_outcomes(
    rally, engine: Engine, example: Path
) -> None:
    rally("campaign", "apply", example / "campaign.yaml")
    with transaction(engine) as session:
        strategy = session.exec(select(Milestone).where(Milestone.key == "strategy")).one()
        strategy.status = MilestoneStatus.MET
    edit_yaml(example / "campaign.yaml", sprint__start="2027-02-08")
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
    with transaction(engine, write=False) as session:
        strategy = session.exec(select(Milestone).where(Milestone.key == "strategy")).one()
    assert (str(strategy.due_on), strategy.status) == ("2027-02-14", "met")
    assert actions(engine)[-2:] == ["campaign.updated", "sprint_plan.updated"]


def test_three_bad_rows_are_named_and_every_other_row_is_imported(
    rally, engine: Engine, example: Path
) -> None:
    def spoil(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        rows[4]["email"] = "not-an-email"
        rows[9]["segment"] = "retirees"
        rows[20]["followers"] = "lots"
        return rows

    edit_roster(example / "roster.csv", spoil)
    run = rally("campaign", "apply", example / "campaign.yaml")
    assert run.code == 1
    assert "47 added, 0 updated, 0 unchanged, 3 row problem(s):" in run.out
    assert (
        "roster.csv: row 6 (@sofi.on.campus): email: "
        "not an email address Rally can send to (got 'not-an-email')" in run.out
    )
    assert (
        "roster.csv: row 11 (@liamoconnor.mp4): segment: "
        "must be one of gen_z, recruitment, suburban (got 'retirees')" in run.out
    )
    assert "roster.csv: row 22 (@nia.robinson): followers: must be a whole number" in run.out
    assert "error: 3 roster row(s) not imported" in run.err
    with transaction(engine, write=False) as session:
        assert len(session.exec(select(RosterMember)).all()) == 47


def test_reimporting_updates_only_what_changed(rally, engine: Engine, example: Path) -> None:
    rally("campaign", "apply", example / "campaign.yaml")

    def move(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        rows[0]["email"] = "maya.new@example.org"
        rows[1]["tier"] = "mid"
        return rows

    edit_roster(example / "roster.csv", move)
    run = rally("creators", "import", "first-vote-pa-2027", example / "roster.csv", "--json")
    assert run.code == 0
    assert {k: json.loads(run.out)[k] for k in ("added", "updated", "unchanged")} == {
        "added": 0,
        "updated": 2,
        "unchanged": 48,
    }
    assert actions(engine)[-2:] == ["creator.updated", "roster.updated"]
    with transaction(engine, write=False) as session:
        maya = session.exec(select(Creator).where(Creator.handle == "maya.votes.pa")).one()
    assert maya.email == "maya.new@example.org"


def test_a_promo_code_already_held_by_another_creator_is_a_row_problem(
    rally, engine: Engine, example: Path
) -> None:
    rally("campaign", "apply", example / "campaign.yaml")
    roster = example / "late.csv"
    roster.write_text(
        "handle,email,segment,tier,source_code\nnewcomer,new@example.org,gen_z,micro,MAYAVOTESPA\n"
    )
    run = rally("creators", "import", "first-vote-pa-2027", roster)
    assert run.code == 1
    assert (
        "row 2 (@newcomer): source_code: MAYAVOTESPA already belongs to another creator" in run.out
    )


def test_the_same_creator_on_two_campaigns_is_one_creator(
    rally, engine: Engine, example: Path
) -> None:
    rally("campaign", "apply", example / "campaign.yaml")
    edit_yaml(example / "campaign.yaml", slug="first-vote-pa-fall", name="First Vote PA Fall")
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM creators")).scalar() == 50
        assert conn.execute(text("SELECT count(*) FROM roster_members")).scalar() == 100
        codes = conn.execute(
            text("SELECT count(DISTINCT tracking_code) FROM roster_members")
        ).scalar()
    assert codes == 100


def test_a_code_asked_for_in_the_file_is_never_generated_for_another_row(
    rally, engine: Engine, example: Path
) -> None:
    rally("campaign", "apply", example / "campaign.yaml")
    roster = example / "late.csv"
    roster.write_text(
        "handle,email,segment,tier,source_code\n"
        "sam.votes,sam@example.org,gen_z,micro,\n"
        "samantha,samantha@example.org,gen_z,micro,SAMVOTES\n"
    )
    run = rally("creators", "import", "first-vote-pa-2027", roster, "--json")
    assert run.code == 0, run.out + run.err
    assert json.loads(run.out)["added"] == 2
    codes = {
        c["handle"]: c["source_code"]
        for c in json.loads(rally("creators", "list", "first-vote-pa-2027", "--json").out)
    }
    assert codes["samantha"] == "SAMVOTES" and codes["sam.votes"] == "SAMVOTES2"


def test_a_roster_with_fewer_columns_never_erases_what_is_known(
    rally, engine: Engine, example: Path
) -> None:
    rally("campaign", "apply", example / "campaign.yaml")
    edit_yaml(
        example / "campaign.yaml", slug="first-vote-pa-fall", name="First Vote PA Fall", roster=None
    )
    rally("campaign", "apply", example / "campaign.yaml")
    minimal = example / "minimal.csv"
    minimal.write_text(
        "handle,email,segment,tier,rate,pronouns\nmaya.votes.pa,maya.thompson@example.org,gen_z,macro,,she/her\n"
    )
    run = rally("creators", "import", "first-vote-pa-fall", minimal, "--json")
    assert (run.code, json.loads(run.out)["added"]) == (0, 1)
    again = rally("creators", "import", "first-vote-pa-2027", minimal, "--json")
    assert (again.code, json.loads(again.out)["unchanged"]) == (0, 1)
    before = {
        c["handle"]: c
        for c in json.loads(rally("creators", "list", "first-vote-pa-2027", "--json").out)
    }
    maya = before["maya.votes.pa"]
    assert (maya["name"], maya["followers"]) == ("Maya Thompson", 223900)
    assert maya["attributes"] == {"city": "Philadelphia", "zip": "19121", "pronouns": "she/her"}
    assert (maya["rate_cents"], maya["rate_from"]) == (240000, "roster"), (
        "an empty rate cell keeps the rate"
    )


def test_the_same_files_from_another_checkout_only_move_the_campaign(
    rally, engine: Engine, example: Path, tmp_path: Path
) -> None:
    rally("campaign", "apply", example / "campaign.yaml")
    elsewhere = tmp_path / "other-checkout"
    shutil.copytree(example, elsewhere)
    run = rally("campaign", "apply", elsewhere / "campaign.yaml", "--json")
    report = json.loads(run.out)
    assert (report["outcome"], report["changed"], report["plan_changed"]) == (
        "updated",
        ["source_path"],
        False,
    )
    assert report["roster"]["unchanged"] == 50
    last = newest_entry(engine)
    assert last is not None and last.changes == {
        "source_path": [
            str((example / "campaign.yaml").resolve()),
            str((elsewhere / "campaign.yaml").resolve()),
        ]
    }
