"""Settings: documented, derived sensibly, read from `.env` and the environment (Rally's own
and each lead destination's), and secrets kept out of text."""

import re
from pathlib import Path

import pytest

from config.settings import Settings, normalize_database_url
from integrations.destinations import DESTINATIONS
from integrations.hubspot import HubSpotSettings
from integrations.ngpvan import NgpVanSettings
from integrations.paypal import PayPalSettings
from integrations.stripe import StripeSettings
from integrations.tiktok_ads import TikTokAdsSettings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?(RALLY_[A-Z_]+)=", text, re.M))
    fields = {f"RALLY_{name.upper()}" for name in Settings.model_fields}
    fields |= {name for kind in DESTINATIONS.values() for name in kind.settings.variables()}
    for section in (StripeSettings, PayPalSettings, TikTokAdsSettings):
        fields |= {f"{section.env_prefix}{name}".upper() for name in section.model_fields}
    assert fields <= documented, f"add to .env.example: {sorted(fields - documented)}"


def test_a_destinations_settings_come_from_dotenv_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "RALLY_HUBSPOT_TOKEN=from-dotenv\nRALLY_HUBSPOT_API_URL=http://dotenv.test\n"
        "RALLY_NGPVAN_APP_NAME=rally\nRALLY_NGPVAN_MODE=0\n"
    )
    monkeypatch.chdir(tmp_path)
    for kind in (HubSpotSettings, NgpVanSettings):
        for name in kind.variables():
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RALLY_HUBSPOT_API_URL", "http://environment.test")
    settings = Settings()
    hubspot = settings.section(HubSpotSettings)
    assert hubspot.arguments() == {"api_url": "http://environment.test", "token": "from-dotenv"}
    assert hubspot.missing() == [] and settings.section(HubSpotSettings) is hubspot
    ngpvan = settings.section(NgpVanSettings)
    assert (ngpvan.app_name, ngpvan.mode) == ("rally", 0)
    assert ngpvan.missing() == ["RALLY_NGPVAN_API_KEY"]
    assert "from-dotenv" not in repr(hubspot)


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


@pytest.mark.parametrize(
    ("public_url", "host", "port", "says"),
    [
        ("", "127.0.0.1", 8000, "RALLY_PUBLIC_URL is empty"),
        ("rally.example.org", "127.0.0.1", 8000, "is not a web address"),
        ("http://127.0.0.1:8000", "127.0.0.1", 9000, "listens on port 9000"),
        ("http://localhost:8000", "0.0.0.0", 8000, "only this machine can open"),
    ],
)
def test_serve_warns_when_links_would_not_reach_it(public_url, host, port, says):
    from cli.serve import public_url_warnings

    (warning,) = public_url_warnings(public_url, host, port)
    assert says in warning


@pytest.mark.parametrize(
    ("public_url", "host", "port"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1", 8000),
        ("https://rally.example.org", "0.0.0.0", 8000),  # behind a proxy on another port
        ("http://[::1]:8080", "::1", 8080),
    ],
)
def test_serve_says_nothing_when_links_reach_it(public_url, host, port):
    from cli.serve import public_url_warnings

    assert public_url_warnings(public_url, host, port) == []


def test_a_bad_setting_is_named_as_it_was_set_and_its_value_not_shown(
    monkeypatch, tmp_path, capsys
):
    from cli.main import describe, main
    from config.settings import get_settings
    from integrations.s3 import BucketSettings

    monkeypatch.setenv("RALLY_HOME", str(tmp_path))
    monkeypatch.setenv("RALLY_SMTP_PORT", "abc")
    get_settings.cache_clear()
    with pytest.raises(SystemExit):
        main(["campaign", "list"])
    err = capsys.readouterr().err
    get_settings.cache_clear()
    assert "error: setting RALLY_SMTP_PORT: Input should be a valid integer" in err
    assert "abc" not in err and "pydantic" not in err

    monkeypatch.setenv("RALLY_S3_LINK_MINUTES", "0")  # a section's settings, read on first use
    with pytest.raises(ValueError) as refused:
        BucketSettings()
    said = describe(refused.value)
    assert said == "setting RALLY_S3_LINK_MINUTES: Input should be greater than or equal to 1"
