"""Signed TikTok webhooks against `rally serve` on loopback: 1,000 requests a second for 30
seconds, every one a new comment; then the store is counted.

`rally serve` runs as its own process on a fresh SQLite store, as it would in production. The
load is open-loop: request i is due at start + i / rate and its latency runs from that moment
to the end of its answer, so a server that stalls shows as latency, not as a slower rate. A
small asyncio HTTP/1.1 client sends over several keep-alive connections; bodies and signatures
are made before the clock starts. Afterwards every 200 must be a stored event ("lost" counts
those that are not), and 100 bodies sent again must count as deliveries, not new rows.
Goal: the whole rate achieved, p99 under 50 ms, nothing lost.

    .venv/bin/python benchmarks/webhooks.py [--rate 1000] [--seconds 30] [--connections 32]
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-client-secret"
CLIENT_KEY = "bench-client-key"
GOAL_P99_MS = 50.0
REPLAYS = 100


def signed_request(port: int, n: int, signed_at: int) -> bytes:
    """The raw HTTP request of comment `n`, signed as TikTok signs it."""
    content = {"video_id": "v1", "comment_id": f"c{n}", "text": "hi", "username": f"fan{n}"}
    body = json.dumps(
        {
            "client_key": CLIENT_KEY,
            "event": "comment.create",
            "create_time": signed_at,
            "user_openid": f"open-{n}",
            "content": json.dumps(content),
        }
    ).encode()
    mac = hmac.new(SECRET.encode(), f"{signed_at}.".encode() + body, hashlib.sha256)
    head = (
        f"POST /webhooks/tiktok HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nTikTok-Signature: t={signed_at},s={mac.hexdigest()}"
        f"\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)  # seconds from due to answered
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    last_sent: float = 0.0  # seconds from the start to the last request released
    last_answer: float = 0.0  # ... to the last answer read
    client_cpu: float = 0.0  # the load generator's own CPU share of one core

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


async def exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, bool]:
    """Send one request and read its answer; returns (status, connection still open)."""
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close"


async def run_load(port: int, requests: list[bytes], rate: float, connections: int) -> Load:
    """Open loop: a dispatcher releases request i at start + i/rate to whichever connection
    is free; the latency counts from the due time, including any wait for a connection."""
    load = Load()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def worker() -> None:
        conn = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            due, request = item
            try:
                status, open_ = await asyncio.wait_for(exchange(conn, request), timeout=10)
                load.statuses[status] = load.statuses.get(status, 0) + 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                load.errors.append(f"{type(exc).__name__}: {exc}")
                open_ = False
            load.latencies.append(time.perf_counter() - due)
            if not open_:
                conn[1].close()
                conn = await asyncio.open_connection("127.0.0.1", port)
        conn[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    cpu, start = time.process_time(), time.perf_counter() + 0.1
    for i, request in enumerate(requests):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((due, request))
    load.last_sent = time.perf_counter() - start
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    load.last_answer = time.perf_counter() - start
    load.client_cpu = (time.process_time() - cpu) / load.last_answer
    return load


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "RALLY_HOME": str(home),
        "RALLY_DATABASE_URL": "",
        "RALLY_TIKTOK_CLIENT_SECRET": SECRET,
        "RALLY_TIKTOK_CLIENT_KEY": CLIENT_KEY,
        "PYTHONPATH": str(ROOT),
    }
    home.mkdir(parents=True)
    log = (home / "serve.log").open("wb")
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--every", "3600"]
    process = subprocess.Popen(command, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit(f"rally serve did not answer /healthz:\n{(home / 'serve.log').read_text()}")


def stored(home: Path) -> tuple[int, int]:
    """(rows, deliveries) of TikTok events in the store."""
    with sqlite3.connect(home / "rally.db") as db:
        rows, deliveries = db.execute(
            "SELECT count(*), coalesce(sum(deliveries), 0) FROM engagement_events"
            " WHERE source = 'tiktok'"
        ).fetchone()
    return int(rows), int(deliveries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        process, port = start_server(home)
        try:
            signed_at = int(time.time())
            requests = [signed_request(port, n, signed_at) for n in range(count + 50)]
            warm = asyncio.run(run_load(port, requests[count:], 100, 4))  # first calls, imports
            print(f"Webhooks: {count:,} signed requests at {args.rate:,.0f}/s to rally serve")
            load = asyncio.run(run_load(port, requests[:count], args.rate, args.connections))
            rows, deliveries = stored(home)
            replay = asyncio.run(run_load(port, requests[:REPLAYS], 200, 4))
            rows_after, deliveries_after = stored(home)
        finally:
            process.terminate()
            process.wait(timeout=10)
    ms = [1000 * x for x in load.latencies]
    p50, p90, p99 = (percentile(ms, q) for q in (0.5, 0.9, 0.99))
    achieved = len(load.latencies) / max(load.last_sent, 1e-9)
    answered = len(load.latencies) / max(load.last_answer, 1e-9)
    lost = warm.ok + load.ok - rows
    replays_ok = replay.ok == REPLAYS and rows_after == rows
    replays_ok = replays_ok and deliveries_after == deliveries + REPLAYS
    print(
        f"  sent {len(load.latencies):,} at {achieved:,.0f}/s, answered at {answered:,.0f}/s "
        f"(last answer {load.last_answer:.1f} s after the start) | answers {load.statuses} | "
        f"{len(load.errors)} errors{' e.g. ' + load.errors[0] if load.errors else ''}\n"
        f"  the load generator used {load.client_cpu:.0%} of one core\n"
        f"  latency from the scheduled time: p50 {p50:.1f} ms, p90 {p90:.1f} ms, "
        f"p99 {p99:.1f} ms, max {max(ms):.1f} ms\n"
        f"  stored {rows:,} events for {warm.ok + load.ok:,} answered 200: {lost} lost\n"
        f"  {REPLAYS} replays: {replay.ok} answered 200, rows {rows:,} -> {rows_after:,}, "
        f"deliveries {deliveries:,} -> {deliveries_after:,}: {'ok' if replays_ok else 'WRONG'}"
    )
    met = (
        p99 < GOAL_P99_MS
        and lost == 0
        and not load.errors
        and load.ok == count
        and answered >= 0.99 * args.rate
        and replays_ok
    )
    print(
        f"Goal: {args.rate:,.0f}/s for {args.seconds:.0f} s, p99 under {GOAL_P99_MS:.0f} ms, "
        f"none lost, replays counted once: {'met' if met else 'MISSED'}"
    )
    figures = {
        "rate": args.rate,
        "seconds": args.seconds,
        "rate_sent": round(achieved),
        "rate_achieved": round(answered),
        "ok": load.ok,
        "errors": len(load.errors),
        "p50_ms": round(p50, 1),
        "p90_ms": round(p90, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(ms), 1),
        "lost": lost,
        "replays_ok": replays_ok,
    }
    goal = {"p99_ms_under": GOAL_P99_MS, "lost": 0, "rate_achieved": args.rate}
    print(json.dumps({"benchmark": "webhooks", **figures, "goal": goal, "met": met}))


if __name__ == "__main__":
    main()
