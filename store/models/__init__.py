"""Rally's data model: every table, in the order a campaign meets them.

campaign -> roster (creators) -> sprint plan -> briefs -> creatives and drafts -> policy findings
and review tasks -> engagement events -> contacts and consent -> follow-ups -> outbox ->
metric snapshots -> sprint runs and reports -> the payments ledger -> Spark Ads; timers and the
hash-chained audit log sit beside them all.

Conventions: times are aware UTC (`UTCDateTime`); money is integer cents; status and kind
columns are plain strings whose values are the `StrEnum`s beside them; free-form structure is JSON.

The tables live in one module per part of the sprint (campaigns, configs, review, engagement,
delivery, sprint, audit, api, money, amplification). `from store.models import Campaign` loads
only the module that defines it: a command that reads a campaign does not build the other
tables' classes, which would cost a short command most of its start-up. Whatever needs every
table (migrations, tests that compare the store with the models) calls `load_all()` first.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

MODULES: dict[str, tuple[str, ...]] = {
    "campaigns": (
        "Campaign",
        "Creator",
        "RosterStatus",
        "RosterMember",
        "SprintPhase",
        "MilestoneStatus",
        "Milestone",
    ),
    "configs": ("ConfigKind", "CampaignConfig"),
    "review": (
        "BriefCampaignInputs",
        "Brief",
        "CreativeStatus",
        "Creative",
        "CreativeDraft",
        "Severity",
        "PolicyFinding",
        "ReviewStatus",
        "ReviewTask",
        "ApproverCredential",
        "ReviewComment",
    ),
    "engagement": (
        "EngagementEvent",
        "Contact",
        "ConsentStatus",
        "ContactConsent",
        "ConsentRecord",
        "ConsentRequest",
        "FollowUpStatus",
        "FollowUp",
        "PollCursor",
        "TikTokAccount",
        "TikTokConversation",
    ),
    "delivery": ("OutboxStatus", "OutboxMessage", "RateWindow", "Timer"),
    "sprint": ("MetricSnapshot", "SprintState", "SprintRun", "SprintStep", "Report", "StaffRun"),
    "audit": ("AuditEvent", "AuditHead"),
    "api": ("ApiToken", "ApiIdempotencyKey", "WebhookSubscription"),
    "money": (
        "LedgerEntry",
        "PaymentApproval",
        "PayoutAccount",
        "Payout",
        "PayoutStatus",
        "TaxForm",
        "Contract",
    ),
    "amplification": (
        "SparkAuthorization",
        "SparkRequest",
        "BoostStatus",
        "Boost",
        "PaidMetrics",
    ),
}
_MODULE_OF = {name: module for module, names in MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'store.models' has no attribute {name!r}")
    value = getattr(import_module(f"store.models.{module}"), name)
    globals()[name] = value
    return value


def load_all() -> None:
    """Register every table on `SQLModel.metadata` (migrations and whole-store work need it)."""
    for module in MODULES:
        import_module(f"store.models.{module}")


if TYPE_CHECKING:  # the names, for type checkers; at run time __getattr__ loads them
    from store.models.amplification import *  # noqa: F403
    from store.models.api import *  # noqa: F403
    from store.models.audit import *  # noqa: F403
    from store.models.campaigns import *  # noqa: F403
    from store.models.configs import *  # noqa: F403
    from store.models.delivery import *  # noqa: F403
    from store.models.engagement import *  # noqa: F403
    from store.models.money import *  # noqa: F403
    from store.models.review import *  # noqa: F403
    from store.models.sprint import *  # noqa: F403
