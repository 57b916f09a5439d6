"""`rally serve` on PostgreSQL under a mixed public load, with its recurring flows running.

The mix is what a live campaign's server meets: 60% signed TikTok webhooks, 25% tracking-link
clicks, 10% signups on the public page and 5% webhooks TikTok delivers again. The example
campaign is applied to a fresh PostgreSQL database (its signup limit per client raised, since
every request here comes from one address) and `rally serve` runs with its timers (rules,
delivery, lead sync, the sprint's calendar) in their own process.

1. The floor: a bare endpoint on the same stack (FastAPI on uvicorn) that checks a webhook's
   signature and stores nothing, saturated for `--probe` seconds (32 connections, then twice
   as many while that adds 5%, as `benchmarks/webhooks.py` does).
2. Rally saturated with the mix for `--probe` seconds the same way: its highest mixed rate.
3. The mix open-loop at `--share` of that rate for `--minutes`, minute by minute: latency from
   each request's scheduled time, answers by status.
Afterwards every answered webhook, click and signup must be in the store. Goals: the last
minute's p99 within 2x of the first minute's, no 5xx, nothing lost.

    .venv/bin/python benchmarks/serve_load.py [--minutes 5] [--share 0.5] [--probe 15]
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.webhooks import (
    CLIMB,
    Load,
    answer,
    free_port,
    highest_rate,
    percentile,
    saturate,
    signed_request,
    start,
    stop,
)

ROOT = Path(__file__).resolve().parents[1]
SLUG = "first-vote-pa-2027"
ADMIN_URL = os.environ.get("RALLY_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
GOAL_P99_GROWTH = 2.0


def click_request(port: int, code: str, n: int) -> bytes:
    return (
        f"GET /t/{code} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: phone-{n}\r\n\r\n"
    ).encode()


def signup_request(port: int, n: int) -> bytes:
    body = urlencode(
        {
            "name": f"Fan {n}",
            "email": f"fan{n}@example.org",
            "zip": "19104",
            "consent_email": "yes",
        }
    ).encode()
    head = (
        f"POST /join/{SLUG} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def mix(
    port: int, codes: list[str], first: int, count: int, seconds: float = 0
) -> list[tuple[str, bytes]]:
    """`count` requests in the campaign's mix for `seconds` of load, numbered from `first`;
    replays resend webhooks sent earlier in the same list. The webhooks are signed for the
    middle of the run, so none is older than TikTok's five minutes when it is sent."""
    signed_at, requests = int(time.time() + seconds / 2), []
    webhooks: list[bytes] = []
    for i in range(count):
        n, slot = first + i, i % 20
        if slot < 12 or (slot == 19 and not webhooks):
            webhooks.append(signed_request(port, n, signed_at))
            requests.append(("webhook", webhooks[-1]))
        elif slot < 17:
            requests.append(("click", click_request(port, codes[n % len(codes)], n)))
        elif slot < 19:
            requests.append(("signup", signup_request(port, n)))
        else:
            requests.append(("replay", webhooks[(n * 7919) % len(webhooks)]))
    return requests


async def open_loop(
    port: int, requests: list[tuple[str, bytes]], rate: float, connections: int
) -> list[tuple[float, str, int, float]]:
    """(due second, kind, status, latency) of each request sent at start + i / rate."""
    results: list[tuple[float, str, int, float]] = []
    queue: asyncio.Queue[tuple[float, float, str, bytes] | None] = asyncio.Queue()
    start_at = time.perf_counter() + 0.1

    async def worker() -> None:
        conn = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            due, offset, kind, request = item
            status, _, conn = await answer(port, conn, request, timeout=30)
            results.append((offset, kind, status, time.perf_counter() - due))
        conn[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    for i, (kind, request) in enumerate(requests):
        due = start_at + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((due, i / rate, kind, request))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return results


async def saturate_mix(
    port: int, requests: list[tuple[str, bytes]], seconds: float, connections: int
) -> Load:
    """Closed loop over `requests` (in order) for `seconds`: Rally's highest mixed rate."""
    load, items = Load(), iter(requests)
    begin = time.perf_counter()

    async def worker() -> None:
        conn = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() - begin < seconds and (item := next(items, None)):
            status, _, conn = await answer(port, conn, item[1], timeout=30)
            load.statuses[status] = load.statuses.get(status, 0) + 1
        conn[1].close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    load.last_answer = time.perf_counter() - begin
    return load


async def highest_mix_rate(
    port: int, requests: list[tuple[str, bytes]], seconds: float
) -> tuple[Load, int]:
    """Rally's highest mixed rate: `saturate_mix` with more and more connections (`CLIMB`)
    until doubling them adds under 5%; each try takes the next part of `requests`."""
    best, best_connections, taken = Load(), 0, 0
    for connections in CLIMB:
        load = await saturate_mix(port, requests[taken:], seconds, connections)
        taken += sum(load.statuses.values()) + connections
        rate = sum(load.statuses.values()) / load.last_answer
        if rate < 1.05 * sum(best.statuses.values()) / max(best.last_answer, 1e-9):
            break
        best, best_connections = load, connections
    return best, best_connections


def store_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as db:
        counted = dict(
            db.execute("SELECT type, count(*) FROM engagement_events GROUP BY type").fetchall()
        )
        (deliveries,) = db.execute(
            "SELECT coalesce(sum(deliveries), 0) FROM engagement_events WHERE source = 'tiktok'"
        ).fetchall()[0]
        counted["deliveries"] = deliveries
    return {k: int(v) for k, v in counted.items()}


def prepare(home: Path, url: str) -> list[str]:
    """The example campaign applied to the database at `url`, its roster's tracking codes."""
    import shutil
    import subprocess

    folder = home / "example"
    shutil.copytree(ROOT / "examples" / "youth-vote", folder)
    campaign = folder / "campaign.yaml"
    text = campaign.read_text()
    assert "\n    per_client: 5 " in text
    text = text.replace("\n    per_client: 5 ", "\n    per_client: 10000 ", 1)
    campaign.write_text(text)
    env = {**os.environ, "RALLY_HOME": str(home), "RALLY_DATABASE_URL": url}
    for args in (["campaign", "apply", str(campaign)], ["sprint", "start", SLUG]):
        subprocess.run(
            [sys.executable, "-m", "cli.main", *args], env=env, check=True, cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    with psycopg.connect(url) as db:
        return [code for (code,) in db.execute("SELECT tracking_code FROM roster_members")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--probe", type=float, default=15)
    args = parser.parse_args()
    name = f"rally_bench_{os.getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        # Prefect's temporary server, started by the timers, may still be closing its files
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as scratch:
            run(Path(scratch) / "home", url, args)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(home: Path, url: str, args: argparse.Namespace) -> None:
    home.mkdir(parents=True)
    codes = prepare(home, url)
    port = free_port()
    bare = start([sys.executable, str(ROOT / "benchmarks" / "webhooks.py"), "--serve-bare",
                  str(port)], home, port, "/")  # fmt: skip
    try:
        asyncio.run(saturate(port, 1, 4, 0))
        floor, _, _ = asyncio.run(highest_rate(port, args.probe, 10**6))
    finally:
        stop(bare)
    bare_rate = floor.ok / floor.last_answer
    port = free_port()
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--every", "5"]
    rally = start(command, home, port, "/healthz", store_url=url)
    try:
        probe = mix(port, codes, 10**6, int(args.probe * len(CLIMB) * bare_rate) + 1000)
        asyncio.run(saturate_mix(port, probe[:200], 5, 4))  # warm
        saturated, connections = asyncio.run(highest_mix_rate(port, probe[200:], args.probe))
        sustained = sum(saturated.statuses.values()) / saturated.last_answer
        rate = max(1.0, sustained * args.share)
        count = int(rate * 60 * args.minutes)
        print(
            f"Mixed load on rally serve (PostgreSQL, timers running): bare endpoint "
            f"{bare_rate:,.0f}/s, Rally saturated {sustained:,.0f}/s with {connections} "
            f"connections ({sustained / bare_rate:.2f} of it; answers {saturated.statuses}); now "
            f"{rate:,.0f}/s for {args.minutes:g} min",
            flush=True,
        )
        before = store_counts(url)
        results = asyncio.run(
            open_loop(port, mix(port, codes, 2 * 10**7, count, 60 * args.minutes), rate, 64)
        )
        after = store_counts(url)
    finally:
        stop(rally)
    report(results, before, after, bare_rate, sustained, rate, saturated)


def report(
    results: list[tuple[float, str, int, float]],
    before: dict[str, int],
    after: dict[str, int],
    bare_rate: float,
    sustained: float,
    rate: float,
    saturated: Load,
) -> None:
    minutes: dict[int, list[float]] = {}
    statuses: dict[int, int] = {}
    ok: dict[str, int] = {}
    for offset, kind, status, latency in results:
        minutes.setdefault(int(offset // 60), []).append(1000 * latency)
        statuses[status] = statuses.get(status, 0) + 1
        if status in (200, 302):
            ok[kind] = ok.get(kind, 0) + 1
    for minute, ms in sorted(minutes.items()):
        print(
            f"  minute {minute + 1}: {len(ms):,} requests, p50 {percentile(ms, 0.5):.0f} ms, "
            f"p99 {percentile(ms, 0.99):.0f} ms, max {max(ms):.0f} ms"
        )
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    lost = {
        "webhook": ok.get("webhook", 0) - grown.get("comment", 0),
        "click": ok.get("click", 0) - grown.get("link_click", 0),
        "signup": ok.get("signup", 0) - grown.get("signup", 0),
        "replay": ok.get("replay", 0) - (grown.get("deliveries", 0) - grown.get("comment", 0)),
    }
    first, last = minutes[min(minutes)], minutes[max(minutes)]
    growth = percentile(last, 0.99) / max(percentile(first, 0.99), 1e-9)
    errors = sum(n for s, n in statuses.items() if s >= 500 or s == 0)
    print(f"  answers {statuses}; lost {lost}")
    met = growth <= GOAL_P99_GROWTH and errors == 0 and not any(lost.values())
    print(
        f"Goals: last minute's p99 within {GOAL_P99_GROWTH}x of the first's ({growth:.2f}x), "
        f"no 5xx ({errors}), nothing lost: " + ("met" if met else "MISSED")
    )
    figures = {
        "bare_rate": round(bare_rate),
        "rally_saturated_rate": round(sustained),
        "of_bare": round(sustained / bare_rate, 3),
        "rate": round(rate),
        "p99_first_ms": round(percentile(first, 0.99), 1),
        "p99_last_ms": round(percentile(last, 0.99), 1),
        "p99_growth": round(growth, 2),
        "errors": errors,
        "lost": lost,
        "statuses": {str(k): v for k, v in statuses.items()},
    }
    goal = {"p99_growth_at_most": GOAL_P99_GROWTH, "errors": 0, "lost": 0}
    print(json.dumps({"benchmark": "serve_load", **figures, "goal": goal, "met": met}))


if __name__ == "__main__":
    main()
