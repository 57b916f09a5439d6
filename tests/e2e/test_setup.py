"""Set-up as a newcomer meets it: `make demo`, `.env`, where Prefect keeps its files."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings
from store.db import engine_for, transaction
from tasks.sprint.state import summary as sprint_summary

pytestmark = pytest.mark.slow  # every test here starts a process, as a newcomer would

ROOT = Path(__file__).resolve().parents[2]
RALLY = Path(sys.executable).parent / "rally"
SLUG = "first-vote-pa-2027"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no Rally or Prefect settings, a throwaway HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RALLY_", "PREFECT_"))}
    env["HOME"] = str(tmp_path / "user-home")
    return {**env, **extra}


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_store_commands_never_load_prefect_alembic_or_http_clients(
    applied: Path, settings: Settings, tmp_path: Path
) -> None:
    probe = (
        "import sys, io, contextlib\n"
        "from cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['campaign', 'show', 'first-vote-pa-2027', '--json'])\n"
        "    except SystemExit as e: assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in ('prefect', 'alembic', 'httpx') if m in sys.modules))\n"
    )
    env = clean_env(tmp_path, RALLY_HOME=str(settings.home), RALLY_DATABASE_URL=settings.store_url)
    result = run([sys.executable, "-c", probe], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_flow_that_fails_is_one_line_with_no_sql_or_personal_data(
    applied: Path, settings: Settings, tmp_path: Path, local_prefect: str
) -> None:
    probe = (  # the store fails under the flow's first task, as a full disk would
        "import sys, sqlalchemy.exc, tasks.briefs.generate as generate\n"
        "def broken(*args, **kwargs):\n"
        "    raise sqlalchemy.exc.OperationalError(\n"
        "        'SELECT email FROM creators WHERE email = ?', ('ana@example.org',),\n"
        "        Exception('disk I/O error'))\n"
        "generate.render_batch = broken\n"
        "from cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    (tmp_path / "user-home").mkdir()
    env = clean_env(
        tmp_path,
        RALLY_HOME=str(settings.home),
        RALLY_DATABASE_URL=settings.store_url,
        PREFECT_API_URL=local_prefect,  # the suite's server, rather than one started per run
    )
    result = run([sys.executable, "-c", probe, "briefs", "generate", SLUG], env)
    assert result.returncode == 1
    assert result.stderr == "error: database error: disk I/O error (run with --debug for details)\n"
    debugged = run([sys.executable, "-c", probe, "--debug", "briefs", "generate", SLUG], env)
    assert "Task run failed" in debugged.stderr  # --debug still shows Prefect's logs


def test_help_and_version_load_no_store_and_list_every_command_as_it_describes_itself(
    tmp_path: Path,
) -> None:
    probe = (
        "import sys, io, contextlib\n"
        "from cli.main import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try: main(argv)\n"
        "        except SystemExit as e: assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in ('sqlalchemy', 'sqlmodel', 'prefect', 'httpx', 'config.settings')"
        " if m in sys.modules))\n"
    )
    result = run([sys.executable, "-c", probe], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

    from cli.main import COMMANDS, LazyCommand

    for name, (target, help_text) in COMMANDS.items():
        loaded = LazyCommand(name, target, help_text).load()
        assert loaded.name == name
        assert " ".join((loaded.help or "").split()).startswith(help_text.rstrip(".")), name


def test_settings_come_from_dotenv_and_the_environment_wins(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(
        "RALLY_PUBLIC_URL=https://rally.example.org/\nRALLY_ACTOR=staff:dotenv\n"
    )
    env = clean_env(tmp_path, RALLY_ACTOR="staff:shell")
    code = (
        "from config.settings import get_settings\n"
        "s = get_settings()\n"
        "print(s.public_url, s.actor, s.home)"
    )
    result = run([sys.executable, "-c", code], env, cwd=project)
    assert result.stdout.split() == [
        "https://rally.example.org",
        "staff:shell",
        str(project / ".rally"),
    ]


def test_secrets_in_the_store_url_are_never_printed(tmp_path: Path) -> None:
    env = clean_env(tmp_path, RALLY_DATABASE_URL="postgresql://rally:hunter2@127.0.0.1:1/rally")
    result = run([str(RALLY), "db", "status"], env, cwd=tmp_path)
    assert result.returncode == 1
    assert "rally:***@127.0.0.1:1/rally" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_prefect_keeps_its_files_under_rally_home_unless_told_otherwise(tmp_path: Path) -> None:
    code = (
        "import flows\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().home)"
    )
    rally_home = tmp_path / "rally-home"
    result = run([sys.executable, "-c", code], clean_env(tmp_path, RALLY_HOME=str(rally_home)))
    assert result.stdout.strip() == str(rally_home / "prefect"), result.stderr
    assert not (tmp_path / "user-home" / ".prefect").exists()
    chosen = tmp_path / "my-prefect"
    result = run([sys.executable, "-c", code], clean_env(tmp_path, PREFECT_HOME=str(chosen)))
    assert result.stdout.strip() == str(chosen), result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_rehearses_the_sprint_and_its_summary_agrees_with_the_store(
    tmp_path: Path, browser, migrated_prefect
) -> None:
    home = tmp_path / "home"
    # Prefect's local home as any first run leaves it: migrated (which costs 10 to 30
    # CPU-seconds once, and is tested wherever the suite first starts Prefect).
    migrated_prefect(home / "prefect")
    env = clean_env(tmp_path, RALLY_HOME=str(home), COLUMNS="200")
    shown = run(["make", "-s", "demo"], env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Campaign first-vote-pa-2027 (First Vote PA 2027): created" in shown.stdout
    assert "Sprint of first-vote-pa-2027 (rehearsal, seed 7): 12 week(s), 50 creators" in (
        shown.stdout
    )
    report = home / "demo" / "reports" / "first-vote-pa-2027" / "week-12" / "report.html"
    assert report.exists() and "Report: " in shown.stdout

    # The summary `rally demo --json` prints, read from the demo's store: the human summary
    # said what it says. (That a seed gives the same sprint every time is tested in
    # test_deployments, a rehearsal through deployments against an embedded one.)
    engine = engine_for(f"sqlite:///{home / 'demo' / 'rally.db'}")
    with transaction(engine, write=False) as session:
        summary = sprint_summary(session, SLUG)
    engine.dispose()
    events = ", ".join(f"{k} {v:,}" for k, v in summary["events"].items())
    assert f"Events: {events}" in shown.stdout
    assert f"Leads synced: {summary['leads_synced']}" in shown.stdout
    assert f"Audit chain: {summary['audit']['entries']} entries, verified" in shown.stdout
    assert summary["audit"]["verified"] and summary["weeks_done"] == 12

    db = sqlite3.connect(home / "demo" / "rally.db")
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    assert summary["briefs"] == {
        "generated": one("SELECT count(*) FROM briefs"),
        "sent": one("SELECT count(*) FROM briefs WHERE sent_at IS NOT NULL"),
        "acknowledged": one("SELECT count(*) FROM briefs WHERE acknowledged_at IS NOT NULL"),
    }
    assert summary["drafts"] == one("SELECT count(*) FROM creative_drafts") > 150
    # What creators earned and were paid (simulated staff approve, payouts go to the
    # rehearsal's folder), as the ledger holds it; its lines balance.
    money = summary["payments"]
    earned, paid = money["earned_cents"] / 100, money["paid_cents"] / 100
    assert (
        f"Payments: {earned:,.2f} USD earned by {money['creators']} creators, {paid:,.2f} paid"
        in (shown.stdout)
    )
    assert money["earned_cents"] == one("SELECT sum(amount_cents) FROM ledger_entries "
                                        "WHERE account = 'fees'") > 0  # fmt: skip
    assert money["paid_cents"] == -one("SELECT sum(amount_cents) FROM ledger_entries "
                                       "WHERE account = 'paid'") > 0  # fmt: skip
    payouts = list((home / "demo" / "payouts").glob("rally-payout-*.json"))
    assert len(payouts) == one("SELECT count(*) FROM payouts WHERE status = 'paid'")
    assert sum(json.loads(p.read_text())["amount_cents"] for p in payouts) == money["paid_cents"]
    assert one("SELECT sum(amount_cents) FROM ledger_entries") == 0
    # Each creator signed their contract when they acknowledged their brief.
    contracts = summary["contracts"]
    assert contracts["signed"] == one("SELECT count(*) FROM contracts WHERE signed_at IS NOT NULL")
    assert (
        f"Contracts: {contracts['offered']} offered, {contracts['signed']} signed" in shown.stdout
    )
    assert contracts["signed"] == summary["briefs"]["acknowledged"] > 0
    reviews = db.execute(
        "SELECT tier || ': ' || status, count(*) FROM review_tasks "
        "WHERE decided_at IS NOT NULL GROUP BY 1"
    ).fetchall()
    assert summary["reviews"] == dict(reviews) and summary["reviews"]["legal: approved"] > 0
    findings = db.execute(
        "SELECT rule_id, count(*) FROM policy_findings WHERE passed = 0 GROUP BY 1"
    ).fetchall()
    assert summary["findings"] == dict(findings) and "sponsorship_disclosure" in summary["findings"]
    by_type = db.execute("SELECT type, count(*) FROM engagement_events GROUP BY 1").fetchall()
    assert summary["events"] == dict(by_type)
    statuses = db.execute("SELECT status, count(*) FROM followups GROUP BY 1").fetchall()
    assert summary["followups"] == dict(statuses) and summary["followups"]["sent"] > 0
    assert sum(summary["withheld"].values()) == summary["followups"]["withheld"]
    assert summary["withheld"]["holdout"] > 0
    assert summary["leads_synced"] == one(
        "SELECT count(DISTINCT subject_id) FROM outbox WHERE channel = 'lead' AND status = 'sent'"
    )
    exported = (home / "demo" / "exports").rglob("*.csv")
    assert sum(len(f.read_text().splitlines()) - 1 for f in exported) == summary["leads_synced"]
    assert summary["audit"]["entries"] == one("SELECT count(*) FROM audit_events")
    weeks = db.execute("SELECT week FROM reports ORDER BY week").fetchall()
    assert [w for (w,) in weeks] == list(range(1, 13))  # every week's report in the store too
    # The rehearsal ran the live sprint's calendar: every step once, at its own moment, the
    # go-ahead given by a simulated staff member.
    steps = db.execute("SELECT key, status, due_at, done_at, go_ahead_by FROM sprint_steps")
    rows = {key: rest for key, *rest in steps.fetchall()}
    assert len(rows) == 1 + 11 + 12 + 2 + 7 + 3  # briefs, later briefs, closes, drafts, posting,
    # milestone prompts
    assert all(status == "done" and due == done for status, due, done, _ in rows.values())
    assert rows["briefs"][3] == "dana.okafor@keystoneyouthvote.example.org"
    digests = one("SELECT count(*) FROM outbox WHERE idempotency_key LIKE 'sprint:%:close-w%'")
    assert digests == 12 * 2  # a digest a week to each of the two staff

    page = browser.new_page()
    page.goto(report.as_uri())
    assert "First Vote PA 2027" in page.title() + page.inner_text("h1")
    assert page.locator("svg").count() >= 3
    page.close()


def test_the_second_example_rehearses_a_creator_program_with_paid_beside_organic(
    tmp_path: Path, browser, migrated_prefect
) -> None:
    """`rally demo --example river-week`: a nonprofit's creator program, not political, whose
    simulated staff boost the posts worth it in the amplification weeks; the summary and the
    report show what the boosts spent beside the posts' organic runs."""
    home = tmp_path / "home"
    migrated_prefect(home / "prefect")
    env = clean_env(tmp_path, RALLY_HOME=str(home), COLUMNS="200")
    shown = run([str(RALLY), "demo", "--example", "river-week"], env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Sprint of river-week-2027 (rehearsal, seed 7): 12 week(s), 20 creators" in shown.stdout
    db = sqlite3.connect(home / "demo" / "rally.db")
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    boosts, spend, conversions = (
        one("SELECT count(*) FROM boosts"),
        one("SELECT sum(spend_cents) FROM paid_metrics"),
        one("SELECT sum(conversions) FROM paid_metrics"),
    )
    assert boosts > 0 and one("SELECT count(*) FROM spark_authorizations") == boosts
    # Each boosted post passed legal review as a paid placement, and is still up as posted.
    assert one("SELECT count(*) FROM boosts b JOIN creatives c ON c.id = b.creative_id "
               "JOIN creative_drafts d ON d.creative_id = c.id AND d.version = c.current_version "
               "JOIN review_tasks t ON t.draft_id = d.id AND t.tier = 'legal' "
               "WHERE d.paid AND d.status = 'approved' AND t.status = 'approved' "
               "AND c.status IN ('posted', 'taken_down')") == boosts  # fmt: skip
    assert (
        f"Boosts: {boosts}, {spend / 100:,.2f} USD spent for {conversions:,} conversions"
        in shown.stdout
    )
    # Each boost's days, one row a day, none past the end of its creator's authorization.
    assert one("SELECT count(*) FROM paid_metrics p JOIN boosts b ON b.id = p.boost_id "
               "WHERE p.day > b.ends_on") == 0  # fmt: skip
    assert one("SELECT count(*) FROM (SELECT boost_id, day FROM paid_metrics "
               "GROUP BY 1, 2 HAVING count(*) > 1)") == 0  # fmt: skip
    # The leads wait for HubSpot, which is not configured here, and the summary says so.
    assert "waiting for hubspot" in shown.stdout
    report = home / "demo" / "reports" / "river-week-2027" / "week-12" / "report.html"
    page = browser.new_page()
    page.goto(report.as_uri())
    paid = page.inner_text("#paid")
    assert "Paid beside organic" in paid and f"${spend / 100:,.2f}" in paid
    assert page.locator("#paid tbody tr").count() == boosts
    assert "Spark Ads boosts, from TikTok's paid figures" in page.inner_text("#kpis")
    page.close()


def test_output_cut_short_by_the_reader_ends_quietly(
    applied: Path, settings: Settings, tmp_path: Path
) -> None:
    """As in `rally ... | head`: the reader is gone before the first write."""
    env = clean_env(tmp_path, RALLY_HOME=str(settings.home), RALLY_DATABASE_URL=settings.store_url)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        args = [str(RALLY), "creators", "list", "first-vote-pa-2027", "--json"]
        result = subprocess.run(
            args, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (1, ""), "no traceback, no error line"
