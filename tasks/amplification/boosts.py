"""Boosting: a creator's authorization of a post, the compliance gate before any money, and
the boost itself on the campaign's TikTok ad account (`integrations.tiktok_ads`).

- **Authorization.** The creator gives a Spark Ads authorization code for one of their posted
  creatives and the period it covers; staff record it with how the creator consented, and it
  goes in the audit log. A code past its period is refused, never sent.
- **Compliance before money.** A boost is a paid placement: the creative's approved version is
  checked again under the campaign's policy as paid content (sponsorship disclosure, and
  TikTok's ban on paid political content, rule `platform_political_ban`, which refuses every
  political campaign); a blocking finding refuses the boost, naming its rule. Asking for a
  boost also sends the posted version back through human review as paid content (the tiers
  paid content needs, legal in the default policy, with the paid-partnership label on the
  checklist): no boost starts until that review approves it.
- **Budget.** What boosts have spent (their pulled paid figures) and may still spend (each
  running or paused one's daily budget for the days its authorization has left), with the new
  one's, stays within the campaign file's `amplification.budget`, and within what its
  `budget.total` leaves once the creators' fees in the payments ledger are counted.
- **The boost.** The post is authorized on the ad account with the code, then an ad group
  with the daily budget and an ad of the post are made, each remembered as it is made: a
  boost interrupted part way goes on from where it stopped when started again, and its ad
  is looked up by name before one is made, so that none is made twice. Staff pause and
  resume it. A code the creator renews (asked three days before theirs ends) extends the
  boost: the new code authorized on the ad account and the ad group's end moved to its end,
  within the budget, by the daily upkeep (`extend_boosts`).
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar

import httpx
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from tenacity.wait import wait_base

from config.errors import RallyError
from config.settings import Settings
from integrations.errors import UnavailableError
from integrations.tiktok_ads import RATE, AuthorizedPost, TikTokAds, TikTokAdsSettings
from store.audit import Change, record
from store.db import transaction
from store.models import (
    Boost,
    BoostStatus,
    Brief,
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    LedgerEntry,
    PaidMetrics,
    ReviewStatus,
    ReviewTask,
    SparkAuthorization,
    SparkRequest,
)
from tasks.amplification.winners import amplification_of
from tasks.campaigns.campaign import campaign_spec, get_campaign
from tasks.campaigns.configs import campaign_policy
from tasks.outbox import retrying
from tasks.payments.ledger import FEES
from tasks.rate_limits import SharedRateLimit
from tasks.review.checks import evaluate
from tasks.review.creatives import paid_facts, review_as_paid
from tasks.review.routing import notify_creator


class Refused(RallyError):
    """A boost that may not run: what stands in its way."""


class AdAccount(Protocol):
    """What boosting needs of the Marketing API (`integrations.tiktok_ads.TikTokAds`)."""

    def authorize(self, code: str) -> AuthorizedPost: ...

    def campaign_named(self, name: str) -> str | None: ...

    def create_campaign(self, name: str) -> str: ...

    def create_adgroup(
        self, campaign_id: str, name: str, daily_budget_cents: int, start: date, end: date
    ) -> str: ...

    def adgroup_named(self, campaign_id: str, name: str) -> str | None: ...

    def ad_named(self, adgroup_id: str, name: str) -> str | None: ...

    def create_ad(self, adgroup_id: str, name: str, post: AuthorizedPost) -> str: ...

    def set_status(self, ad_id: str, *, running: bool) -> None: ...

    def extend_adgroup(self, adgroup_id: str, end: date) -> None: ...


MAX_DAYS = 365  # the longest period TikTok lets a creator authorize a post for
CODE = re.compile(r"[A-Za-z0-9#+/=_.:-]{8,200}")  # Spark codes are printable, without spaces


TIKTOK_ADS = "tiktok_ads"  # the app's rate limit, as the store keeps it


@contextmanager
def ad_account(
    settings: Settings, client: httpx.Client, campaign: Campaign, engine: Engine
) -> Iterator[TikTokAds]:
    """The campaign's TikTok ad account, with the advertiser's token from the settings, within
    the app's rate limit as TikTok counts it, per app whichever account a call is for: shared
    through `engine`'s store by every process (workers, `rally serve`, the CLI). When done, the
    slots it holds and did not spend are given back, and its last calls count from their
    answers, as the other processes then see."""
    found = settings.section(TikTokAdsSettings)
    limit = SharedRateLimit(engine, TIKTOK_ADS, "", *RATE)
    try:
        account = TikTokAds(
            client,
            api_url=found.api_url,
            access_token=found.access_token.get_secret_value(),
            advertiser_id=amplification_of(campaign).advertiser_id,
            limit=limit,
        )
    except UnavailableError as exc:  # no token: a setting to give, said as such
        raise RallyError(str(exc)) from None
    try:
        yield account
    finally:
        limit.release()


def record_authorization(
    session: Session,
    campaign: Campaign,
    creative_id: int,
    code: str,
    *,
    starts_on: date,
    ends_on: date,
    consent: str,
    actor: str,
    now: datetime,
) -> SparkAuthorization:
    """Keep the creator's authorization code for their posted creative and the period it
    covers, with how they consented (audited)."""
    creative = _posted(session, campaign, creative_id)
    code = code.strip()
    if not CODE.fullmatch(code):
        raise RallyError("code: a Spark Ads authorization code, as TikTok shows it to the creator")
    if ends_on < starts_on:
        raise RallyError(f"until: {ends_on} is before {starts_on}")
    if ends_on < now.date():
        raise RallyError(f"until: {ends_on} is already past: ask the creator for a new code")
    if ends_on > now.date() + timedelta(days=MAX_DAYS):
        raise RallyError(f"until: {ends_on} is more than {MAX_DAYS} days away (TikTok's longest)")
    if not consent.strip():
        raise RallyError("consent: say how the creator gave their consent (their email, a form)")
    found = SparkAuthorization(
        campaign_id=campaign.id or 0,
        creative_id=creative.id or 0,
        code=code,
        starts_on=starts_on,
        ends_on=ends_on,
        consent=consent.strip()[:254],
        recorded_at=now,
    )
    session.add(found)
    session.flush()
    summary = (
        f"creative {creative.id}: its creator authorized Spark Ads from {starts_on} to {ends_on} "
        f"({consent.strip()[:120]})"
    )
    details = {"creative": creative.id, "from": str(starts_on), "until": str(ends_on)}
    record(session, [Change(actor, "spark.authorized", "creative", creative.id or 0, summary,
                            details)])  # fmt: skip
    return found


def ask_authorization(
    session: Session,
    campaign: Campaign,
    creative_id: int,
    *,
    actor: str,
    now: datetime,
    public_url: str,
) -> str:
    """Ask the creator of a posted creative for its Spark Ads authorization, by email, to be
    given on their brief page (once: asking again sends nothing new), and send the post to
    review as a paid placement; the page's link. A boost the policy would refuse (a political
    campaign) is not asked for."""
    amplification_of(campaign)
    creative = open_paid_review(
        session, campaign, creative_id, actor=actor, now=now, public_url=public_url
    )
    brief = _latest_brief(session, creative.member_id)
    if brief is None:
        raise RallyError(f"creative {creative_id}: its creator has no brief page to answer on")
    link = f"{public_url.rstrip('/')}/briefs/{brief.token}#spark"
    asked = session.exec(
        select(SparkRequest).where(SparkRequest.creative_id == creative.id)
    ).first()
    if asked is not None:
        return link
    session.add(SparkRequest(campaign_id=campaign.id or 0, creative_id=creative.id or 0,
                             asked_by=actor, asked_at=now))  # fmt: skip
    notify_creator(
        session,
        creative.member_id,
        key=f"spark:{creative.id}:asked",
        subject=f"{campaign_spec(campaign).name} would like to boost your video",
        text=(
            f' your video "{creative.title}" is doing well, and we would like to put paid '
            "reach behind it as a Spark Ad. If you agree, open the video in TikTok, tap the "
            "three dots, then Ad settings, turn on ad authorization, and give the code it "
            f"shows, with the day it runs until, on your brief page:\n{link}\n"
        ),
    )
    said = f"creative {creative.id}: its creator asked for Spark Ads"
    record(session, [Change(actor, "spark.asked", "creative", creative.id or 0, said, {})])
    return link


REMIND_DAYS = 3  # a creator is asked for a new code this many days before theirs ends


def remind_expiring(session: Session, campaign: Campaign, *, today: date, public_url: str) -> int:
    """Ask the creator of each boost whose authorization ends within `REMIND_DAYS` days, and
    who has not given a newer one, for a new code, by email once per authorization (their
    brief page asks for it again); how many such boosts there are."""
    rows = session.exec(
        select(Boost, SparkAuthorization, Creative)
        .join(SparkAuthorization, col(SparkAuthorization.id) == col(Boost.authorization_id))
        .join(Creative, col(Creative.id) == col(Boost.creative_id))
        .where(
            Boost.campaign_id == campaign.id,
            col(Boost.status).in_([BoostStatus.RUNNING, BoostStatus.PAUSED]),
            SparkAuthorization.ends_on >= today,
            SparkAuthorization.ends_on <= today + timedelta(days=REMIND_DAYS),
        )
    ).all()
    asked = 0
    for _, authorization, creative in rows:
        brief = _latest_brief(session, creative.member_id)
        renewed = session.exec(
            select(SparkAuthorization.id).where(
                SparkAuthorization.creative_id == creative.id,
                SparkAuthorization.ends_on > authorization.ends_on,
            )
        ).first()
        if brief is None or renewed is not None:
            continue  # nowhere to answer, or a new code was given already
        link = f"{public_url.rstrip('/')}/briefs/{brief.token}#spark"
        asked += 1
        notify_creator(
            session,
            creative.member_id,
            key=f"spark:{authorization.id}:expiring",
            subject=f'Your Spark Ads code for "{creative.title}" ends on {authorization.ends_on}',
            text=(
                f' the boost of your video "{creative.title}" stops when your code ends on '
                f"{authorization.ends_on}. To keep it running, give a new code on your brief "
                f"page:\n{link}\n"
            ),
        )
    return asked


def waiting_authorizations(session: Session, member_id: int, today: date) -> list[Creative]:
    """The creator's posted creatives staff asked to boost that have no authorization in
    force, or one ending within `REMIND_DAYS` days: what their brief page asks them for."""
    asked = session.exec(
        select(Creative)
        .join(SparkRequest, col(SparkRequest.creative_id) == col(Creative.id))
        .where(Creative.member_id == member_id, Creative.status == CreativeStatus.POSTED)
        .order_by(col(Creative.id))
    ).all()
    given = set(
        session.exec(
            select(SparkAuthorization.creative_id).where(
                col(SparkAuthorization.creative_id).in_([c.id for c in asked]),
                SparkAuthorization.ends_on > today + timedelta(days=REMIND_DAYS),
            )
        ).all()
    )
    return [c for c in asked if c.id not in given]


def given_authorizations(
    session: Session, member_id: int, today: date
) -> list[tuple[Creative, SparkAuthorization]]:
    """The creator's authorizations in force, with their creatives: what their brief page
    says they gave."""
    return [
        (creative, authorization)
        for creative, authorization in session.exec(
            select(Creative, SparkAuthorization)
            .join(SparkAuthorization, col(SparkAuthorization.creative_id) == col(Creative.id))
            .where(Creative.member_id == member_id, SparkAuthorization.ends_on >= today)
            .order_by(col(SparkAuthorization.id))
        ).all()
    ]


def open_paid_review(
    session: Session,
    campaign: Campaign,
    creative_id: int,
    *,
    actor: str,
    now: datetime,
    public_url: str,
) -> Creative:
    """Send a posted creative to review as a paid placement, once (`review_as_paid`); the
    creative. Refused, naming the rule, if the policy refuses it as paid content."""
    creative = _posted(session, campaign, creative_id)
    refusals = paid_refusals(session, campaign, creative)
    if refusals:
        raise Refused("policy: " + "; ".join(refusals))
    review_as_paid(session, campaign, creative, submitted_by=actor, now=now, public_url=public_url)
    return creative


def paid_review_refusal(session: Session, creative: Creative) -> str | None:
    """What stands between the creative and a boost in its review as a paid placement: not
    sent yet, waiting for a tier, or not approved (with the note); None once approved."""
    draft = session.exec(
        select(CreativeDraft).where(
            CreativeDraft.creative_id == creative.id,
            CreativeDraft.version == creative.current_version,
        )
    ).first()
    if draft is None or not draft.paid:
        return (
            f"creative {creative.id}: not yet reviewed as a paid placement; `rally boost ask` "
            "sends it to review"
        )
    if draft.status == CreativeStatus.APPROVED:
        return None
    tasks = session.exec(
        select(ReviewTask).where(ReviewTask.draft_id == draft.id).order_by(col(ReviewTask.position))
    ).all()
    if draft.status == CreativeStatus.IN_REVIEW:
        waiting = next((t for t in tasks if t.status == ReviewStatus.OPEN), None)
        return f"creative {creative.id}: its review as a paid placement waits for " + (
            f"the {waiting.tier} review (task {waiting.id})" if waiting else "its reviewers"
        )
    decided = next((t for t in tasks if t.status != ReviewStatus.APPROVED and t.decided_by), None)
    said = f" by {decided.decided_by}: {decided.note}" if decided and decided.note else ""
    return (
        f"creative {creative.id}: its review as a paid placement ended "
        f"{str(draft.status).replace('_', ' ')}{said}"
    )


def paid_refusals(session: Session, campaign: Campaign, creative: Creative) -> list[str]:
    """The campaign policy's blocking findings on the creative's latest version as a paid
    placement, each as `rule_id: what it found`."""
    draft = session.exec(
        select(CreativeDraft)
        .where(CreativeDraft.creative_id == creative.id)
        .order_by(col(CreativeDraft.version).desc())
    ).first()
    if draft is None:
        return ["creative: it has no approved version to boost"]
    facts = paid_facts(session, campaign_spec(campaign), creative, draft)
    findings = evaluate(campaign_policy(session, campaign), facts)
    return [f"{f.rule_id}: {f.message}" for f in findings if f.severity == "block" and not f.passed]


def boost_cap(session: Session, campaign: Campaign) -> tuple[int, str]:
    """The most the campaign's boosts may commit, in cents, and what sets it, said for a
    refusal: `amplification.budget`, or what `budget.total` leaves once the creators' fees
    the ledger holds (net of reversals) are counted, whichever is less."""
    spec = campaign_spec(campaign)
    amplification = round(amplification_of(campaign).budget * 100)
    fees = session.exec(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(
            LedgerEntry.campaign_id == campaign.id, LedgerEntry.account == FEES
        )
    ).one()
    left = round(spec.budget.total * 100) - int(fees)
    if left < amplification:
        return left, (
            f"what budget.total ({spec.budget.total:,.2f}) leaves after the "
            f"{int(fees) / 100:,.2f} of creators' fees in the ledger ({left / 100:,.2f})"
        )
    return amplification, f"amplification.budget ({amplification / 100:,.2f})"


def committed_cents(session: Session, campaign: Campaign, today: date) -> int:
    """What the campaign's boosts have spent before today (their pulled paid figures) and may
    still spend: each running or paused one's daily budget for the days it has left."""
    boosts = session.exec(select(Boost).where(Boost.campaign_id == campaign.id)).all()
    spent = sum(
        session.exec(
            select(PaidMetrics.spend_cents).where(
                col(PaidMetrics.boost_id).in_([b.id for b in boosts]), PaidMetrics.day < today
            )
        ).all()
    )
    left = sum(
        b.daily_budget_cents * _days(today, b.ends_on)
        for b in boosts
        if b.status in (BoostStatus.RUNNING, BoostStatus.PAUSED)
    )
    return spent + left


def prepare_boost(
    session: Session,
    campaign: Campaign,
    creative_id: int,
    *,
    daily_budget_cents: int | None,
    actor: str,
    now: datetime,
) -> Boost:
    """The boost of a creative, checked (compliance, authorization, budget: `Refused` says
    what stands in the way) and kept, before anything is asked of TikTok; an unfinished one
    of the creative's is taken up again."""
    terms = amplification_of(campaign)
    creative = _posted(session, campaign, creative_id)
    refusals = paid_refusals(session, campaign, creative)
    if refusals:
        raise Refused("policy: " + "; ".join(refusals))
    in_review = paid_review_refusal(session, creative)
    if in_review:
        raise Refused(in_review)
    unfinished = session.exec(
        select(Boost).where(
            Boost.creative_id == creative.id,
            col(Boost.remote_ad_id).is_(None),
            Boost.status != BoostStatus.CANCELLED,
        )
    ).first()
    if unfinished is not None:
        return unfinished
    today = now.date()
    running = session.exec(
        select(Boost.id).where(
            Boost.creative_id == creative.id,
            col(Boost.status).in_([BoostStatus.RUNNING, BoostStatus.PAUSED]),
            Boost.ends_on >= today,  # one past its authorization's end has stopped at TikTok
        )
    ).first()
    if running is not None:
        raise Refused(f"creative {creative.id}: already boosted (boost {running})")
    authorization = session.exec(
        select(SparkAuthorization)
        .where(SparkAuthorization.creative_id == creative.id)
        .order_by(col(SparkAuthorization.id).desc())
    ).first()
    if authorization is None:
        raise Refused(f"creative {creative.id}: no Spark Ads authorization from its creator yet")
    if authorization.ends_on < today:
        raise Refused(
            f"authorization: the creator's code covered up to {authorization.ends_on}, which is "
            "past; ask them for a new one"
        )
    if authorization.starts_on > today:
        raise Refused(f"authorization: the creator's code covers from {authorization.starts_on}")
    most = round(terms.daily_budget * 100)
    daily = daily_budget_cents or most
    if daily < 20_00:
        raise Refused("daily budget: TikTok's least for an ad group is 20.00 a day")
    if daily > most:
        raise Refused(
            f"daily budget: {daily / 100:,.2f} is over amplification.daily_budget "
            f"({most / 100:,.2f})"
        )
    cost = daily * _days(today, authorization.ends_on)
    committed = committed_cents(session, campaign, today)
    cap, capped_by = boost_cap(session, campaign)
    if committed + cost > cap:
        raise Refused(
            f"budget: {cost / 100:,.2f} for {_days(today, authorization.ends_on)} day(s) at "
            f"{daily / 100:,.2f} a day, with {committed / 100:,.2f} committed to other boosts, "
            f"is over {capped_by}"
        )
    boost = Boost(
        campaign_id=campaign.id or 0,
        creative_id=creative.id or 0,
        authorization_id=authorization.id or 0,
        daily_budget_cents=daily,
        ends_on=authorization.ends_on,
        started_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(boost)
    session.flush()
    summary = f"creative {creative.id}: boost {boost.id} at {daily / 100:,.2f} a day"
    record(session, [Change(actor, "boost.started", "creative", creative.id or 0, summary,
                            {"boost": boost.id, "daily_cents": daily})])  # fmt: skip
    return boost


def start_boost(
    engine: Engine,
    slug: str,
    creative_id: int,
    account: AdAccount,
    *,
    daily_budget_cents: int | None = None,
    actor: str,
    now: datetime,
    wait: wait_base | None = None,
) -> Boost:
    """Boost the creative (see the module): checked and kept, then made on the ad account a
    step at a time, each step's id kept as soon as it is made; a passing failure (TikTok's
    rate limit) is tried again, `wait` apart."""
    call = retrying(wait)
    with transaction(engine) as session:
        campaign = get_campaign(session, slug)
        boost = prepare_boost(
            session, campaign, creative_id, daily_budget_cents=daily_budget_cents, actor=actor,
            now=now,
        )  # fmt: skip
        authorization = session.get(SparkAuthorization, boost.authorization_id)
        assert authorization is not None
    if authorization.item_id is None:
        post = call(account.authorize, authorization.code)
        with transaction(engine) as session:
            _keep(session, SparkAuthorization, authorization.id, identity_id=post.identity_id,
                  item_id=post.item_id)  # fmt: skip
    else:
        post = AuthorizedPost(authorization.identity_id or "", "AUTH_CODE", authorization.item_id)
    # Each step looks its object up by name and makes it only if missing, tried again as one:
    # a make whose answer was lost is found by the next try instead of made twice.
    if boost.remote_campaign_id is None:
        name = f"rally-{slug}"
        remote = call(lambda: account.campaign_named(name) or account.create_campaign(name))
        with transaction(engine) as session:
            boost = _keep(session, Boost, boost.id, remote_campaign_id=remote)
    name, campaign_id = f"rally-boost-{boost.id}", boost.remote_campaign_id or ""
    if boost.remote_adgroup_id is None:
        adgroup = call(
            lambda: (
                account.adgroup_named(campaign_id, name)
                or account.create_adgroup(
                    campaign_id, name, boost.daily_budget_cents, now.date(), boost.ends_on
                )
            )
        )
        with transaction(engine) as session:
            boost = _keep(session, Boost, boost.id, remote_adgroup_id=adgroup)
    group = boost.remote_adgroup_id or ""
    ad = call(lambda: account.ad_named(group, name) or account.create_ad(group, name, post))
    with transaction(engine) as session:
        return _keep(session, Boost, boost.id, remote_ad_id=ad, updated_at=now)


def set_running(
    engine: Engine, slug: str, boost_id: int, account: AdAccount, *, running: bool, actor: str,
    now: datetime, wait: wait_base | None = None,
) -> Boost:  # fmt: skip
    """Pause a boost's ad, or resume it (within its authorization's period)."""
    with transaction(engine, write=False) as session:
        campaign = get_campaign(session, slug)
        boost = session.get(Boost, boost_id)
        if boost is None or boost.campaign_id != campaign.id or boost.remote_ad_id is None:
            raise RallyError(f"boost: no boost {boost_id} running or paused on {slug}")
    if running and boost.ends_on < now.date():
        raise Refused(f"boost {boost_id}: its authorization ended on {boost.ends_on}")
    retrying(wait)(account.set_status, boost.remote_ad_id or "", running=running)
    status = BoostStatus.RUNNING if running else BoostStatus.PAUSED
    with transaction(engine) as session:
        found = _keep(session, Boost, boost_id, status=status, updated_at=now)
        said = "resumed" if running else "paused"
        record(session, [Change(actor, f"boost.{said}", "creative", found.creative_id,
                                f"boost {boost_id} {said}", {"boost": boost_id})])  # fmt: skip
        return found


def extend_boosts(
    engine: Engine, slug: str, account: AdAccount, *, now: datetime, actor: str = "rally",
    wait: wait_base | None = None,
) -> list[str]:  # fmt: skip
    """Extend each running or paused boost whose creator has since given a code running past
    its end (see the module): what was done, or what stood in the way, a line a boost."""
    today, call = now.date(), retrying(wait)
    with transaction(engine, write=False) as session:
        campaign = get_campaign(session, slug)
        boosts = session.exec(
            select(Boost).where(
                Boost.campaign_id == campaign.id,
                col(Boost.status).in_([BoostStatus.RUNNING, BoostStatus.PAUSED]),
                col(Boost.remote_adgroup_id).is_not(None),
                Boost.ends_on >= today,
            )
        ).all()
        renewals = [(b, _renewal(session, b)) for b in boosts]
    said = []
    for boost, renewal in renewals:
        if renewal is None:
            continue
        extra = boost.daily_budget_cents * (renewal.ends_on - boost.ends_on).days
        with transaction(engine, write=False) as session:
            found = get_campaign(session, slug)
            committed = committed_cents(session, found, today)
            cap, capped_by = boost_cap(session, found)
        if committed + extra > cap:
            said.append(
                f"boost {boost.id}: not extended to {renewal.ends_on}: {extra / 100:,.2f} more, "
                f"with {committed / 100:,.2f} committed, is over {capped_by}"
            )
            continue
        post = call(account.authorize, renewal.code)
        with transaction(engine) as session:
            _keep(session, SparkAuthorization, renewal.id, identity_id=post.identity_id,
                  item_id=post.item_id)  # fmt: skip
            first = session.get(SparkAuthorization, boost.authorization_id)
        if first is not None and first.item_id and first.item_id != post.item_id:
            said.append(f"boost {boost.id}: not extended: the new code is for another video")
            continue
        call(account.extend_adgroup, boost.remote_adgroup_id or "", renewal.ends_on)
        with transaction(engine) as session:
            kept = _keep(session, Boost, boost.id)
            if kept.ends_on >= renewal.ends_on:
                continue  # another run extended it meanwhile: it said so
            kept.ends_on, kept.authorization_id = renewal.ends_on, renewal.id or 0
            kept.updated_at = now
            summary = f"boost {boost.id}: extended from {boost.ends_on} to {renewal.ends_on}"
            details = {"boost": boost.id, "until": str(renewal.ends_on)}
            record(session, [Change(actor, "boost.extended", "creative", boost.creative_id,
                                    summary, details)])  # fmt: skip
        said.append(summary)
    return said


def _renewal(session: Session, boost: Boost) -> SparkAuthorization | None:
    """The creator's newest code for the boosted post, if it runs past the boost's end and
    starts by the day after it (no gap)."""
    newest = session.exec(
        select(SparkAuthorization)
        .where(SparkAuthorization.creative_id == boost.creative_id)
        .order_by(col(SparkAuthorization.id).desc())
    ).first()
    if newest is None or newest.id == boost.authorization_id or newest.ends_on <= boost.ends_on:
        return None
    return newest if newest.starts_on <= boost.ends_on + timedelta(days=1) else None


def cancel_boost(
    session: Session, campaign: Campaign, boost_id: int, *, reason: str, actor: str,
    now: datetime,
) -> Boost:  # fmt: skip
    """Give up a boost that stopped before its ad was made (TikTok refused a step for good: a
    withdrawn code, a post gone): it no longer commits budget nor stands in the way of
    boosting the post again. One with its ad is paused instead."""
    boost = session.get(Boost, boost_id, with_for_update=True)
    if boost is None or boost.campaign_id != campaign.id:
        raise RallyError(f"boost: no boost {boost_id} on {campaign.slug}")
    if boost.remote_ad_id is not None:
        raise Refused(f"boost {boost_id}: its ad is made; pause it instead (`rally boost pause`)")
    if not reason.strip():
        raise RallyError("reason: say why the boost is given up")
    if boost.status == BoostStatus.CANCELLED:
        return boost
    boost.status, boost.updated_at = BoostStatus.CANCELLED, now
    session.add(boost)
    summary = f"boost {boost_id} given up before its ad was made: {reason.strip()[:200]}"
    record(session, [Change(actor, "boost.cancelled", "creative", boost.creative_id, summary,
                            {"boost": boost_id, "reason": reason.strip()})])  # fmt: skip
    return boost


T = TypeVar("T")


def _keep(session: Session, model: type[T], row_id: int | None, **values: object) -> T:
    """The row with `values` set, under its lock."""
    row = session.get(model, row_id, with_for_update=True)
    assert row is not None
    for name, value in values.items():
        setattr(row, name, value)
    session.add(row)
    return row


def _latest_brief(session: Session, member_id: int) -> Brief | None:
    return session.exec(
        select(Brief).where(Brief.member_id == member_id).order_by(col(Brief.version).desc())
    ).first()


def _posted(session: Session, campaign: Campaign, creative_id: int) -> Creative:
    creative = session.get(Creative, creative_id)
    if creative is None or creative.campaign_id != campaign.id:
        raise RallyError(f"creative: no creative {creative_id} on {campaign.slug}")
    if creative.status != CreativeStatus.POSTED:
        raise RallyError(f"creative {creative_id}: only a post that is up can be boosted")
    return creative


def _days(today: date, last: date) -> int:
    """The days from today to `last`, both counted (none once it is past)."""
    return max(0, (last - today).days + 1)
