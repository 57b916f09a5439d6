"""What a campaign is applied with besides its file: its policy, follow-up rules and brief
templates, read from the campaign's folder (or Rally's built-ins) at apply and kept in the store
with their hash (`CampaignConfig`).

Runs read them from the store only, never from a folder: a file edited after apply changes
nothing until the campaign is applied again, which audits the change, and a worker on a machine
without the campaign's folder runs exactly what was applied. Each version is parsed once per
process (by its hash), so reading the store's copy costs a use no more than a dictionary lookup.

A campaign applied before Rally kept these (a store upgraded from revision 0007) has none: the
migration cannot read the campaign's folder, and a run must not guess from whatever folder its
own machine has, so a run that needs one stops with an error that names the campaign and says
to apply its file again. (Reading the folder at first use would bring back the very drift this
module removes, on whichever machine happened to run first.)
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlmodel import Session, select

from config.campaign import CampaignSpec
from config.campaign_file import CampaignFileError
from config.errors import RallyError
from config.followups import Followups, load_followups, parse_followups
from config.policy import Policy, load_policy, parse_policy
from store.models import Campaign, CampaignConfig, ConfigKind

if TYPE_CHECKING:  # imported where used: commands that only read a campaign never load Jinja
    from briefs.environment import BriefTemplates

BUILTIN = "default"
LABELS = {
    ConfigKind.POLICY: "policy",
    ConfigKind.FOLLOWUPS: "follow-up rules",
    ConfigKind.TEMPLATES: "brief templates",
}


@dataclass(frozen=True)
class Configs:
    """A campaign's policy, follow-up rules and templates as read from its files, checked."""

    policy: Policy
    followups: Followups
    templates: "BriefTemplates"
    sources: dict[ConfigKind, str]  # each as the campaign file names it

    def versions(self) -> dict[ConfigKind, tuple[str, dict[str, Any]]]:
        """Each kind's hash and the content the store keeps of it."""
        return {
            ConfigKind.POLICY: (self.policy.version, self.policy.spec.model_dump(mode="json")),
            ConfigKind.FOLLOWUPS: (
                self.followups.version,
                self.followups.spec.model_dump(mode="json"),
            ),
            ConfigKind.TEMPLATES: (self.templates.version, self.templates.sources),
        }


def read_configs(spec: CampaignSpec, base: Path, *, file: str) -> Configs:
    """Read what the campaign names (files relative to `base`, its folder, or built-in names).
    A mistake is named by its file (and line) now, before anything is applied."""
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SecurityError

    from briefs.environment import BriefTemplates, check_messages

    policy = load_policy(spec.policy, base=base)
    followups = load_followups(spec.followups, base=base)
    check_messages(followups)
    template = spec.brief.template
    try:
        templates = BriefTemplates.from_folder(None if template == BUILTIN else base / template)
        if templates.version not in _compiled:  # the same texts compile the same
            templates.check(sorted(templates.sources))
            if len(_compiled) < PARSED_LIMIT:
                _compiled.add(templates.version)
    except SecurityError as exc:
        raise CampaignFileError(file, [("brief.template", str(exc))]) from None
    except TemplateSyntaxError as exc:
        raise RallyError(f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None
    sources = {
        ConfigKind.POLICY: spec.policy,
        ConfigKind.FOLLOWUPS: spec.followups,
        ConfigKind.TEMPLATES: template,
    }
    return Configs(policy, followups, templates, sources)


def applied_with(campaign: Campaign, configs: Configs) -> bool:
    """Whether the campaign already points at exactly these versions."""
    versions = configs.versions().items()
    return all(getattr(campaign, f"{kind}_hash") == version for kind, (version, _) in versions)


def store_configs(
    session: Session, campaign: Campaign, configs: Configs
) -> dict[str, list[str | None]]:
    """Point the campaign at these versions, keeping each one it has not had before; returns
    the hashes that changed as {"policy_hash": [old, new], ...} (nothing: all as they were)."""
    assert campaign.id is not None
    changed: dict[str, list[str | None]] = {}
    for kind, (version, content) in configs.versions().items():
        column = f"{kind}_hash"
        old = getattr(campaign, column)
        if old == version:
            continue
        if _row(session, campaign, kind, version) is None:
            session.add(
                CampaignConfig(
                    campaign_id=campaign.id,
                    kind=kind,
                    hash=version,
                    source=configs.sources[kind],
                    content=content,
                )
            )
        setattr(campaign, column, version)
        changed[column] = [old, version]
    return changed


# --- reading --------------------------------------------------------------------------------

T = TypeVar("T", Policy, Followups, "BriefTemplates")
_parsed: dict[tuple[str, str], Any] = {}  # (kind, hash) -> parsed: three for each campaign
_compiled: set[str] = set()  # versions of template sets that compiled (`read_configs`)
PARSED_LIMIT = 300


def campaign_policy(session: Session, campaign: Campaign) -> Policy:
    """The policy the campaign was applied with."""
    return _stored(session, campaign, ConfigKind.POLICY, lambda c, s: parse_policy(c, file=s))


def campaign_followups(session: Session, campaign: Campaign) -> Followups:
    """The follow-up rules the campaign was applied with."""
    return _stored(session, campaign, ConfigKind.FOLLOWUPS, lambda c, s: parse_followups(c, file=s))


def stored_templates(session: Session, campaign: Campaign) -> "BriefTemplates":
    """The brief templates the campaign was applied with (each compiled when first used)."""
    from briefs.environment import BriefTemplates

    return _stored(session, campaign, ConfigKind.TEMPLATES, lambda c, _: BriefTemplates(c))


def _stored(
    session: Session,
    campaign: Campaign,
    kind: ConfigKind,
    parse: Callable[[dict[str, Any], str], T],
) -> T:
    version = getattr(campaign, f"{kind}_hash")
    if version is None:
        file = campaign.source_path or "<its campaign.yaml>"
        raise RallyError(
            f"campaign {campaign.slug} was applied before Rally kept its {LABELS[kind]} in the "
            f"store: run `rally campaign apply {file}` again"
        )
    parsed = _parsed.get((kind, version))
    if parsed is None:
        row = _row(session, campaign, kind, version)
        if row is None:
            raise RallyError(f"campaign {campaign.slug}: no stored {LABELS[kind]} {version}")
        parsed = parse(row.content, row.source)
        if parsed.version != version:
            raise RallyError(
                f"campaign {campaign.slug}: its stored {kind} {version} does not match its "
                "hash (changed in the store after apply): apply the campaign again"
            )
        if len(_parsed) >= PARSED_LIMIT:
            _parsed.clear()
        _parsed[kind, version] = parsed
    return parsed


def _row(
    session: Session, campaign: Campaign, kind: ConfigKind, version: str
) -> CampaignConfig | None:
    return session.exec(
        select(CampaignConfig).where(
            CampaignConfig.campaign_id == campaign.id,
            CampaignConfig.kind == kind,
            CampaignConfig.hash == version,
        )
    ).first()
