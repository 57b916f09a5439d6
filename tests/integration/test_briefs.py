"""Briefs as creators and staff meet them: complete, correct per creator, versioned, and never
silently wrong (a missing value names the creator and field; user text stays data; a template
over its budget names the creator and the budget, and spares everyone else's brief)."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from briefs.environment import BUILTIN_TEMPLATES
from store.db import transaction
from store.models import AuditEvent, Brief, OutboxMessage, Timer
from store.types import utcnow
from tasks.briefs.generate import render_batch, store_batch
from tasks.briefs.reminders import send_reminders
from tasks.briefs.run import prepare, select_members
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.helpers import generate

INJECTIONS = ("{{ ''.__class__.__mro__ }}", "{% for x in range(10**9) %}x{% endfor %}")


def roster_by_handle(rally) -> dict[str, dict]:
    run = rally("creators", "list", SLUG, "--json")
    assert run.code == 0, run.err
    return {row["handle"]: row for row in json.loads(run.out)}


def briefs(engine) -> list[Brief]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(Brief).order_by(col(Brief.member_id), col(Brief.version))))


def audit_actions(engine) -> list[str]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(AuditEvent.action).order_by(col(AuditEvent.seq))))


def template_folder(campaign_folder: Path, files: dict[str, str] | None = None) -> Path:
    """Point the campaign at its own template folder, holding `files` (name -> source)."""
    folder = campaign_folder / "brief-templates"
    folder.mkdir()
    for name, source in (files or {}).items():
        (folder / name).write_text(source)
    edit(campaign_folder / "campaign.yaml", "template: default", "template: brief-templates")
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_every_creator_gets_a_complete_brief_of_their_own(settings, engine, rally, applied):
    report = generate(settings, engine, SLUG)
    assert (report.rendered, report.unchanged, report.failed) == (50, 0, [])
    creators = roster_by_handle(rally)
    maya = creators["maya.votes.pa"]
    shown = rally("briefs", "show", SLUG, "maya.votes.pa")
    assert shown.code == 0, shown.err
    brief = shown.out
    for expected in (
        "First Vote PA 2027",
        "Register 4,000 first-time voters",  # objective
        "Gen Z first-time voters",  # the creator's segment
        "Registering takes two minutes, and your first vote in May counts.",
        "Hook the viewer in the first 3 seconds.",
        "trending sound",
        "3 videos, 15-30s each, vertical video, 9:16",
        "Drafts due by Sunday, February 21, 2027",  # end of week 3 from Monday, Feb 1
        "Monday, February 22, 2027 to Sunday, April 11, 2027",  # weeks 4 to 10
        "$2,400",  # the roster's own rate beats the macro tier's $2,000
        "#FirstVotePA #RegisterToVote",
        "#ad",
        "Paid for by Keystone Youth Vote Fund (keystoneyouthvote.example.org).",
        maya["tracking_link"],  # Rally's own short link, which counts the clicks
        maya["source_code"],
        "Contract clauses",
    ):
        assert expected in brief, expected
    assert "utm_" not in brief  # the long landing-page address is not the one to use
    # A creator on the tier's rate gets the tier's compensation, and their own links only.
    jordan = rally("briefs", "show", SLUG, "@jordanreyes_phl").out
    assert "$300 for the deliverables above (micro tier)" in jordan
    assert creators["jordanreyes_phl"]["tracking_link"] in jordan
    assert maya["tracking_link"] not in jordan


def test_the_three_formats_say_the_same_thing(settings, engine, rally, applied):
    generate(settings, engine, SLUG, handles=["maya.votes.pa"])
    html = rally("briefs", "show", SLUG, "maya.votes.pa", "--format", "html").out
    text = rally("briefs", "show", SLUG, "maya.votes.pa", "--format", "text").out
    assert html.lstrip().startswith("<article")
    assert "<" not in text and "Candidate's committee".lower() in text.lower()
    for fmt in ("md", "html", "text"):
        out = rally("briefs", "show", SLUG, "maya.votes.pa", "--format", fmt).out
        assert "Keystone Youth Vote Fund" in out and "MAYAVOTESPA" in out
    shown = json.loads(rally("briefs", "show", SLUG, "maya.votes.pa", "--json").out)
    assert (shown["creator"], shown["version"], shown["format"]) == ("maya.votes.pa", 1, "md")
    assert shown["content"] == rally("briefs", "show", SLUG, "maya.votes.pa").out
    wrong = rally("briefs", "show", SLUG, "maya.votes.pa", "--format", "pdf")
    assert wrong.code == 1 and "--format must be one of md, html, text" in wrong.err


def test_same_inputs_make_nothing_new_and_changes_make_a_new_version(
    settings, engine, rally, applied
):
    generate(settings, engine, SLUG)
    audited = len(audit_actions(engine))
    again = generate(settings, engine, SLUG)
    assert (again.rendered, again.unchanged) == (0, 50)
    assert len(briefs(engine)) == 50 and len(audit_actions(engine)) == audited

    # One creator's rate changes: only their brief gets version 2.
    roster = applied / "roster.csv"
    edit(
        roster,
        "jordan.reyes@example.org,26200,gen_z,micro,,",
        "jordan.reyes@example.org,26200,gen_z,micro,450,",
    )
    assert rally("creators", "import", SLUG, roster).code == 0
    one = generate(settings, engine, SLUG)
    assert (one.rendered, one.unchanged) == (1, 49)
    diff = rally("briefs", "diff", SLUG, "jordanreyes_phl", "--json")
    assert diff.code == 0, diff.err
    changes = json.loads(diff.out)
    assert (changes["from"], changes["to"]) == (1, 2)
    assert changes["inputs"] == {"creator.compensation": ["$300", "$450"]}
    assert "-$300 for the deliverables above (micro tier)." in changes["markdown_diff"]
    assert "+$450 for the deliverables above (micro tier)." in changes["markdown_diff"]

    # The campaign's key message changes: everyone gets a new version, and the diff says why.
    edit(applied / "campaign.yaml", "your first vote in May counts.", "your vote in May counts.")
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0
    everyone = generate(settings, engine, SLUG)
    assert (everyone.rendered, everyone.unchanged) == (50, 0)
    shown = rally("briefs", "diff", SLUG, "maya.votes.pa")
    assert "campaign.key_message" in shown.out and "v1 -> v2" in shown.out
    versions = {(b.member_id, b.version) for b in briefs(engine)}
    assert len(versions) == 101
    with transaction(engine, write=False) as session:
        entries = session.exec(
            select(AuditEvent).where(AuditEvent.action == "briefs.generated")
        ).all()
    listed = [(b["handle"], b["version"]) for e in entries for b in e.changes["briefs"]]
    assert sorted(listed) == sorted(set(listed)) and len(listed) == 101
    maya_v2 = next(
        b
        for e in entries
        for b in e.changes["briefs"]
        if b["handle"] == "maya.votes.pa" and b["version"] == 2
    )
    assert maya_v2["changed"] == ["campaign.key_message"]
    older = rally("briefs", "show", SLUG, "maya.votes.pa", "--version", "1").out
    assert "your first vote in May counts." in older


def test_an_edited_template_makes_new_versions(settings, engine, rally, applied):
    folder = template_folder(
        applied, {"brief.md.j2": "# {{ campaign.name }} for @{{ creator.handle }}\n"}
    )
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0
    generate(settings, engine, SLUG)
    md = rally("briefs", "show", SLUG, "maya.votes.pa").out
    html = rally("briefs", "show", SLUG, "maya.votes.pa", "--format", "html").out
    assert md == "# First Vote PA 2027 for @maya.votes.pa\n"
    assert "Contract clauses" in html  # files the campaign does not override come from the defaults
    (folder / "brief.md.j2").write_text("# {{ campaign.name }}, @{{ creator.handle }}\n")
    assert generate(settings, engine, SLUG).unchanged == 50, "runs use the applied templates"
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0
    assert generate(settings, engine, SLUG).rendered == 50


def test_missing_values_name_each_creator_and_field_and_spare_the_others(
    settings, engine, rally, example
):
    campaign = example / "campaign.yaml"
    text = campaign.read_text()
    start, end = text.index("tiers:"), text.index("brief:")
    campaign.write_text(text[:start] + text[end:])  # no tier rates: the roster's rate is all
    header, *rows = (example / "roster.csv").read_text().splitlines()
    priced = [
        row.replace(",micro,,", ",micro,300,").replace(",mid,,", ",mid,800,") for row in rows[:6]
    ]
    priced[2] = rows[2]  # aaliyahbrooks: no rate
    priced[4] = rows[4]  # sofi.on.campus: no rate
    (example / "roster.csv").write_text("\n".join([header, *priced]) + "\n")
    assert rally("campaign", "apply", campaign).code == 0

    report = generate(settings, engine, SLUG)
    assert report.rendered == 4
    assert {(p.handle, p.field) for p in report.failed} == {
        ("aaliyahbrooks", "creator.compensation"),
        ("sofi.on.campus", "creator.compensation"),
    }
    assert all("give the creator a rate in the roster" in p.message for p in report.failed)
    status = {
        row["handle"]: row for row in json.loads(rally("briefs", "status", SLUG, "--json").out)
    }
    assert status["aaliyahbrooks"]["version"] is None
    assert status["maya.votes.pa"]["version"] == 1


@pytest.mark.parametrize("injection", INJECTIONS)
def test_text_from_people_is_printed_never_run(settings, engine, rally, applied, injection):
    edit(applied / "roster.csv", "Maya Thompson", f"Maya {injection}")
    message = "Registering takes two minutes, and your first vote in May counts."
    edit(applied / "campaign.yaml", message, json.dumps(f"{injection} {message}"))
    edit(applied / "campaign.yaml", "name: First Vote PA 2027", f"name: {json.dumps(injection)}")
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0, "apply"
    report = generate(settings, engine, SLUG)
    assert report.failed == [] and report.rendered == 50
    md = rally("briefs", "show", SLUG, "maya.votes.pa").out
    text = rally("briefs", "show", SLUG, "maya.votes.pa", "--format", "text").out
    html = rally("briefs", "show", SLUG, "maya.votes.pa", "--format", "html").out
    assert f"{injection} Registering" in md and f"{injection} Registering" in text
    assert f"# {injection}: your creator brief" in md
    assert "Hi Maya," in md  # the greeting is the first name; the rest is in the roster
    assert "&#39;" in html or "10**9" in html  # escaped for HTML, not evaluated
    assert "<class" not in md + text + html and "xxxxxxxx" not in md + text + html


def test_templates_cannot_reach_outside_their_folder_or_into_python(
    settings, engine, rally, applied, tmp_path
):
    folder = template_folder(applied)
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")

    (folder / "brief.md.j2").symlink_to(secret)
    refused = rally("campaign", "apply", applied / "campaign.yaml")
    assert refused.code == 1 and "points outside" in refused.err

    (folder / "brief.md.j2").unlink()
    for source, says in (
        ('{% include "../../secret.txt" %}', "TemplateNotFound"),
        ("{{ creator.__class__.__mro__ }}", "unsafe"),
        ("{{ campaign.name.__class__.__init__.__globals__ }}", "unsafe"),
        ("{% for x in range(10**9) %}x{% endfor %}", "Range too big"),
        ("{{ 9 ** 99999999 }}", "exponent"),
        ("{{ 'x' * 100000000 }}", "repeating"),
    ):
        (folder / "brief.md.j2").write_text(source)
        assert rally("campaign", "apply", applied / "campaign.yaml").code == 0
        report = generate(settings, engine, SLUG, handles=["maya.votes.pa"])
        assert report.rendered == 0 and len(report.failed) == 1, source
        assert says in report.failed[0].message, (source, report.failed[0].message)
        assert "TOP SECRET" not in report.failed[0].message

    (folder / "brief.md.j2").write_text("{% if %}")
    broken = rally("campaign", "apply", applied / "campaign.yaml")
    assert broken.code == 1 and f"{folder / 'brief.md.j2'}:1: " in broken.err


def test_a_template_folder_must_sit_with_the_campaign(rally, applied):
    edit(applied / "campaign.yaml", "template: default", "template: ..")
    run = rally("campaign", "apply", applied / "campaign.yaml")
    assert run.code == 1
    assert "brief.template: must be a folder inside the campaign's folder (got '..')" in run.err


def test_an_email_that_cannot_render_spares_the_brief_and_the_other_emails(
    settings, engine, rally, example
):
    template_folder(example, {"email_subject.txt.j2": "{{ creator.name }}, your brief"})
    edit(example / "roster.csv", "Maya Thompson", "")
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
    report = generate(settings, engine, SLUG, send=True)
    assert (report.rendered, report.queued) == (50, 49)
    (problem,) = report.failed
    assert (problem.handle, problem.field) == ("maya.votes.pa", "creator.name")
    assert problem.message.startswith("email: creator.name is missing")
    status = {r["handle"]: r for r in json.loads(rally("briefs", "status", SLUG, "--json").out)}
    assert status["maya.votes.pa"]["version"] == 1
    assert status["maya.votes.pa"]["email_status"] == "not queued"


def test_a_newer_version_withdraws_the_older_email_still_waiting(settings, engine, rally, applied):
    generate(settings, engine, SLUG, send=True, handles=["maya.votes.pa"])  # not delivered yet
    edit(applied / "campaign.yaml", "your first vote in May counts.", "your vote counts.")
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0
    generate(settings, engine, SLUG, send=True, handles=["maya.votes.pa"])
    report = deliver_email(engine, settings, now=utcnow)
    assert report.sent == 1
    (mail,) = settings.mailbox.glob("*.eml")
    assert "Updated brief" in mail.read_text() and "your vote counts." in mail.read_text()
    with transaction(engine, write=False) as session:
        statuses = sorted(session.exec(select(OutboxMessage.status)))
    assert statuses == ["cancelled", "sent"]


def test_a_reminder_that_cannot_render_is_recorded_and_the_others_go(
    settings, engine, rally, example
):
    template_folder(example, {"reminder_subject.txt.j2": "{{ creator.name }}, a reminder"})
    edit(example / "roster.csv", "Maya Thompson", "")
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
    generate(settings, engine, SLUG, send=True)
    start = utcnow()
    assert deliver_email(engine, settings, now=lambda: start).sent == 50

    due = start + timedelta(days=3, minutes=1)
    assert send_reminders(engine, settings, now=due) == 49
    assert deliver_email(engine, settings, now=lambda: due).sent == 49
    with transaction(engine, write=False) as session:
        outcomes = [t.payload for t in session.exec(select(Timer))]
    failed = [o for o in outcomes if o["outcome"] == "failed"]
    assert len(outcomes) == 50 and len(failed) == 1
    assert "creator.name" in failed[0]["error"]
    assert send_reminders(engine, settings, now=due + timedelta(days=1)) == 0


def test_a_batch_rendered_before_another_run_stored_is_not_stored_twice(
    settings, engine, rally, applied
):
    with transaction(engine, write=False) as session:
        run = prepare(session, SLUG, public_url=settings.public_url)
        ids = select_members(session, run.campaign, ["maya.votes.pa"])
        stale = render_batch(session, run, ids, now=utcnow())
    assert generate(settings, engine, SLUG, handles=["maya.votes.pa"]).rendered == 1
    with transaction(engine) as session:
        report = store_batch(session, run, stale, actor="staff:test", send=False)
    assert report.rendered == 0
    assert [(p.handle, p.field) for p in report.failed] == [("maya.votes.pa", "version")]
    assert [b.version for b in briefs(engine)] == [1]


OVER_BUDGET = {  # creator -> what their part of a campaign's brief template does
    "maya.votes.pa": "{{ '%0900000000d' % 1 }}",
    "aaliyahbrooks": "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}",
    "sofi.on.campus": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}"
    "{% endfor %}",
}


@pytest.mark.slow
def test_a_brief_over_its_budget_names_the_creator_and_the_budget_and_spares_the_rest(
    rally, applied
):
    default = (BUILTIN_TEMPLATES / "brief.md.j2").read_text()
    branches = "".join(
        f"{{% if creator.handle == {handle!r} %}}{attack}{{% endif %}}"
        for handle, attack in OVER_BUDGET.items()
    )
    template_folder(applied, {"brief.md.j2": branches + default})
    assert rally("campaign", "apply", applied / "campaign.yaml").code == 0

    run = rally("briefs", "generate", SLUG)
    assert run.code == 1
    assert "47 new or updated, 0 unchanged, 3 failed" in run.out
    problems = [line.strip() for line in run.out.splitlines() if "@" in line]
    assert sorted(problems) == [
        "RenderBudgetExceeded: brief.md.j2: a width or precision above 1000 in % formatting: "
        "@maya.votes.pa",
        "RenderBudgetExceeded: brief.md.j2: macros or includes nested too deep (one calls "
        "itself?): @aaliyahbrooks",
        "RenderBudgetExceeded: brief.md.j2: rendering took longer than 2 s: @sofi.on.campus",
    ]
    assert "Traceback" not in run.out + run.err and "RecursionError" not in run.out + run.err
    status = {r["handle"]: r for r in json.loads(rally("briefs", "status", SLUG, "--json").out)}
    assert [h for h, row in status.items() if row["version"] is None] == sorted(OVER_BUDGET)
    assert sum(row["version"] == 1 for row in status.values()) == 47


def test_an_email_that_calls_itself_spares_its_brief_and_the_other_emails(
    settings, engine, rally, example
):
    again = "{% macro again() %}{{ again() }}{% endmacro %}"
    subject = again + "{% if creator.handle == 'maya.votes.pa' %}{{ again() }}{% endif %}Brief"
    template_folder(example, {"email_subject.txt.j2": subject})
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
    report = generate(settings, engine, SLUG, send=True)
    assert (report.rendered, report.queued) == (50, 49)
    (problem,) = report.failed
    assert (problem.handle, problem.field) == ("maya.votes.pa", "template")
    assert problem.message == (
        "email: RenderBudgetExceeded: email_subject.txt.j2: macros or includes nested too deep "
        "(one calls itself?)"
    )
