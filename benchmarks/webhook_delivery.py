"""How fast Rally posts outgoing webhooks, against a bare signed POST loop in the same run.

A receiver in its own process (the standard library's HTTP server, keep-alive) checks every
delivery's Standard Webhooks signature and counts each `webhook-id`. The floor: a loop that signs
the same payloads and posts them one after another over one httpx connection, storing nothing.
Rally: the same number of events emitted to one subscription (queued in the outbox, as a
service emits them), then `deliver_webhooks` until none waits: claimed a hundred at a time,
posted in order, each batch recorded in the store.

`--database-url` names a PostgreSQL server (the benchmark makes and drops its own database
there); without it, the store is SQLite.

Goal (issue 20): Rally's rate at least 0.5 of the bare loop's, with every delivery received once
and every signature good. Run alone, or from `benchmarks/api.py` (`--deliveries`).

    .venv/bin/python benchmarks/webhook_delivery.py [--deliveries 10000] [--database-url URL]
"""

import argparse
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SHARE = 0.5
SECRET_KEY = "benchmark-secret-key-0123456789-abcdefghijkl"


class Receiver(BaseHTTPRequestHandler):
    """Checks each delivery's signature and counts its webhook-id; `GET /count` tells."""

    protocol_version = "HTTP/1.1"
    key = b""
    seen: ClassVar[dict[str, int]] = {}
    bad = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        message_id = self.headers["webhook-id"]
        signed = f"{message_id}.{self.headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
        given = self.headers["webhook-signature"].split(",", 1)[1].encode()
        if hmac.compare_digest(expected, given):
            Receiver.seen[message_id] = Receiver.seen.get(message_id, 0) + 1
            self._answer(204, b"")
        else:
            Receiver.bad += 1
            self._answer(400, b"bad signature")

    def do_GET(self) -> None:
        counts = {"unique": len(self.seen), "total": sum(self.seen.values()), "bad": self.bad}
        self._answer(200, json.dumps(counts).encode())

    def do_DELETE(self) -> None:  # forget what was seen: the next part begins
        Receiver.seen, Receiver.bad = {}, 0
        self._answer(204, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def receive(port: int, secret: str) -> None:
    Receiver.key = base64.b64decode(secret.removeprefix("whsec_"))
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()


def counted(http: Any, url: str) -> dict[str, int]:
    return dict(http.get(url).json())


@contextmanager
def own_database(server_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server of `server_url`, dropped afterwards ("" for
    none: SQLite)."""
    if not server_url:
        yield ""
        return
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(server_url)
    admin_url = server.set(drivername="postgresql", database="postgres")
    name = f"rally_bench_hooks_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(
            admin_url.render_as_string(hide_password=False), autocommit=True
        ) as db:
            db.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        where = server.render_as_string(hide_password=True)
        raise SystemExit(f"--database-url {where}: cannot make a database there: {exc}") from None
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(
            admin_url.render_as_string(hide_password=False), autocommit=True
        ) as db:
            db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def bare_loop(url: str, secret: str, payloads: list[dict[str, Any]]) -> float:
    """Sign and post each payload in turn over one connection; seconds taken."""
    import httpx

    from integrations.webhooks import body_of, signature

    started = time.perf_counter()
    with httpx.Client(timeout=10) as http:
        for payload in payloads:
            body = body_of(payload)
            stamp = int(time.time())
            headers = {
                "content-type": "application/json",
                "webhook-id": payload["id"],
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature(secret, payload["id"], stamp, body),
            }
            if http.post(url, content=body, headers=headers).status_code != 204:
                raise SystemExit("the receiver refused a bare delivery")
    return time.perf_counter() - started


def measure(deliveries: int, database_url: str = "") -> dict[str, Any]:
    """Both loops against one receiver; the figures, the goal and whether it was met."""
    import httpx
    from sqlmodel import select

    from benchmarks.webhooks import free_port
    from config.settings import Settings
    from store.crypto import Sealer
    from store.db import engine_for, transaction, upgrade
    from store.models import Campaign, OutboxMessage
    from store.types import utcnow
    from tasks.webhooks.deliver import deliver_webhooks
    from tasks.webhooks.events import Event, emit
    from tasks.webhooks.subscriptions import add_subscription

    with tempfile.TemporaryDirectory() as folder, own_database(database_url) as given:
        url = given or f"sqlite:///{Path(folder) / 'rally.db'}"
        engine = engine_for(url)
        upgrade(engine)
        now = utcnow()
        port = free_port()
        with transaction(engine) as session:
            campaign = Campaign(
                slug="bench-hooks",
                name="Webhook benchmark",
                objective="signups",
                political=False,
                paid=False,
                jurisdiction="US",
                timezone="UTC",
                start_date=now.date(),
                weeks=12,
                spec={},
                spec_hash="0" * 64,
            )
            session.add(campaign)
            session.flush()
            made = add_subscription(
                session,
                campaign,
                url=f"http://127.0.0.1:{port}/hooks",
                event_types=["lead.created"],
                description="benchmark",
                sealer=Sealer(SECRET_KEY),
                actor="bench",
                now=now,
            )
        secret = made.secret
        receiver = subprocess.Popen([sys.executable, __file__, "--receive", str(port), secret])
        endpoint = f"http://127.0.0.1:{port}/hooks"
        try:
            with httpx.Client() as http:
                for _ in range(200):  # until it listens
                    try:
                        counted(http, endpoint)
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                events = [
                    Event(
                        "lead.created",
                        key=f"lead:{n}:created",
                        subject=f"lead:{n}",
                        collection="leads",
                        data={"lead": n, "email": f"person{n}@example.org", "source": "signup"},
                    )
                    for n in range(deliveries)
                ]
                with transaction(engine) as session:
                    emit(session, campaign.id or 0, events, at=now)
                # The floor's payloads: the very ones Rally queued, so both post the same bytes.
                with transaction(engine, write=False) as session:
                    payloads = [
                        m.payload
                        for m in session.exec(
                            select(OutboxMessage)
                            .where(OutboxMessage.channel == "webhook")
                            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
                        )
                    ]
                bare_loop(endpoint, secret, payloads[:200])  # warm up both ends
                http.delete(endpoint)
                bare = bare_loop(endpoint, secret, payloads)
                bare_counts = counted(http, endpoint)
                http.delete(endpoint)

                settings = Settings(
                    home=Path(folder) / "home", database_url=url, secret_key=SECRET_KEY
                )
                started = time.perf_counter()
                report = deliver_webhooks(engine, settings, now=utcnow)
                rally = time.perf_counter() - started
                rally_counts = counted(http, endpoint)
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
            engine.dispose()
    bare_rate, rally_rate = deliveries / bare, deliveries / rally
    share = rally_rate / bare_rate
    whole = (
        rally_counts == {"unique": deliveries, "total": deliveries, "bad": 0}
        and bare_counts["unique"] == deliveries
        and report.sent == deliveries
    )
    return {
        "deliveries": deliveries,
        "bare_per_s": round(bare_rate),
        "rally_per_s": round(rally_rate),
        "share_of_bare": round(share, 2),
        "received_once_each": whole,
        "errors": report.errors[:5],
        "goal": {"share_of_bare_at_least": GOAL_SHARE, "received_once_each": True},
        "met": share >= GOAL_SHARE and whole,
    }


def report(figures: dict[str, Any]) -> None:
    print(f"{figures['deliveries']:,} webhook deliveries to a loopback receiver:")
    print(f"  bare signed POST loop   {figures['bare_per_s']:7,} /s")
    print(
        f"  Rally (outbox, signed)  {figures['rally_per_s']:7,} /s  "
        f"= {figures['share_of_bare']:.2f} of the bare loop"
    )
    print(f"  each received once, every signature good: {figures['received_once_each']}")
    print(
        f"Goal: at least {GOAL_SHARE} of the bare loop, each once: "
        + ("met" if figures["met"] else "MISSED")
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--receive":
        receive(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument(
        "--database-url",
        default="",
        help="A PostgreSQL server, where the benchmark makes and drops its own database "
        "(default: SQLite)",
    )
    args = parser.parse_args()
    figures = measure(args.deliveries, args.database_url)
    report(figures)
    print(json.dumps({"benchmark": "webhook_delivery", **figures}))


if __name__ == "__main__":
    main()
