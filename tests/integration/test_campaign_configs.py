"""A campaign runs with what it was applied with: its policy, follow-up rules and brief templates
are kept in the store at apply, so editing or deleting the files changes nothing until the
campaign is applied again, and that apply audits the change with the old and new hash."""

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, Table
from sqlmodel import col, select

from config.campaign_file import load_campaign
from config.errors import RallyError
from config.policy import BUILTIN_POLICIES
from store.db import MIGRATIONS, engine_for, transaction, upgrade
from store.models import AuditEvent, Campaign, CampaignConfig
from tasks.briefs.run import prepare
from tasks.campaigns.apply import _columns, apply_campaign, check_references
from tasks.campaigns.roster import read_roster
from tasks.campaigns.roster_import import import_roster
from tasks.review.deadlines import sweep_reviews
from tests.conftest import SLUG
from tests.helpers import generate
from tests.integration.test_apply import snapshot
from tests.integration.test_engagement import event, followups, process, push
from tests.integration.test_review import GOOD, T0, open_tasks, send

RULES = """
name: Own rules
rules:
  - {id: tag_commenters, when: {types: [comment]}, action: tag, tags: [commenter]}
"""
BRIEF = "# {{ campaign.name }} for @{{ creator.handle }}\n"
CLAIM = 'phrases: ["vote by text",'


@pytest.fixture
def own(rally, example: Path) -> Path:
    """The example campaign applied with a policy, rules and brief template of its own."""
    (example / "policy.yaml").write_text((BUILTIN_POLICIES / "default.yaml").read_text())
    (example / "rules.yaml").write_text(RULES)
    (example / "brief-templates").mkdir()
    (example / "brief-templates" / "brief.md.j2").write_text(BRIEF)
    campaign = example / "campaign.yaml"
    campaign.write_text(
        campaign.read_text()
        .replace("policy: default", "policy: policy.yaml")
        .replace("followups: default", "followups: rules.yaml")
        .replace("template: default", "template: brief-templates")
    )
    run = rally("campaign", "apply", campaign)
    assert run.code == 0, run.err
    return example


def edit(path: Path, old: str, new: str) -> None:
    assert old in path.read_text(), f"{old!r} not in {path}"
    path.write_text(path.read_text().replace(old, new))


def hashes(engine: Engine) -> dict[str, str | None]:
    with transaction(engine, write=False) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        return {
            "policy_hash": campaign.policy_hash,
            "followups_hash": campaign.followups_hash,
            "templates_hash": campaign.templates_hash,
        }


def reapply(rally, folder: Path) -> dict:
    run = rally("campaign", "apply", folder / "campaign.yaml", "--json")
    assert run.code == 0, run.err
    return json.loads(run.out)


def newest(engine: Engine) -> AuditEvent:
    with transaction(engine, write=False) as session:
        query = select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)
        return session.exec(query).one()


def test_apply_stores_each_version_with_its_hash_and_audits_them(engine, own):
    stored = hashes(engine)
    assert all(stored.values())
    with transaction(engine, write=False) as session:
        rows = {(r.kind, r.hash, r.source) for r in session.exec(select(CampaignConfig))}
        created = session.exec(
            select(AuditEvent).where(AuditEvent.action == "campaign.created")
        ).one()
    assert rows == {
        ("policy", stored["policy_hash"], "policy.yaml"),
        ("followups", stored["followups_hash"], "rules.yaml"),
        ("templates", stored["templates_hash"], "brief-templates"),
    }
    assert {k: created.changes[k] for k in stored} == stored


def test_an_edited_policy_changes_nothing_until_the_campaign_is_applied_again(engine, rally, own):
    before = hashes(engine)
    edit(own / "policy.yaml", CLAIM, 'phrases: ["register today", "vote by text",')
    result = send(engine, GOOD + " Register today!")
    assert not result.blocked and result.policy_version == before["policy_hash"]

    report = reapply(rally, own)
    assert (report["outcome"], report["changed"]) == ("updated", ["policy_hash"])
    after = hashes(engine)
    entry = newest(engine)
    assert entry.action == "campaign.updated" and "policy_hash" in entry.summary
    assert entry.changes == {"policy_hash": [before["policy_hash"], after["policy_hash"]]}
    assert after["policy_hash"] != before["policy_hash"]

    again = send(engine, GOOD + " Register today!")
    assert again.blocked and again.policy_version == after["policy_hash"]
    assert rally("audit", "verify").code == 0


def test_edited_rules_change_nothing_until_the_campaign_is_applied_again(engine, rally, own):
    before = hashes(engine)
    edit(own / "rules.yaml", "tag_commenters", "tag_fans")
    push(engine, event(actor="first"))
    process(engine)
    assert [f.rule_id for f in followups(engine)] == ["tag_commenters"]

    report = reapply(rally, own)
    assert report["changed"] == ["followups_hash"]
    changes = newest(engine).changes
    assert changes == {
        "followups_hash": [before["followups_hash"], hashes(engine)["followups_hash"]]
    }
    push(engine, event(actor="second"))
    process(engine)
    assert [f.rule_id for f in followups(engine)] == ["tag_commenters", "tag_fans"]


def test_an_edited_template_changes_no_brief_until_the_campaign_is_applied_again(
    settings, engine, rally, own
):
    before = hashes(engine)
    assert generate(settings, engine, SLUG).rendered == 50
    (own / "brief-templates" / "brief.md.j2").write_text("# Hello @{{ creator.handle }}\n")
    assert generate(settings, engine, SLUG).unchanged == 50

    report = reapply(rally, own)
    assert report["changed"] == ["templates_hash"]
    changes = newest(engine).changes
    assert changes == {
        "templates_hash": [before["templates_hash"], hashes(engine)["templates_hash"]]
    }
    assert generate(settings, engine, SLUG).rendered == 50
    assert rally("briefs", "show", SLUG, "maya.votes.pa").out == "# Hello @maya.votes.pa\n"


def test_runs_need_no_folder_once_applied(settings, engine, rally, own):
    """As on a worker on another machine: the campaign's folder is not there at all."""
    edit(own / "policy.yaml", CLAIM, 'phrases: ["register today", "vote by text",')
    assert reapply(rally, own)["changed"] == ["policy_hash"]
    shutil.rmtree(own)

    blocked = send(engine, GOOD + " Register today!")
    assert [f.message for f in blocked.findings if not f.passed] == [
        'prohibited claim: "register today"'
    ]
    send(engine)
    assert [t.tier for t in open_tasks(engine)] == ["internal"]
    assert sweep_reviews(engine, now=T0 + timedelta(hours=30))["escalated"] == 1
    push(engine, event())
    process(engine)
    assert [f.rule_id for f in followups(engine)] == ["tag_commenters"]
    assert generate(settings, engine, SLUG).rendered == 50
    md = rally("briefs", "show", SLUG, "maya.votes.pa").out
    assert md == "# First Vote PA 2027 for @maya.votes.pa\n"


def test_applying_the_same_files_again_records_nothing(engine, rally, own):
    before = snapshot(engine)
    report = reapply(rally, own)
    assert (report["outcome"], report["changed"], report["plan_changed"]) == (
        "unchanged",
        [],
        False,
    )
    assert snapshot(engine) == before


def test_going_back_to_an_earlier_version_is_a_change_too(engine, rally, own):
    first = hashes(engine)["policy_hash"]
    text = (own / "policy.yaml").read_text()
    edit(own / "policy.yaml", CLAIM, 'phrases: ["register today", "vote by text",')
    reapply(rally, own)
    second = hashes(engine)["policy_hash"]
    (own / "policy.yaml").write_text(text)
    assert reapply(rally, own)["changed"] == ["policy_hash"]
    assert newest(engine).changes == {"policy_hash": [second, first]}
    with transaction(engine, write=False) as session:
        kept = session.exec(select(CampaignConfig.hash).where(CampaignConfig.kind == "policy"))
        assert sorted(kept) == sorted([str(first), str(second)]), "each version kept once"


def test_bad_content_is_named_at_apply_and_nothing_changes(engine, rally, own):
    before = snapshot(engine)
    edit(own / "policy.yaml", "severity: block", "severity: sometimes")
    run = rally("campaign", "apply", own / "campaign.yaml")
    assert run.code == 1 and f"{own / 'policy.yaml'}: rules[0].severity" in run.err
    (own / "policy.yaml").write_text((BUILTIN_POLICIES / "default.yaml").read_text())
    (own / "brief-templates" / "email.txt.j2").write_text("Hi\n{% for %}\n")
    run = rally("campaign", "apply", own / "campaign.yaml")
    assert run.code == 1 and f"{own / 'brief-templates' / 'email.txt.j2'}:2: " in run.err
    assert snapshot(engine) == before


def _migrate(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_a_campaign_applied_before_rally_kept_them_asks_to_be_applied_again(
    empty_store_url: str, example: Path
) -> None:
    """A store upgraded from revision 0007: the campaign is there, its files are not."""
    file = example / "campaign.yaml"
    spec = load_campaign(file)
    engine = engine_for(empty_store_url)
    _migrate(engine, "0007")
    with engine.begin() as conn:
        campaigns = Table("campaigns", MetaData(), autoload_with=conn)
        row = Campaign(slug=spec.slug, **_columns(spec, str(file)))
        conn.execute(
            campaigns.insert().values(
                {c.name: getattr(row, c.name) for c in campaigns.columns if c.name != "id"}
            )
        )
    upgrade(engine)
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign)).one()
        assert campaign.policy_hash is None
        import_roster(
            session,
            campaign,
            spec,
            read_roster(example / "roster.csv", spec)[0],
            actor="staff:test",
        )

    asked = (
        f"campaign {SLUG} was applied before Rally kept its {{}} in the store: "
        f"run `rally campaign apply {file}` again"
    )
    with pytest.raises(RallyError) as raised:
        send(engine)
    assert str(raised.value) == asked.format("policy")
    with pytest.raises(RallyError) as raised, transaction(engine, write=False) as session:
        prepare(session, SLUG, public_url="https://rally.example.org")
    assert str(raised.value) == asked.format("brief templates")
    push(engine, event())
    with pytest.raises(RallyError) as raised:
        process(engine)
    assert str(raised.value) == asked.format("follow-up rules")

    configs = check_references(spec, example, file=str(file))
    with transaction(engine) as session:
        change = apply_campaign(
            session, spec, configs=configs, source_path=str(file), actor="staff:test"
        )
    assert change.outcome == "updated"
    assert change.changed == ["policy_hash", "followups_hash", "templates_hash"]
    with transaction(engine, write=False) as session:
        updated = session.exec(
            select(AuditEvent).where(AuditEvent.action == "campaign.updated")
        ).one()
    assert updated.changes["policy_hash"] == [None, configs.policy.version]
    assert send(engine).tiers == ["internal", "legal"]
    process(engine)
    assert [f.rule_id for f in followups(engine)] == ["thank_commenters"]
    engine.dispose()
