"""Settings: one object read from the environment and `.env`, built on first use.

Every setting is named ``RALLY_<FIELD>`` in the environment; `.env.example` lists them. A module
may declare settings of its own beside its code (a lead destination's credentials, see
`integrations.crm.ConnectorSettings`): they are read the same way, through `Settings.section`.
"""

import getpass
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator


class RallySettings(BaseModel):
    """How every Rally setting is read: `<env_prefix><NAME>` (any case) from the environment,
    else from `.env` in the working folder (the environment wins), else, for a secret in a
    process running Prefect flows, from a Prefect Secret block (`prefect_secrets`). Values
    given as keyword arguments win over all three. The one way `.env` is read
    (`PrefectEnvironment` reads Prefect's own variables with it)."""

    model_config = ConfigDict(extra="ignore")
    env_prefix: ClassVar[str] = "RALLY_"

    @model_validator(mode="before")
    @classmethod
    def _read_environment(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        return cls.read_environment() | given

    @classmethod
    def read_environment(cls) -> dict[str, Any]:
        """This class's fields as the environment, `.env` and Prefect's secrets set them."""
        names = {f"{cls.env_prefix}{name}".lower(): name for name in cls.model_fields}
        found: dict[str, Any] = {}
        for variables in (os.environ, _dotenv()):
            for variable, value in variables.items():
                name = names.get(variable.lower())
                if name is not None and name not in found and value is not None:
                    found[name] = value
        secrets = [
            name
            for name, field in cls.model_fields.items()
            if field.annotation is SecretStr and name not in found
        ]
        return found | prefect_secrets(cls.env_prefix, secrets) if secrets else found


def _dotenv() -> dict[str, str | None]:
    """`.env` in the working folder, read with python-dotenv (loaded only when there is one)."""
    path = Path(".env")
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return dotenv_values(path, encoding="utf-8")


def prefect_secrets(prefix: str, names: list[str]) -> dict[str, str]:
    """Secrets kept as Prefect Secret blocks, for workers whose environment holds no
    credentials: the block `rally-smtp-password` sets `RALLY_SMTP_PASSWORD`, and so on (the
    variable's name, lowercase, dashes for underscores). Read only where Prefect is already
    loaded and an API is configured (a flow run on a worker)."""
    import sys

    if "prefect" not in sys.modules or prefect_choice().api_url is None:
        return {}
    blocks = _secret_blocks()
    wanted = {name: f"{prefix}{name}".lower().replace("_", "-") for name in names}
    return {name: blocks[block] for name, block in wanted.items() if block in blocks}


def _secret_blocks() -> dict[str, str]:
    """Every Secret block whose name starts with `rally-`, by name (one API call a process)."""
    global _blocks
    if _blocks is None:
        from prefect.blocks.system import Secret
        from prefect.client.orchestration import get_client

        try:
            with get_client(sync_client=True) as client:
                documents = client.read_block_documents_by_type("secret")
            _blocks = {
                str(doc.name): str(Secret.model_validate(doc.data).get())
                for doc in documents
                if doc.name and doc.name.startswith("rally-")
            }
        except Exception as exc:  # settings still load; the environment's values stand
            import warnings

            warnings.warn(f"Prefect Secret blocks not read: {type(exc).__name__}", stacklevel=2)
            _blocks = {}
    return _blocks


_blocks: dict[str, str] | None = None


SectionT = TypeVar("SectionT", bound=RallySettings)


class Settings(RallySettings):
    """Rally's own settings; a lead destination's credentials are its connector's section."""

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

    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Seals the secrets Rally keeps (TikTok tokens, webhook secrets); 32+ chars",
    )

    tiktok_client_key: str = Field(
        "", description="TikTok app's client key (its app id on the API for Business)"
    )
    tiktok_client_secret: SecretStr = Field(
        SecretStr(""), description="TikTok app's client secret: signs its webhooks"
    )
    tiktok_api_url: str = Field(
        "https://business-api.tiktok.com/open_api/v1.3", description="TikTok API for Business"
    )
    tiktok_redirect_uri: str = Field(
        "",
        description="The redirect URI registered for the TikTok app, where TikTok sends the "
        "code of `rally tiktok connect`",
    )

    sms_api_url: str = Field(
        "", description="SMS provider (Twilio-style API); empty writes texts to home/outbox"
    )
    sms_account_sid: str = Field("", description="SMS provider account id")
    sms_auth_token: SecretStr = Field(SecretStr(""), description="SMS provider auth token")
    sms_from: str = Field("", description="The number texts come from, E.164 (+12155550100)")

    api_requests_per_minute: int = Field(
        600, ge=1, description="Requests each API token may make a minute (per web process)"
    )
    api_reads_at_once: int = Field(
        4,
        ge=0,
        description="API reads a web process works on at a time, the others waiting their "
        "turn (0: no limit)",
    )
    api_kept_reads: int = Field(
        1000,
        ge=0,
        description="Answers to API reads a web process keeps, each given again to the same "
        "token for the same URL until the store changes (0: none kept)",
    )
    webhook_disable_after_hours: float = Field(
        72,
        gt=0,
        description="A webhook subscription whose receiver has failed this long without a "
        "success is disabled, and the campaign's staff are emailed",
    )
    outbox_lease_seconds: float = Field(
        30,
        gt=0,
        description="How long messages a drain took stay its own after it stops renewing "
        "them (it renews while it works): a crashed drain's messages go out this much later",
    )
    nec_threshold: float | None = Field(
        None,
        gt=0,
        description="The 1099-NEC threshold in USD for payment years after the last one Rally "
        "knows (2026's USD 2,000, indexed for inflation from 2027)",
    )
    _sections: dict[type[RallySettings], RallySettings] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _derive_defaults(self) -> "Settings":
        self.home = self.home.expanduser().resolve()
        if not self.database_url.get_secret_value():
            self.database_url = SecretStr(f"sqlite:///{self.home / 'rally.db'}")
        if not self.actor:
            self.actor = f"cli:{_login_name()}"
        self.public_url = self.public_url.rstrip("/")
        return self

    def section(self, kind: type[SectionT]) -> SectionT:
        """The settings a module declares beside its code, read like these on first use and
        kept with them, so one Settings object answers from one reading of the environment."""
        found = self._sections.get(kind)
        if not isinstance(found, kind):
            found = self._sections[kind] = kind()
        return found

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


class PrefectEnvironment(RallySettings):
    """Prefect's own variables that say which Prefect to use, read as Rally's are (the
    environment, else `.env`)."""

    env_prefix = "PREFECT_"

    api_url: str = ""
    home: str = ""
    profiles_path: str = ""
    profile: str = ""


@dataclass(frozen=True)
class PrefectChoice:
    """Which Prefect the user configured: `source` says where (None: nowhere, so Rally keeps
    Prefect's files in its own home), `api_url` is the server or Cloud workspace (None: a
    temporary local server per process)."""

    source: str | None = None
    api_url: str | None = None


def prefect_choice() -> PrefectChoice:
    """Read the way Prefect itself does, without importing it: the environment, then `.env`,
    then `prefect.toml` in the working folder, then the active profile."""
    given = PrefectEnvironment().model_dump()
    chosen = {f"PREFECT_{name.upper()}": value for name, value in given.items() if value}
    where = {name: "the environment" if os.environ.get(name) else ".env" for name in chosen}
    if "PREFECT_API_URL" in chosen:
        return PrefectChoice(
            f"PREFECT_API_URL in {where['PREFECT_API_URL']}", chosen["PREFECT_API_URL"]
        )
    toml = Path("prefect.toml")
    if toml.is_file():
        url = _toml(toml).get("api", {}).get("url")
        return PrefectChoice("prefect.toml", str(url) if url else None)
    home = Path(chosen.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles = Path(chosen.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    if profiles.is_file():
        data = _toml(profiles)
        active = chosen.get("PREFECT_PROFILE") or str(data.get("active") or "ephemeral")
        url = (data.get("profiles") or {}).get(active, {}).get("PREFECT_API_URL")
        if url:
            return PrefectChoice(f"profile {active!r} in {profiles}", str(url))
    if chosen:  # a home or profile of the user's own, with no API in it: a local server
        name = next(iter(chosen))
        return PrefectChoice(f"{name} in {where[name]}")
    return PrefectChoice()


def _toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return {}  # Prefect itself names a broken file when it reads it


def use_rally_prefect_home(settings: Settings | None = None) -> Path | None:
    """Point Prefect at ``$RALLY_HOME/prefect`` when the user has configured no Prefect of
    their own (`prefect_choice`); the home in use, or None when Prefect's own configuration
    decides.

    Must run before `prefect` is imported: Prefect reads its home when it loads.
    """
    # A fresh local home takes about 35 s to migrate on first start; Prefect gives up at 20 s.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # No usage telemetry from campaign machines (it also races the local server's SQLite).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if prefect_choice().source is not None:
        if chosen := os.environ.get("PREFECT_HOME"):  # Prefect creates only the last folder
            Path(chosen).expanduser().mkdir(parents=True, exist_ok=True)
        return None
    home = (settings or get_settings()).prefect_home
    os.environ["PREFECT_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    return home
