"""Settings: documented, derived sensibly, and secrets kept out of text."""

import re
from pathlib import Path

from config.settings import Settings, normalize_database_url

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?(RALLY_[A-Z_]+)=", text, re.M))
    fields = {f"RALLY_{name.upper()}" for name in Settings.model_fields}
    assert fields <= documented, f"add to .env.example: {sorted(fields - documented)}"


def test_the_default_store_is_sqlite_inside_rally_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", _env_file=None)
    assert settings.store_url == f"sqlite:///{tmp_path / 'home' / 'rally.db'}"
    assert settings.prefect_home == tmp_path / "home" / "prefect"
    assert settings.actor.startswith("cli:")


def test_plain_postgresql_urls_use_the_bundled_driver() -> None:
    assert normalize_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_store_url_is_hidden_when_settings_are_printed() -> None:
    settings = Settings(database_url="postgresql://rally:hunter2@db/rally", _env_file=None)
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
