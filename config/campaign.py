"""Campaign as code: the schema of `campaign.yaml` (loaded by `config.campaign_file`)."""

import hashlib
import json
import re
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# --- field types ----------------------------------------------------------------------------


def _rate(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError("must be between 0 and 1")
    return value


def _slug(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,63}", value):
        raise ValueError("must be 2-64 lowercase letters, digits and dashes")
    return value


def _identifier(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,47}", value):
        raise ValueError(
            "must be lowercase letters, digits and underscores, starting with a letter"
        )
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as America/New_York)"
        ) from None
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be a full http(s) URL")
    return value


def _hashtag(value: str) -> str:
    if not re.fullmatch(r"#\w+", value):
        raise ValueError("must start with # and contain only letters, digits and underscores")
    return value


def _email(value: str) -> str:
    if not re.fullmatch(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+", value):
        raise ValueError("must be an email address")
    return value.lower()


def _length(value: str) -> str:
    if not re.fullmatch(r"\d+(-\d+)?\s*s", value):
        raise ValueError("must be seconds such as '15-30s' or '60s'")
    return value


Rate = Annotated[float, AfterValidator(_rate)]
Email = Annotated[str, AfterValidator(_email)]
Money = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Slug = Annotated[str, AfterValidator(_slug)]
Identifier = Annotated[str, AfterValidator(_identifier)]
Text = Annotated[str, Field(min_length=1)]
Week = Annotated[int, Field(ge=1, le=52)]


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, frozen=True, allow_inf_nan=False
    )


# --- the campaign file ----------------------------------------------------------------------


class Committee(Model):
    name: Text
    paid_for_by: Text


class PhaseSpec(Model):
    key: Identifier
    name: Text
    first_week: Week
    last_week: Week


class MilestoneSpec(Model):
    key: Identifier
    name: Text
    week: Week
    check: Identifier = "manual"
    params: dict[str, Any] = {}
    owner: Email | None = None  # who is asked to mark a manual milestone (else the staff)


class Sprint(Model):
    # a sprint's own dates and what follows it (retention, reports) stay within the calendar
    start: Annotated[date, Field(ge=date(2000, 1, 1), le=date(2999, 12, 31))]
    weeks: Week = 12
    phases: list[PhaseSpec] | None = None
    milestones: list[MilestoneSpec] | None = None


class Kpis(Model):
    """Targets; any may be left out. Rates are fractions (0.06 is 6%), money is per result."""

    views: Annotated[int, Field(ge=0)] | None = None
    engagement_rate: Rate | None = None
    watch_through_rate: Rate | None = None
    click_through_rate: Rate | None = None
    conversion_rate: Rate | None = None
    signups: Annotated[int, Field(ge=0)] | None = None
    cpa: Money | None = None
    cost_per_engaged_user: Money | None = None


class BudgetSplit(Model):
    creators: Share = 0
    paid: Share = 0
    production: Share = 0
    tools: Share = 0


class Budget(Model):
    total: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    split: BudgetSplit


class PaymentSplit(Model):
    """A share of each deliverable's fee, earned when the deliverable is approved, or posted
    and still up `live_days` later."""

    on: Literal["approved", "posted"]
    share: Annotated[float, Field(gt=0, le=1)]
    live_days: Annotated[int, Field(ge=0, le=365)] = 0

    @model_validator(mode="after")
    def _live_days_for_posts(self) -> "PaymentSplit":
        if self.on == "approved" and self.live_days:
            raise ValueError("live_days: only a split `on: posted` waits for the post to stay up")
        return self


class SignupBonus(Model):
    """So much per signup a creator brought, up to `cap`."""

    per_signup: Annotated[float, Field(gt=0)]
    cap: Annotated[float, Field(gt=0)]


class FecFiling(Model):
    """How the committee reports creators' payments to the FEC as itemized disbursements
    (Schedule B): its FEC id, the form line (`SB17` on a candidate committee's Form 3, `SB21B`
    for a PAC's operating expenditures on Form 3X), the election, and the purpose and category
    each line carries. A candidate committee aggregates a payee's payments per election cycle,
    from `cycle_starts` (the day after the previous general election for the seat); a PAC per
    calendar year."""

    committee_id: Annotated[str, Field(pattern=r"^C\d{8}$")]
    form_type: Literal["SB17", "SB21B"] = "SB21B"
    election_code: Annotated[str, Field(pattern=r"^[GPRSCEO]\d{4}$")] | None = None
    cycle_starts: date | None = None
    purpose: Annotated[str, Field(min_length=1, max_length=100)] = (
        "Online advertising: creator content"
    )
    category: Literal[
        "001", "002", "003", "004", "005", "006", "007", "008", "009", "010", "011", "012"
    ] = "004"

    @model_validator(mode="after")
    def _cycle_for_candidates(self) -> "FecFiling":
        if self.form_type == "SB17" and self.cycle_starts is None:
            raise ValueError(
                "cycle_starts: a candidate committee (SB17) aggregates per election cycle; "
                "give the day after the previous general election for the seat"
            )
        if self.form_type == "SB21B" and self.cycle_starts is not None:
            raise ValueError("cycle_starts: a PAC (SB21B) aggregates per calendar year")
        return self


class Agency(Model):
    """A talent agency or management company some creators are paid through: the payee of
    their payouts, itemized with a memo entry for each creator it paid (the ultimate payee)."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    street: Annotated[str, Field(min_length=1, max_length=34)]
    street2: Annotated[str, Field(max_length=34)] | None = None
    city: Annotated[str, Field(min_length=1, max_length=30)]
    state: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    zip: Annotated[str, Field(pattern=r"^\d{5}(-?\d{4})?$")]


class Payments(Model):
    """How a creator's fee (their roster rate, else their tier's) is earned: split evenly over
    the brief's deliverables, each deliverable's part in `splits` (shares adding up to 1).
    What a creator is owed is paid once staff approve it: two different people for an amount
    of `second_approval_from` or more (in the budget's currency; none: one person always).
    A creator whose remaining deliverables the campaign cancels earns `kill_fee`, a share of
    each of their fees (none: the terms have no kill fee). A roster's `agency` column names one
    of `agencies` for a creator paid through it. `payer` names who pays the creators (a legal
    name or tax id) where one store serves more than one: each payer's 1099-NEC totals are
    its own; by default the FEC committee (`fec.committee_id`), else the store's one payer."""

    splits: Annotated[list[PaymentSplit], Field(min_length=1, max_length=2)] = [
        PaymentSplit(on="approved", share=0.5),
        PaymentSplit(on="posted", share=0.5, live_days=7),
    ]
    signup_bonus: SignupBonus | None = None
    second_approval_from: Annotated[float, Field(ge=0)] | None = 1000.0
    kill_fee: Annotated[float, Field(gt=0, le=1)] | None = None
    fec: FecFiling | None = None
    payer: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    agencies: dict[Identifier, Agency] = {}

    @model_validator(mode="after")
    def _whole_fee(self) -> "Payments":
        total = sum(split.share for split in self.splits)
        if abs(total - 1) > 1e-9:
            raise ValueError(f"splits: the shares add up to {total:g}, not 1")
        kinds = [split.on for split in self.splits]
        if len(set(kinds)) != len(kinds):
            raise ValueError("splits: one split per `on`")
        return self


class Amplification(Model):
    """Spark Ads: paid reach behind creators' posts that work, with each creator's
    authorization, through the campaign's TikTok ad account (`advertiser_id`). `budget` caps
    the paid spend over the campaign (in the budget's currency); each boost spends at most
    `daily_budget` a day (`rally boost start --daily` may set less). A post is worth boosting
    with at least `min_views` views and an engagement and conversion rate each at least
    `above_median` times the campaign's median.
    TikTok allows no paid political content: a political campaign is refused by its policy."""

    advertiser_id: Annotated[str, Field(pattern=r"^\d{6,20}$")]
    budget: Money
    daily_budget: Annotated[float, Field(ge=20)] = 50.0  # TikTok's least for an ad group
    min_views: Annotated[int, Field(ge=0)] = 1000
    above_median: Annotated[float, Field(ge=1)] = 1.5


class Segment(Model):
    id: Identifier
    name: Text
    description: str = ""
    benchmarks: Kpis = Kpis()


class Tier(Model):
    rate: Money
    description: str = ""


class Deliverables(Model):
    count: Annotated[int, Field(ge=1, le=100)] = 3
    length: Annotated[str, AfterValidator(_length)] = "15-30s"
    format: Text = "vertical video, 9:16"


DEFAULT_GUIDELINES = (
    "Hook the viewer in the first 3 seconds.",
    "Use a trending sound where it fits the message.",
    "Keep it personal and unpolished: user-generated style, in your own words.",
    "End with one clear call to action.",
)


class BriefSpec(Model):
    template: Text = "default"
    key_message: Text
    call_to_action: Text
    hashtags: list[Annotated[str, AfterValidator(_hashtag)]] = []
    guidelines: list[Text] = list(DEFAULT_GUIDELINES)
    deliverables: Deliverables = Deliverables()
    draft_due_week: Week = 3
    posting_weeks: tuple[Week, Week] = (4, 9)
    reminder_after_days: Annotated[int, Field(ge=0, le=60)] = 3  # 0: no reminder
    draft_reminder_days: Annotated[int, Field(ge=0, le=14)] = 2  # before drafts are due; 0: none


class Tracking(Model):
    landing_url: Annotated[str, AfterValidator(_web_url)]
    utm_medium: Text = "creator"


LEAD_FIELDS = (
    "email",
    "phone",
    "given_name",
    "family_name",
    "postal_code",
    "source_code",
    "first_source_code",
    "creator",
    "segment",
    "campaign",
    "tags",
    "first_seen",
)
TagSource = Literal["source", "segment", "creator"]


def _lead_mapping(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(LEAD_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown lead field(s) {', '.join(unknown)}; known: {', '.join(LEAD_FIELDS)}"
        )
    return value


class RateSpec(Model):
    requests: Annotated[int, Field(ge=1)]
    per_seconds: Annotated[float, Field(gt=0)]


class Destination(Model):
    """Where leads go. `mapping` names the remote field for a Rally lead field (custom fields);
    `tags` go on every lead, beside the tags the rules gave and those `tag_by` derives."""

    name: Identifier
    type: Identifier  # one of `integrations.destinations.DESTINATIONS`, checked when applied
    enabled: bool = True
    mapping: Annotated[dict[str, str], AfterValidator(_lead_mapping)] = {}
    tags: list[Text] = []
    tag_by: list[TagSource] = []
    batch_size: Annotated[int, Field(ge=1, le=10_000)] | None = None
    rate: RateSpec | None = None
    in_flight: Annotated[int, Field(ge=1, le=16)] | None = None  # calls at once; see sync
    options: dict[str, Any] = {}


class HoldoutSpec(Model):
    """A share of creators drawn at random when the sprint starts, whose audiences get no
    follow-ups: the report measures the follow-ups' lift against them."""

    share: Annotated[float, Field(gt=0, lt=1)] = 0.1


class SignupLimits(Model):
    """How many signups the page takes before it answers "too many" (429)."""

    per_client: Annotated[int, Field(ge=1, le=10_000)] = 5  # from one network address, 10 min
    per_address: Annotated[int, Field(ge=1, le=100)] = 3  # for one email or phone, a day


class NextStep(Model):
    """The one thing a person who just signed up should do next, as a button: its words and
    where it goes (registering to vote, say)."""

    label: Annotated[str, Field(min_length=1, max_length=80)]
    url: Annotated[str, AfterValidator(_web_url)]


class SignupPage(Model):
    """What the public signup page `/join/<slug>` says, in the campaign's own words: its
    `intro`, the thank-you page's `thanks` and `next_step`, what the emails are `email_about`,
    the texting program's name and how often it texts (for the carriers' disclosure), the
    privacy policy and the campaign's public site."""

    intro: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    thanks: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    next_step: NextStep | None = None
    email_about: Annotated[str, Field(min_length=1, max_length=200)] = "news and ways to help"
    sms_program: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    message_frequency: Annotated[str, Field(min_length=1, max_length=60)] = "Msg frequency varies"
    privacy_url: Annotated[str, AfterValidator(_web_url)] | None = None
    website: Annotated[str, AfterValidator(_web_url)] | None = None
    limits: SignupLimits = SignupLimits()


def _phone(value: str) -> str:
    if not re.fullmatch(r"\+?[0-9][0-9 ().-]{5,24}", value):
        raise ValueError("must be a phone number such as +1 215 555 0100")
    return value


class Contact(Model):
    """The person creators ask about their brief, shown on their brief page."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    email: Email
    phone: Annotated[str, AfterValidator(_phone)] | None = None


class CampaignSpec(Model):
    name: Text
    slug: Slug
    objective: Text
    political: bool
    paid: bool
    committee: Committee | None = None
    jurisdiction: Text
    timezone: Annotated[str, AfterValidator(_timezone)]
    sprint: Sprint
    kpis: Kpis
    budget: Budget
    segments: Annotated[list[Segment], Field(min_length=1)]
    tiers: dict[Identifier, Tier] = {}
    brief: BriefSpec
    tracking: Tracking
    policy: Text = "default"
    approvers: dict[Identifier, list[Email]] = {}  # approver group -> its members' emails
    staff: list[Email] = []  # the staff console; the sprint's digests (else the internal reviewers)
    contact: Contact | None = None  # whom creators ask (their brief page shows it)
    followups: Text = "default"
    destinations: list[Destination] = [Destination(name="export", type="csv")]
    holdout: HoldoutSpec | None = None
    retention_days: Annotated[int, Field(ge=0)] | None = None  # purge leads this long after
    signup: SignupPage = SignupPage()
    payments: Payments = Payments()
    amplification: Amplification | None = None  # Spark Ads (`tasks.amplification`)
    roster: str | None = None

    @property
    def sms_program(self) -> str:
        """The name texts go out under: the signup page's `sms_program`, else the campaign's."""
        return self.signup.sms_program or self.name

    @model_validator(mode="after")
    def _unique_destinations(self) -> "CampaignSpec":
        names = [d.name for d in self.destinations]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"destinations: each name once ({', '.join(twice)} repeated)")
        return self

    def segment_ids(self) -> set[str]:
        return {segment.id for segment in self.segments}

    def spec_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()
