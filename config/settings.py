"""Settings: one object read from the environment and `.env`, built on first use.

Every setting is named ``RALLY_<FIELD>`` in the environment; `.env.example` lists them.
"""

import getpass
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RALLY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(Path(".rally"), description="Folder for the local store, mail, exports")
    database_url: SecretStr = Field(
        SecretStr(""), description="SQLAlchemy URL of the store; empty means SQLite in home"
    )
    test_database_url: SecretStr = Field(
        SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        description="PostgreSQL server the tests create their throwaway databases on",
    )
    actor: str = Field("", description="Name recorded in the audit log for CLI changes")
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL creators and the public reach Rally at"
    )

    mail_from: str = Field(
        "Rally <rally@localhost>", description="From address of briefs and reminders"
    )
    smtp_host: str = Field("", description="SMTP server; empty writes mail to home/mailbox")
    smtp_port: int = Field(587, description="SMTP port (587 STARTTLS, 465 implicit TLS)")
    smtp_security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls, ssl (implicit TLS) or none (local relays only)"
    )
    smtp_username: str = Field("", description="SMTP login; empty sends without logging in")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password")
    smtp_ca_file: str = Field(
        "", description="CA bundle to trust for the SMTP server; empty uses the system's"
    )

    tiktok_client_key: str = Field("", description="TikTok app's client key (webhooks)")
    tiktok_client_secret: SecretStr = Field(
        SecretStr(""), description="TikTok app's client secret: signs its webhooks"
    )
    tiktok_api_url: str = Field(
        "https://business-api.tiktok.com/open_api/v1.3", description="TikTok API for Business"
    )
    tiktok_access_token: SecretStr = Field(
        SecretStr(""),
        description="TikTok Business access token; empty writes replies and DMs "
        "to home/outbox instead of sending them",
    )
    tiktok_business_id: str = Field("", description="The TikTok business account's id")

    sms_api_url: str = Field(
        "", description="SMS provider (Twilio-style API); empty writes texts to home/outbox"
    )
    sms_account_sid: str = Field("", description="SMS provider account id")
    sms_auth_token: SecretStr = Field(SecretStr(""), description="SMS provider auth token")
    sms_from: str = Field("", description="The number texts come from, E.164 (+12155550100)")

    hubspot_api_url: str = Field("https://api.hubapi.com", description="HubSpot API")
    hubspot_token: SecretStr = Field(SecretStr(""), description="HubSpot private app token")
    action_network_api_url: str = Field(
        "https://actionnetwork.org", description="Action Network API"
    )
    action_network_token: SecretStr = Field(
        SecretStr(""), description="Action Network API key (OSDI-API-Token)"
    )
    mobilize_api_url: str = Field("https://api.mobilize.us", description="Mobilize API")
    mobilize_token: SecretStr = Field(SecretStr(""), description="Mobilize API token")
    nationbuilder_api_url: str = Field(
        "", description="Your nation's NationBuilder URL (https://<nation>.nationbuilder.com)"
    )
    nationbuilder_token: SecretStr = Field(
        SecretStr(""), description="NationBuilder OAuth access token"
    )
    ngpvan_api_url: str = Field("https://api.securevan.com", description="NGP VAN API")
    ngpvan_app_name: str = Field("", description="NGP VAN application name")
    ngpvan_api_key: SecretStr = Field(SecretStr(""), description="NGP VAN API key")
    ngpvan_mode: int = Field(1, description="NGP VAN database: 0 MyVoters, 1 MyCampaign")
    lead_webhook_secret: SecretStr = Field(
        SecretStr(""), description="Signs lead webhooks (Rally-Signature header)"
    )
    outbox_lease_seconds: float = Field(
        300, description="How long a drain holds messages it took before others may take them"
    )

    @model_validator(mode="after")
    def _derive_defaults(self) -> "Settings":
        self.home = self.home.expanduser().resolve()
        if not self.database_url.get_secret_value():
            self.database_url = SecretStr(f"sqlite:///{self.home / 'rally.db'}")
        if not self.actor:
            self.actor = f"cli:{_login_name()}"
        self.public_url = self.public_url.rstrip("/")
        return self

    @property
    def store_url(self) -> str:
        return normalize_database_url(self.database_url.get_secret_value())

    @property
    def mailbox(self) -> Path:
        return self.home / "mailbox"

    @property
    def local_outbox(self) -> Path:
        """Where replies, DMs and texts are written when no provider is configured."""
        return self.home / "outbox"

    @property
    def exports(self) -> Path:
        """Where CSV and JSONL lead exports are written."""
        return self.home / "exports"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver Rally ships with."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (tests call `cache_clear()`)."""
    return Settings()


def use_rally_prefect_home(settings: Settings | None = None) -> Path:
    """Point Prefect at ``$RALLY_HOME/prefect`` unless the user already chose a PREFECT_HOME.

    Must run before `prefect` is imported: Prefect reads its home when it loads.
    """
    default = (settings or get_settings()).prefect_home
    home = Path(os.environ.setdefault("PREFECT_HOME", str(default)))
    # A fresh local home takes about 35 s to migrate on first start; Prefect gives up at 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # No usage telemetry from campaign machines (it also races the local server's SQLite).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    home.mkdir(parents=True, exist_ok=True)
    return home
