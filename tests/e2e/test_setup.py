"""Set-up as a newcomer meets it: `make demo`, `.env`, where Prefect keeps its files."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RALLY = Path(sys.executable).parent / "rally"


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no Rally or Prefect settings, a throwaway HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RALLY_", "PREFECT_"))}
    env["HOME"] = str(tmp_path / "user-home")
    return {**env, **extra}


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_store_commands_never_load_prefect_or_alembic(
    rally, example: Path, settings: Settings, tmp_path: Path
) -> None:
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
    probe = (
        "import sys, io, contextlib\n"
        "from cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['campaign', 'show', 'first-vote-pa-2027', '--json'])\n"
        "    except SystemExit as e: assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in ('prefect', 'alembic') if m in sys.modules))\n"
    )
    env = clean_env(tmp_path, RALLY_HOME=str(settings.home), RALLY_DATABASE_URL=settings.store_url)
    result = run([sys.executable, "-c", probe], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_applies_the_example_and_briefs_its_creators_then_changes_nothing(
    tmp_path: Path,
) -> None:
    home = tmp_path / "demo-home"
    env = clean_env(tmp_path, RALLY_HOME=str(home), COLUMNS="160")
    first = run(["make", "-s", "demo"], env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Campaign first-vote-pa-2027 (First Vote PA 2027): created" in first.stdout
    assert "50 added" in first.stdout and "Roster (50 creators)" in first.stdout
    assert "@maya.votes.pa" in first.stdout and "Keystone Youth Vote Fund" in first.stdout
    assert "50 new or updated, 0 unchanged, 0 failed, 50 queued to send." in first.stdout
    assert "Email: 50 sent" in first.stdout and len(list((home / "mailbox").glob("*.eml"))) == 50
    assert "0 with errors" in first.stdout and "Processed" in first.stdout
    new_events = re.search(r"([\d,]+) line\(s\): ([\d,]+) new event\(s\)", first.stdout)
    assert new_events and new_events[1] == new_events[2] and new_events[1] != "0"
    second = run(["make", "-s", "demo"], env)
    assert f"{new_events[1]} line(s): 0 new event(s), {new_events[1]} already stored" in (
        second.stdout
    )
    assert "Nothing changed: the store already matches these files." in second.stdout
    assert "0 new or updated, 50 unchanged, 0 failed, 0 queued to send." in second.stdout
    assert len(list((home / "mailbox").glob("*.eml"))) == 50
    assert (tmp_path / "demo-home" / "rally.db").exists()
    listing = run([str(RALLY), "campaign", "list", "--json"], env)
    assert [c["creators"] for c in json.loads(listing.stdout)] == [50]


def test_output_cut_short_by_the_reader_ends_quietly(
    rally, example: Path, settings: Settings, tmp_path: Path
) -> None:
    """As in `rally ... | head`: the reader is gone before the first write."""
    assert rally("campaign", "apply", example / "campaign.yaml").code == 0
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
