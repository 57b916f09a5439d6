"""Rally on more than one worker, on PostgreSQL: events through the follow-up rules by one
worker and by two at once, and a deployment run's cost beside an in-process flow run.

Events: the example campaign's simulated engagement (as `benchmarks/events.py` makes it) is
ingested once into a prepared database, which each side copies (`CREATE DATABASE ... TEMPLATE`),
so both start from the same rows. One side runs `process_pending` in one worker process, the
other in two worker processes at once; each is timed from the workers' start to the last one's
end. Both stores must end with every event processed once and the same follow-ups decided.
PostgreSQL's share of the CPU used meanwhile is printed (its processes' CPU time over theirs
plus the workers'): on two cores, the workers and the database share them. Goal: two workers
process at least 1.5 times the events per second of one.

Leads: queued leads to a HubSpot fake by one worker and by two at once, each from a copy of
one prepared database: to an unlimited fake (leads per second, printed), and to a fake that
allows 100 requests per rolling 10 s, where the two workers share one budget through the store.
Goal there: no 429 after the first window, and in each whole 10 s window from the first call
at least 0.9 of the limit's 100 calls answered (on average).

Deployment: a Prefect server (`prefect server start`), `rally deploy --paused`, one process
worker; the `retention-purge` deployment (nothing to purge) is triggered through the API, timed
from the trigger to its run starting and to its end; beside it, the same flow called in-process
against the same server. Figures only, no goal (a worker polls every `--poll` seconds).

    .venv/bin/python benchmarks/scale.py [--events 200000] [--rounds 3] [--poll 2] [--no-deploy]
"""
# ruff: noqa: E402

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx
from sqlalchemy import func, select
from sqlmodel import col

from benchmarks.events import NOW, PUBLIC_URL, new_store, postgres_databases, write_events
from store.db import engine_for, transaction
from store.models import EngagementEvent, FollowUp, OutboxMessage
from tasks.engagement.events import ingest
from tasks.engagement.files import read_events

GOAL_SPEEDUP = 1.5
GOAL_CEILING = 0.9
BATCH = 2000  # process_pending's own default


def _worker(url: str, ready: Any, go: Any, results: Any) -> None:
    """One worker: import everything, wait for the start, process the queue, report."""
    from tasks.engagement.processing import process_pending

    ready.release()
    go.wait()
    began = os.times()
    events = process_pending(engine_for(url), now=NOW, public_url=PUBLIC_URL, batch=BATCH).events
    ended = os.times()
    results.put((events, ended.user + ended.system - began.user - began.system))


def postgres_cpu() -> float:
    """Seconds of CPU every PostgreSQL process on this machine has used (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            if name.startswith("postgres"):
                values = fields[1].split()
                total += int(values[11]) + int(values[12])  # utime, stime
        except (OSError, IndexError):
            continue
    return total / tick


def run_workers(url: str, workers: int) -> dict[str, Any]:
    """`workers` processes on one store's queue, started together once all have imported."""
    spawn = multiprocessing.get_context("spawn")
    ready, go, results = spawn.Semaphore(0), spawn.Event(), spawn.Queue()
    processes = [
        spawn.Process(target=_worker, args=(url, ready, go, results)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    pg_before = postgres_cpu()
    began = time.perf_counter()
    go.set()
    done = [results.get(timeout=3600) for _ in processes]
    seconds = time.perf_counter() - began
    pg_cpu = postgres_cpu() - pg_before
    for process in processes:
        process.join()
    counts = [events for events, _ in done]
    worker_cpu = sum(cpu for _, cpu in done)
    return {
        "workers": workers,
        "events": sum(counts),
        "by_worker": counts,
        "seconds": round(seconds, 2),
        "per_second": round(sum(counts) / seconds),
        "postgres_cpu_share": round(pg_cpu / max(pg_cpu + worker_cpu, 1e-9), 2),
    }


def outcome(url: str) -> dict[str, Any]:
    engine = engine_for(url)
    with transaction(engine, write=False) as session:
        waiting = session.execute(
            select(func.count()).where(col(EngagementEvent.processed_at).is_(None))
        ).scalar_one()
        decided = session.execute(
            select(col(FollowUp.status), func.count()).group_by(col(FollowUp.status))
        ).all()
        outbox = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
    return {"waiting": waiting, "followups": dict(sorted(decided)), "outbox": outbox}


def events_side(count: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, postgres_databases() as (make, checkpoint):
        path = Path(tmp) / "events.jsonl"
        _, unique = write_events(new_store(f"sqlite:///{tmp}/sim.db"), path, count)
        template = make()
        engine = new_store(template)
        ingested = ingest(engine, read_events(path), now=NOW)
        with transaction(engine, write=False) as session:
            pending = session.execute(
                select(func.count()).where(col(EngagementEvent.processed_at).is_(None))
            ).scalar_one()
        engine.dispose()
        print(
            f"Events: {unique:,} stored ({ingested.repeated:,} redelivered), "
            f"{pending:,} waiting for the rules"
        )
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        ends: dict[int, dict[str, Any]] = {}
        for _ in range(rounds):
            for workers in (1, 2):
                copy = make(template)
                checkpoint()
                result = run_workers(copy, workers)
                ends[workers] = outcome(copy)
                engine_for(copy).dispose()
                runs[workers].append(result)
                print(
                    f"  {workers} worker(s): {result['events']:,} events in {result['seconds']} s, "
                    f"{result['per_second']:,}/s (by worker {result['by_worker']}); "
                    f"PostgreSQL took {result['postgres_cpu_share']:.0%} of the CPU"
                )
    one = statistics.median(r["per_second"] for r in runs[1])
    two = statistics.median(r["per_second"] for r in runs[2])
    same = ends[1] == ends[2] and ends[1]["waiting"] == 0
    print(
        f"  Two workers: {two / one:.2f}x one worker's rate (goal {GOAL_SPEEDUP}x); "
        f"both stores end the same, nothing left: {same}"
    )
    return {
        "pending": pending,
        "one_per_second": one,
        "two_per_second": two,
        "speedup": round(two / one, 2),
        "same_outcome": same,
        "outcome": ends[1],
        "runs": runs,
    }


def _lead_worker(url: str, api: str, token: str, home: str, ready: Any, go: Any, out: Any) -> None:
    """One worker syncing a store's queued leads to the HubSpot fake at `api`."""
    os.environ.update(
        {"RALLY_DATABASE_URL": url, "RALLY_HOME": home, "RALLY_HUBSPOT_API_URL": api}
        | {"RALLY_HUBSPOT_TOKEN": token}
    )
    from config.settings import get_settings
    from store.db import open_store
    from store.types import utcnow
    from tasks.leads.sync import sync_leads

    settings = get_settings()
    engine = open_store(settings)
    ready.release()
    go.wait()
    reports = sync_leads(engine, settings, now=utcnow)
    out.put(sum(r.sent for r in reports.values()))


def sync_workers(url: str, fake: Any, workers: int, home: str) -> tuple[int, float]:
    spawn = multiprocessing.get_context("spawn")
    ready, go, out = spawn.Semaphore(0), spawn.Event(), spawn.Queue()
    processes = [
        spawn.Process(target=_lead_worker, args=(url, fake.url, fake.token, home, ready, go, out))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    began = time.perf_counter()
    go.set()
    sent = sum(out.get(timeout=3600) for _ in processes)
    seconds = time.perf_counter() - began
    for process in processes:
        process.join()
    return sent, seconds


def leads_side(unlimited_leads: int, limited_leads: int) -> dict[str, Any]:
    import shutil

    from tests.fakes.hubspot_api import FakeHubSpot
    from tests.helpers import HUBSPOT_PROPERTIES, make_leads

    with tempfile.TemporaryDirectory() as tmp, postgres_databases() as (make, checkpoint):
        folder = Path(tmp) / "campaign"
        shutil.copytree(ROOT / "examples" / "youth-vote", folder)

        def prepared(rate: str, leads: int) -> str:
            campaign = folder / "campaign.yaml"
            text = (ROOT / "examples" / "youth-vote" / "campaign.yaml").read_text()
            start, end = text.index("destinations:"), text.index("roster:")
            block = f"destinations:\n  - name: hub\n    type: hubspot\n{rate}"
            campaign.write_text(text[:start] + block + text[end:])
            url = make()
            subprocess.run(
                [sys.executable, "-m", "cli.main", "campaign", "apply", str(campaign)],
                env=os.environ | {"PYTHONPATH": str(ROOT), "RALLY_DATABASE_URL": url},
                check=True,
                capture_output=True,
            )
            make_leads(engine_for(url), "first-vote-pa-2027", leads)
            engine_for(url).dispose()
            return url

        fast = prepared("    rate: {requests: 100000, per_seconds: 1}\n", unlimited_leads)
        limited = prepared("", limited_leads)
        # accounts where `rally leads check --create-missing` made Rally's properties
        unlimited_fake = FakeHubSpot(rate=None, properties=HUBSPOT_PROPERTIES).start()
        rates = {}
        for workers in (1, 2):
            checkpoint()
            sent, seconds = sync_workers(make(fast), unlimited_fake, workers, tmp)
            rates[workers] = sent / seconds
            print(
                f"Leads to an unlimited HubSpot fake, {workers} worker(s): {sent:,} in "
                f"{seconds:.1f} s ({rates[workers]:,.0f}/s)"
            )
        unlimited_fake.stop()
        fake = FakeHubSpot(rate=(100, 10.0), sliding=True, properties=HUBSPOT_PROPERTIES).start()
        sent, seconds = sync_workers(make(limited), fake, 2, tmp)
        answered = sorted(r.at for r in fake.requests if r.status != 429)
        calls, spread = len(answered), answered[-1] - answered[0]
        full = int(spread // 10.0)  # whole windows from the first call
        per_window = [
            sum(1 for a in answered if k * 10.0 <= a - answered[0] < (k + 1) * 10.0)
            for k in range(full)
        ]
        late = sum(1 for r in fake.requests if r.status == 429 and r.at - fake.requests[0].at > 10)
        fake.stop()
        share = statistics.mean(per_window) / 100 if per_window else 0.0
        print(
            f"Leads to HubSpot at 100 per 10 s, 2 workers: {sent:,} in {seconds:.1f} s over "
            f"{calls} calls; calls answered in each whole 10 s window {per_window}: "
            f"{share:.2f} of the limit; 429s after the first window: {late}"
        )
        return {
            "unlimited_per_second": {str(k): round(v) for k, v in rates.items()},
            "unlimited_two_over_one": round(rates[2] / rates[1], 2),
            "limited_sent": sent,
            "limited_share_of_limit": round(share, 3),
            "limited_429s_after_first_window": late,
            "limited_all_sent": sent == limited_leads,
        }


def deploy_side(poll: float) -> dict[str, Any]:
    """Trigger-to-start and trigger-to-end of a deployment run, beside an in-process run."""
    bin_ = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        port = _free_port()
        api = f"http://127.0.0.1:{port}/api"
        quiet = {"PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RALLY_"))}
        base |= quiet | {"PYTHONPATH": str(ROOT), "RALLY_HOME": str(scratch / "home")}
        server = subprocess.Popen(
            [str(bin_ / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=base | {"PREFECT_HOME": str(scratch / "server")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        worker = None
        try:
            _wait_for(api)
            env = base | {"PREFECT_API_URL": api, "PREFECT_HOME": str(scratch / "client")}
            subprocess.run(
                [str(bin_ / "rally"), "deploy", "--paused"],
                env=env,
                check=True,
                capture_output=True,
            )
            worker = subprocess.Popen(
                [str(bin_ / "prefect"), "worker", "start", "--pool", "rally"],
                env=env | {"PREFECT_WORKER_QUERY_SECONDS": str(poll)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deployed = [_trigger(api, "retention-purge/retention-purge") for _ in range(3)]
            code = (
                "import time\nfrom flows.leads import retention_purge\nretention_purge()\n"
                "began = time.perf_counter()\nretention_purge()\n"
                "print(time.perf_counter() - began)"
            )
            inline = subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
            )
        finally:
            for process in (worker, server):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
    in_process = float(inline.stdout.split()[-1])
    to_start = statistics.median(d["to_start"] for d in deployed)
    to_end = statistics.median(d["to_end"] for d in deployed)
    print(
        f"Deployment run (worker polling every {poll:g} s): {to_start:.1f} s from trigger to "
        f"start, {to_end:.1f} s to its end; the same flow in-process: {in_process:.2f} s "
        f"(overhead {to_end - in_process:.1f} s per run)"
    )
    return {
        "poll_seconds": poll,
        "trigger_to_start_s": round(to_start, 2),
        "trigger_to_end_s": round(to_end, 2),
        "in_process_s": round(in_process, 3),
    }


def _trigger(api: str, name: str) -> dict[str, float]:
    deployment = httpx.get(f"{api}/deployments/name/{name}", timeout=10).json()
    began = time.perf_counter()
    run = httpx.post(
        f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10
    ).json()
    started = None
    while True:
        state = httpx.get(f"{api}/flow_runs/{run['id']}", timeout=10).json()
        if started is None and state["state_type"] in ("RUNNING", "COMPLETED", "FAILED"):
            started = time.perf_counter() - began
        if state["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
            if state["state_type"] != "COMPLETED":
                raise RuntimeError(f"the run ended {state['state_type']}")
            return {"to_start": started or 0.0, "to_end": time.perf_counter() - began}
        time.sleep(0.05)


def _wait_for(api: str) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the Prefect server did not start in 3 minutes")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=2.0)
    parser.add_argument("--no-deploy", action="store_true")
    parser.add_argument("--leads", type=int, default=20_000, help="to the unlimited fake")
    parser.add_argument("--limited-leads", type=int, default=25_000, help="to 100 per 10 s")
    args = parser.parse_args()
    print(f"This machine: {os.cpu_count()} cores")
    r: dict[str, Any] = {"benchmark": "scale", "cores": os.cpu_count()}
    r["events"] = events_side(args.events, args.rounds)
    r["leads"] = leads_side(args.leads, args.limited_leads)
    if not args.no_deploy:
        r["deployment"] = deploy_side(args.poll)
    leads = r["leads"]
    met = r["events"]["speedup"] >= GOAL_SPEEDUP and r["events"]["same_outcome"]
    met = met and leads["limited_all_sent"] and leads["limited_429s_after_first_window"] == 0
    met = met and leads["limited_share_of_limit"] >= GOAL_CEILING
    print(
        f"Goal: two workers at least {GOAL_SPEEDUP}x one on events with the same outcome; "
        f"HubSpot's limit held across two workers (no 429 after the first window, at least "
        f"{GOAL_CEILING} of the limit in each whole window): {'met' if met else 'MISSED'}"
    )
    r["goal"] = {"events_speedup": GOAL_SPEEDUP, "hubspot_share_of_limit": GOAL_CEILING}
    print(json.dumps({**r, "met": met}, default=str))


if __name__ == "__main__":
    main()
