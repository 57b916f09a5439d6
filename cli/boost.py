"""`rally boost`: Spark Ads behind creators' posts that work, with their authorization (not
for political campaigns: TikTok allows no paid political content)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import typer

from cli.common import JSON_OPTION, console, id_argument, print_json, store
from store.db import transaction
from store.types import utcnow

app = typer.Typer(
    help="Spark Ads: posts worth boosting, creators' authorizations, boosts (pause, resume).",
    no_args_is_help=True,
)


@contextmanager
def _ad_account(campaign: str) -> Iterator[tuple[Any, Any, Any]]:
    """The settings, the store and the campaign's TikTok ad account, for one command."""
    from integrations.http import http_client
    from tasks.amplification.boosts import ad_account
    from tasks.campaigns.campaign import get_campaign

    settings, engine = store()
    with transaction(engine, write=False) as session:
        found = get_campaign(session, campaign)
    with http_client(timeout=30) as client, ad_account(settings, client, found, engine) as account:
        yield settings, engine, account


@app.command("candidates")
def candidates_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """A recommendation: the posts still up whose engagement and conversion rates are well
    above the campaign's medians, on enough views to trust them, best first."""
    from tasks.amplification.winners import winners
    from tasks.campaigns.campaign import get_campaign

    _, engine = store()
    with transaction(engine, write=False) as session:
        found = winners(session, get_campaign(session, campaign))
    rows = [
        {
            "creative": w.post.creative_id,
            "creator": w.post.creator,
            "url": w.post.url,
            "views": w.post.views,
            "engagement_rate": round(w.post.engagement_rate, 4),
            "conversion_rate": round(w.post.conversion_rate, 4),
            "engagement_multiple": round(w.engagement_multiple, 2),
            "conversion_multiple": round(w.conversion_multiple, 2),
        }
        for w in found.picks
    ]
    if json_output:
        print_json(
            {
                "recommendation": rows,
                "median_engagement_rate": round(found.median_engagement_rate, 4),
                "median_conversion_rate": round(found.median_conversion_rate, 4),
                "min_views": found.min_views,
                "above_median": found.above_median,
                "posts_considered": found.considered,
            }
        )
        return
    if not found.considered:
        console.print("No post that is up has metrics yet: nothing to weigh.", markup=False)
        return
    console.print(
        f"Recommendation: {len(rows)} of {found.considered} post(s) worth boosting (at least "
        f"{found.min_views:,} views, engagement and conversion at least {found.above_median:g}x "
        f"the medians of {found.median_engagement_rate:.2%} and "
        f"{found.median_conversion_rate:.2%}).",
        markup=False,
    )
    for row in rows:
        console.print(
            f"  creative {row['creative']} by @{row['creator']}: {row['views']:,} views, "
            f"engagement {row['engagement_rate']:.2%} ({row['engagement_multiple']}x), "
            f"conversion {row['conversion_rate']:.2%} ({row['conversion_multiple']}x)",
            markup=False,
        )


@app.command("authorize")
def authorize_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creative: int = id_argument("The posted creative the creator authorized."),
    code: str = typer.Option(..., "--code", help="The creator's Spark Ads authorization code."),
    until: str = typer.Option(..., "--until", help="The last day it covers, YYYY-MM-DD."),
    starts: str = typer.Option("", "--from", help="Its first day (default: today)."),
    consent: str = typer.Option(
        ..., "--consent", help='How the creator consented ("email of 2027-03-02").'
    ),
) -> None:
    """Record a creator's Spark Ads authorization of their post, and how they consented."""
    from tasks.amplification.boosts import (
        Refused,
        open_paid_review,
        paid_review_refusal,
        record_authorization,
    )
    from tasks.campaigns.campaign import get_campaign

    settings, engine = store()
    now = utcnow()
    try:
        last = date.fromisoformat(until)
        first = date.fromisoformat(starts) if starts else now.date()
    except ValueError:
        raise typer.BadParameter("give days as YYYY-MM-DD", param_hint="--from/--until") from None
    with transaction(engine) as session:
        found = get_campaign(session, campaign)
        record_authorization(
            session, found, creative, code, starts_on=first, ends_on=last, consent=consent,
            actor=settings.actor, now=now,
        )  # fmt: skip
        try:  # sent to review as a paid placement, if `ask` did not already
            made = open_paid_review(
                session, found, creative, actor=settings.actor, now=now,
                public_url=settings.public_url,
            )  # fmt: skip
            waiting = paid_review_refusal(session, made)
        except Refused as refused:
            waiting = str(refused)
    console.print(f"Creative {creative}: Spark Ads authorized from {first} to {last}.")
    if waiting:
        console.print(waiting, markup=False)


@app.command("start")
def start_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creative: int = id_argument("The posted creative to boost."),
    daily: float = typer.Option(0.0, "--daily", help="Its daily budget (default: the terms')."),
) -> None:
    """Boost a posted creative: checked under the paid rules, within its authorization's period
    and the campaign's amplification budget, then made on the ad account. Safe to run again
    after a failure: it goes on from where it stopped."""
    from tasks.amplification.boosts import start_boost

    with _ad_account(campaign) as (settings, engine, account):
        boost = start_boost(
            engine, campaign, creative, account, daily_budget_cents=round(daily * 100) or None,
            actor=settings.actor, now=utcnow(),
        )  # fmt: skip
    console.print(
        f"Boost {boost.id}: creative {creative} runs at {boost.daily_budget_cents / 100:,.2f} a "
        f"day until {boost.ends_on} (ad {boost.remote_ad_id}).",
        markup=False,
    )


def _set(campaign: str, boost: int, running: bool) -> None:
    from tasks.amplification.boosts import set_running

    with _ad_account(campaign) as (settings, engine, account):
        set_running(
            engine, campaign, boost, account, running=running, actor=settings.actor,
            now=utcnow(),
        )  # fmt: skip
    console.print(f"Boost {boost} {'resumed' if running else 'paused'}.")


@app.command("cancel")
def cancel_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    boost: int = id_argument("The boost that stopped before its ad was made."),
    reason: str = typer.Option(..., "--reason", help="Why it is given up (audited)."),
) -> None:
    """Give up a boost TikTok refused part way for good (a withdrawn code, a post gone): it
    no longer commits budget, and the post may be boosted again with a new code."""
    from tasks.amplification.boosts import cancel_boost
    from tasks.campaigns.campaign import get_campaign

    settings, engine = store()
    with transaction(engine) as session:
        cancel_boost(
            session, get_campaign(session, campaign), boost, reason=reason,
            actor=settings.actor, now=utcnow(),
        )  # fmt: skip
    console.print(f"Boost {boost} given up; its post may be boosted again with a new code.")


@app.command("pause")
def pause_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    boost: int = id_argument("The boost."),
) -> None:
    """Pause a boost's ad."""
    _set(campaign, boost, False)


@app.command("resume")
def resume_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    boost: int = id_argument("The boost."),
) -> None:
    """Resume a paused boost, within its authorization's period."""
    _set(campaign, boost, True)


@app.command("metrics")
def metrics_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    pull: bool = typer.Option(False, "--pull", help="Pull the days so far from TikTok first."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Each boost's paid figures beside its post's organic run: spend, CPM, CPC, CTR,
    conversions and their cost, and the lift paid added (paid plays over organic views)."""
    from tasks.amplification.metrics import paid_beside_organic
    from tasks.campaigns.campaign import get_campaign

    _, engine = store()
    if pull:
        from tasks.amplification.metrics import pull_paid_metrics

        with _ad_account(campaign) as (_, _, account):
            written = pull_paid_metrics(engine, campaign, account, now=utcnow())
        if not json_output:
            console.print(f"{written} day(s) of paid figures pulled.", markup=False)
    with transaction(engine, write=False) as session:
        rows = paid_beside_organic(session, get_campaign(session, campaign))
    if json_output:
        print_json(rows)
        return
    if not rows:
        console.print("No boosts yet.", markup=False)
    for row in rows:
        paid, organic = row["paid"], row["organic"]

        def money(cents: int | None) -> str:
            return "-" if cents is None else f"{cents / 100:,.2f}"

        console.print(
            f"Boost {row['boost']} (creative {row['creative']}, @{row['creator']}, "
            f"{row['status']}): paid {paid['impressions']:,} impressions, {paid['reach']:,} "
            f"reach, {paid['clicks']:,} clicks, {paid['conversions']:,} conversions for "
            f"{money(paid['spend_cents'])} (CPM {money(paid['cpm_cents'])}, CPC "
            f"{money(paid['cpc_cents'])}, per conversion "
            f"{money(paid['cost_per_conversion_cents'])}); organic {organic['views']:,} views"
            + (f"; paid added {row['lift']:.0%} plays" if row["lift"] is not None else ""),
            markup=False,
        )


@app.command("ask")
def ask_command(
    campaign: str = typer.Argument(..., help="The campaign (slug)."),
    creative: int = id_argument("The posted creative to boost."),
) -> None:
    """Ask the creator of a posted creative, by email, for its Spark Ads authorization code,
    which they give on their brief page (with the day it runs until, and their consent)."""
    from store.models import Creative
    from tasks.amplification.boosts import ask_authorization, paid_review_refusal
    from tasks.campaigns.campaign import get_campaign

    settings, engine = store()
    with transaction(engine) as session:
        link = ask_authorization(
            session, get_campaign(session, campaign), creative, actor=settings.actor,
            now=utcnow(), public_url=settings.public_url,
        )  # fmt: skip
        asked = session.get(Creative, creative)
        waiting = paid_review_refusal(session, asked) if asked else None
    console.print(f"Creative {creative}: its creator is asked, on {link}", markup=False)
    console.print(waiting or "Its review as a paid placement approved it.", markup=False)
