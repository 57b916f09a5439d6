"""Lead sync against rate-limited fakes of HubSpot and Action Network, over loopback.

20,000 leads go to a HubSpot fake that allows 100 requests per rolling 10 s (batches of 100:
200 calls), and 200 leads to an Action Network fake that allows 4 requests a second (one call
each). Before the HubSpot sync starts, another app on the same account spends part of the
window's budget, as happens on a real account: Rally's limiter does not know, meets 429s in
the first window, and must adapt to the server's answers without any 429 after it.

An API across the internet answers in a few hundred ms, where the fakes answer at once; so
the HubSpot sync runs once more against a fake account that answers each call `--latency`
seconds after it came (`--far` more leads, 50,000: five windows, nobody else on the account),
where one call at a time would reach a third of the limit: the destination's calls at once
must make up for it. Its share of the ceiling is printed beside the others, without a goal of
its own; calls at once cannot start a window with a burst as the ceiling assumes, but pace it
as they did the window before, so more windows come nearer the ceiling.

The headroom Rally's own speed gives is for a slow day: the HubSpot sync runs once more (20,000
more leads, another account, the other app first again) while busy processes take the machine's
cores (`--busy`, by default enough that each runnable process gets half a core), after Rally
alone syncs 20,000 more to the unlimited fake beside them, for its own rate that day. How much
slower the machine ran for Rally is measured in the same run: a fixed piece of pure Python
work timed before and while they run. Printed beside the others, without a goal of its own.

The ceiling is the fastest the remote's limit allows: N calls at L per W seconds need
(ceil(N / L) - 1) * W seconds from the first call to the last (a window's worth at a time),
the other app's calls included. The achieved share is that ideal time over the time taken.
Goal: at least 0.9 of each ceiling, and no 429 after the first window.

Rally's own cost is measured against a HubSpot fake without a limit, beside a floor in the same
run: 20,000 more leads synced (from the queue to the outcomes recorded), then the same batches,
as Rally sent them, POSTed one after another with httpx to the same fake, each answer checked
and nothing read or stored. The fake runs in this process, so its own work counts on both
sides. Each side's rate is its median over `--rounds` rounds taken in turn (new leads each
round). Goal: Rally's unlimited rate at least half the bare loop's.

Beside it, what the goal leaves Rally: 20,000 more leads synced by Rally's own statements
alone (each batch claimed, its people read, marked sent), run on SQLite's driver with the
store's settings and nothing around them: what claiming, reading and recording cost the store.
Rally's time less the bare loop's and theirs is the rest: the Python around them, and the few
statements a sync runs besides (whether the campaign listens for `lead.synced`, the shared
rate limit's window, what waits). With no rest at all, Rally would reach the bare loop's time
over the two floors' sum, printed as the most the goal could show. And the leanest drain one
could write, on 20,000 more: those statements on the driver with, between the read and the mark,
each person's HubSpot properties made from their row, the batch POSTed with httpx and the ids
found in the answer; nothing checked, no rate limit, no events, no outcome but sent. Its share
of the bare loop is what any drain that stores its work could reach here.

Each side's CPU is that of the thread that syncs or loops (one call at a time, on the calling
thread): the rest of its time it waits for the fake's answers, which the fake works out on
threads of its own. So the goal caps Rally's own CPU at twice the bare loop's time less the
time Rally waited. Less its statements' floor and the bare loop's CPU (the HTTP work Rally does
too), what is left is printed per lead: all the goal allows for the rest (making the leads and
HubSpot's inputs, reading its answers, the transactions around the statements).

    .venv/bin/python benchmarks/sync.py [--hubspot 20000] [--action-network 200] [--rounds 3]
        [--latency 0.3] [--far 50000] [--busy N]
"""

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config.settings import Settings
    from tasks.drain import DrainReport

    Timed = tuple[float, DrainReport]
    Call = Callable[[list[Any], dict[int, Any], dict[int, dict[str, str]]], list[str]]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOAL_SHARE = 0.9
GOAL_OF_BARE = 0.5
CEILING_RATE = 100 * 100 // 10  # HubSpot's: 100 calls of 100 contacts per 10 s
SLUG = "first-vote-pa-2027"


def campaign_file(folder: Path) -> Path:
    """The example campaign with three destinations: two HubSpot accounts and Action Network."""
    import shutil

    shutil.copytree(ROOT / "examples" / "youth-vote", folder)
    campaign = folder / "campaign.yaml"
    text = campaign.read_text()
    start, end = text.index("destinations:"), text.index("roster:")
    block = (
        "destinations:\n"
        "  - name: hubspot\n    type: hubspot\n"
        "  - name: hubspot_far\n    type: hubspot\n"
        "  - name: hubspot_busy\n    type: hubspot\n"
        "  - name: hubspot_unlimited\n    type: hubspot\n"
        "    rate: {requests: 100000, per_seconds: 1}\n"
        # one call at a time, as the bare loop sends them: Rally's own work per lead
        "    in_flight: 1\n"
        "  - name: action_network\n    type: action_network\n"
    )
    campaign.write_text(text[:start] + block + text[end:])
    return campaign


def timed_sync(engine: "Engine", settings: "Settings", destination: str) -> "Timed":
    from store.types import utcnow
    from tasks.leads.sync import sync_leads

    started = time.perf_counter()
    reports = sync_leads(engine, settings, now=utcnow, destination=destination)
    return time.perf_counter() - started, reports[f"{SLUG}/{destination}"]


def ceiling_seconds(calls: int, limit: int, per: float) -> float:
    """The least time from the first of `calls` to the last under `limit` per `per` s."""
    return (math.ceil(calls / limit) - 1) * per


def refused_at(requests: list) -> list[float]:
    """When each refused request came, in seconds from the run's first request."""
    return [r.at - requests[0].at for r in requests if r.status == 429]


def late_429s(requests: list, window: float) -> int:
    """429s answered after the first `window` seconds of the run."""
    return sum(1 for at in refused_at(requests) if at > window)


def bare_loop(url: str, token: str, batches: list[Any]) -> tuple[float, float]:
    """Seconds to POST `batches` one after another with httpx, checking each answer and
    keeping nothing: the floor under Rally's unlimited sync; and the CPU seconds it spent."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    started, cpu = time.perf_counter(), time.thread_time()
    with httpx.Client() as client:
        for body in batches:
            client.post(url, json=body, headers=headers).raise_for_status()
    return time.perf_counter() - started, time.thread_time() - cpu


def driver_statement(statement: Any) -> tuple[str, Callable[[dict[str, Any]], list[Any]]]:
    """One of Rally's statements as SQLite's driver takes it: its text (literals inlined) and
    a maker of its positional parameters from named values (the statement's own for the rest)."""
    from sqlalchemy.dialects import sqlite

    compiled = statement.compile(dialect=sqlite.dialect())
    inlined: set[str] = set()

    def inline(match: "re.Match[str]") -> str:
        inlined.add(match[1])
        return "'" + str(compiled.binds[match[1]].value).replace("'", "''") + "'"

    sql = re.sub(r"__\[POSTCOMPILE_(\w+)\]", inline, compiled.string)
    names = [name for name in compiled.positiontup or [] if name not in inlined]
    return sql, lambda values: [
        values[name] if name in values else compiled.binds[name].value for name in names
    ]


def store_floor(
    engine: "Engine", destination: str, batch: int = 100, call: "Call | None" = None
) -> tuple[float, int]:
    """Seconds for Rally's own statements to sync the destination's queued leads, run bare on
    SQLite's driver with the store's own settings: each batch claimed, its people and their
    consents read, and marked sent, each in a transaction of its own as a drain has them, with
    nothing built, sent or checked; and how many were marked sent. What claiming, reading and
    recording cost the store per lead, whatever Rally does around them.

    With `call`, each batch also goes to the remote between the read and the mark: `call` gets
    the claimed rows, the people read (by contact id) and their consents, and returns the
    remote's id for each row."""
    import sqlite3
    import uuid

    from store.db import _sqlite_pragmas
    from store.types import sqlite_time, utcnow
    from tasks.drain import _sending
    from tasks.leads.records import CHANNEL, _people_queries
    from tasks.outbox import LEASE, _claiming

    claim, claim_values = driver_statement(
        _claiming("sqlite", by_destination=True, one_per_subject=True)
    )
    (people_sql, people_values), (consents_sql, consents_values) = (
        driver_statement(query) for query in _people_queries("sqlite")
    )
    connection = sqlite3.connect(str(engine.url.database), timeout=30)
    _sqlite_pragmas(connection, None)  # as the store's engine sets its connections
    cursor = connection.cursor()
    now, marked = utcnow(), 0
    started = time.perf_counter()
    while True:
        lease = uuid.uuid4().hex
        values = {
            "b_channel": CHANNEL,
            "b_destination": destination,
            "b_now": sqlite_time(now),
            "b_limit": batch,
            "b_until": sqlite_time(now + LEASE),
            "b_lease": lease,
        }
        cursor.execute("BEGIN IMMEDIATE")
        rows = cursor.execute(claim, claim_values(values)).fetchall()
        cursor.execute("COMMIT")
        if not rows:
            break
        ids = {"b_ids": json.dumps(sorted(int(row[5]) for row in rows))}
        cursor.execute("BEGIN")
        consents: dict[int, dict[str, str]] = {}
        for contact_id, channel, status in cursor.execute(consents_sql, consents_values(ids)):
            consents.setdefault(contact_id, {})[channel] = status
        people = {row[0]: row for row in cursor.execute(people_sql, people_values(ids))}
        cursor.execute("COMMIT")
        remote_ids = call(rows, people, consents) if call else ["1"] * len(rows)
        sent: list[Any] = [sqlite_time(now)]
        for row, remote_id in zip(rows, remote_ids, strict=True):
            sent += (row[0], lease, remote_id, None)
        cursor.execute("BEGIN IMMEDIATE")
        marked += len(cursor.execute(_sending(len(rows)), sent).fetchall())
        cursor.execute("COMMIT")
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, marked


def leanest_call(url: str, token: str, client: Any) -> "Call":
    """The least a drain must do with a claimed batch besides its statements: each person's
    HubSpot properties made from their row as read (tags, consents, source), the batch POSTed
    with httpx, and each row's contact id found in the answer. Nothing checked, nothing
    recorded beyond the ids: a floor, not a sync."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def call(
        rows: list[Any], people: dict[int, Any], consents: dict[int, dict[str, str]]
    ) -> list[str]:
        inputs = []
        for row in rows:
            person = people[int(row[5])]
            said = consents.get(person[0], {})
            properties = {
                "email": person[1],
                "phone": person[2],
                "firstname": person[3],
                "lastname": person[4],
                "zip": person[5],
                "rally_first_source_code": person[6],
                "rally_source_code": person[7],
                "rally_tags": ";".join(json.loads(person[8])),
                "rally_email_consent": said.get("email"),
                "rally_sms_consent": said.get("sms"),
                "rally_creator": person[11],
                "rally_campaign": SLUG,
            }
            json.loads(row[6])  # the message's payload: an upsert or an erasure
            properties = {name: value for name, value in properties.items() if value}
            inputs.append({"id": person[1], "idProperty": "email", "properties": properties})
        response = client.post(url, json={"inputs": inputs}, headers=headers)
        response.raise_for_status()
        ids = {r["properties"]["email"].lower(): r["id"] for r in response.json()["results"]}
        return [ids[people[int(row[5])][1].lower()] for row in rows]

    return call


def python_work() -> float:
    """Wall seconds of a fixed piece of pure Python work on this thread: how fast the machine
    runs for Rally right now (median of three)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(300_000))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """`count` processes that do nothing but use a core each while the block runs; each has
    started its loop when the block begins, and each is gone when it ends."""
    spin = "print('busy', flush=True)\nwhile True: pass"
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            hogs.append(subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE))
        for hog in hogs:
            if hog.stdout is None or hog.stdout.readline() != b"busy\n":
                raise RuntimeError("a busy process for the slow day did not start")
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def at_least_one(text: str) -> int:
    """A count the run cannot do without: a whole number, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubspot", type=at_least_one, default=20_000)
    parser.add_argument("--action-network", type=at_least_one, default=200)
    parser.add_argument("--spent", type=int, default=40, help="calls another app makes first")
    parser.add_argument(
        "--rounds", type=at_least_one, default=3, help="unlimited syncs and bare loops"
    )
    parser.add_argument(
        "--latency", type=float, default=0.3, help="seconds the far HubSpot fake takes to answer"
    )
    parser.add_argument(
        "--far", type=at_least_one, default=50_000, help="leads to the far HubSpot fake"
    )
    parser.add_argument(
        "--busy",
        type=at_least_one,
        default=2 * (os.cpu_count() or 1) - 1,
        help="busy processes during the slow-day sync (default: each runnable gets half a core)",
    )
    args = parser.parse_args()

    import httpx

    from tests.fakes.action_network_api import FakeActionNetwork
    from tests.fakes.hubspot_api import UPSERT, FakeHubSpot

    home = Path(tempfile.mkdtemp(prefix="rally-bench-sync-"))
    from tests.helpers import HUBSPOT_PROPERTIES

    # accounts where `rally leads check --create-missing` made Rally's properties
    hubspot = FakeHubSpot(rate=(100, 10.0), sliding=True, properties=HUBSPOT_PROPERTIES).start()
    unlimited = FakeHubSpot(rate=None, properties=HUBSPOT_PROPERTIES).start()
    far = FakeHubSpot(rate=(100, 10.0), sliding=True, properties=HUBSPOT_PROPERTIES).start()
    far.answer_after(args.latency)
    busy = FakeHubSpot(rate=(100, 10.0), sliding=True, properties=HUBSPOT_PROPERTIES).start()
    action_network = FakeActionNetwork(rate=(4, 1.0)).start()
    os.environ.update(
        {
            "RALLY_HOME": str(home / "home"),
            "RALLY_DATABASE_URL": "",
            "RALLY_HUBSPOT_TOKEN": hubspot.token,
            "RALLY_ACTION_NETWORK_API_URL": action_network.url,
            "RALLY_ACTION_NETWORK_TOKEN": action_network.token,
        }
    )
    from cli.main import main as rally
    from config.settings import get_settings
    from integrations.hubspot import HubSpotSettings
    from store.db import open_store
    from tests.helpers import make_leads

    try:
        rally(["campaign", "apply", str(campaign_file(home / "campaign"))])
    except SystemExit as exit_:
        if exit_.code:
            raise
    settings = get_settings()
    engine = open_store(settings)
    print(f"Queueing {args.hubspot:,} leads for HubSpot, {args.action_network} for Action Network")
    make_leads(engine, SLUG, args.hubspot, destinations=["hubspot"])
    make_leads(engine, SLUG, args.action_network, destinations=["action_network"], prefix="an")

    def against(fake: FakeHubSpot, name: str, run: Callable[[], None] | None = None) -> "Timed":
        settings.section(HubSpotSettings).api_url = fake.url
        if run:
            run()
        return timed_sync(engine, settings, name)

    from sqlmodel import select

    from store.db import transaction
    from store.models import Campaign
    from tasks.leads.records import destination_key

    with transaction(engine, write=False) as session:
        campaign_id = session.exec(select(Campaign.id).where(Campaign.slug == SLUG)).one()
    unlimited_key = destination_key(campaign_id or 0, "hubspot_unlimited")

    own_rates, bare_rates, own_sent = [], [], 0
    own_times, bare_times, store_times, own_cpus, bare_cpus = [], [], [], [], []
    lean_times: list[float] = []
    for round_ in range(args.rounds):
        make_leads(
            engine, SLUG, args.hubspot, destinations=["hubspot_unlimited"], prefix=f"u{round_}-"
        )
        seen = len(unlimited.requests)
        cpu = time.thread_time()
        own_seconds, own = against(unlimited, "hubspot_unlimited")
        own_cpus.append(time.thread_time() - cpu)
        own_sent += own.sent
        sent = [r.json for r in unlimited.requests[seen:] if r.path == UPSERT]
        bare_seconds, bare_cpu = bare_loop(unlimited.url + UPSERT, unlimited.token, sent)
        bare_cpus.append(bare_cpu)
        own_rates.append(args.hubspot / own_seconds)
        bare_rates.append(sum(len(body["inputs"]) for body in sent) / bare_seconds)
        make_leads(
            engine, SLUG, args.hubspot, destinations=["hubspot_unlimited"], prefix=f"s{round_}-"
        )
        store_seconds, marked = store_floor(engine, unlimited_key)
        if marked != args.hubspot:
            raise SystemExit(f"Rally's statements alone marked {marked:,} sent of {args.hubspot:,}")
        make_leads(
            engine, SLUG, args.hubspot, destinations=["hubspot_unlimited"], prefix=f"l{round_}-"
        )
        with httpx.Client() as client:
            call = leanest_call(unlimited.url + UPSERT, unlimited.token, client)
            lean_seconds, marked = store_floor(engine, unlimited_key, call=call)
        if marked != args.hubspot:
            raise SystemExit(f"The leanest drain marked {marked:,} sent of {args.hubspot:,}")
        own_times.append(own_seconds)
        bare_times.append(bare_seconds)
        store_times.append(store_seconds)
        lean_times.append(lean_seconds)
        print(
            f"Unlimited HubSpot fake, round {round_ + 1}: Rally {args.hubspot:,} leads in "
            f"{own_seconds:.2f} s ({own_rates[-1]:,.0f}/s); the same {len(sent)} batches bare "
            f"in {bare_seconds:.2f} s ({bare_rates[-1]:,.0f}/s); Rally's statements for "
            f"{args.hubspot:,} more, bare on the driver, {store_seconds:.2f} s; the leanest "
            f"drain {lean_seconds:.2f} s; CPU: Rally {own_cpus[-1]:.2f} s, bare {bare_cpu:.2f} s"
        )
    own_rate, bare_rate = statistics.median(own_rates), statistics.median(bare_rates)
    of_bare = own_rate / bare_rate if bare_rate else 0.0
    print(
        f"Unlimited, median of {args.rounds}: Rally {own_rate:,.0f} leads/s, bare loop "
        f"{bare_rate:,.0f}/s: {of_bare:.2f} of it"
    )
    own_s, bare_s = statistics.median(own_times), statistics.median(bare_times)
    store_s = statistics.median(store_times)
    no_rest, rest_s = bare_s / (bare_s + store_s), own_s - bare_s - store_s
    print(
        f"  of Rally's {own_s:.2f} s (medians): the calls about {bare_s:.2f} s (the bare loop), "
        f"its claim, read and record {store_s:.2f} s (bare on the driver), the rest "
        f"{rest_s:.2f} s; with no rest at all, Rally would reach {no_rest:.2f} of the bare loop"
    )
    lean_s = statistics.median(lean_times)
    lean_of_bare = args.hubspot / lean_s / bare_rate if bare_rate else 0.0
    print(
        f"  the leanest drain (Rally's statements on the driver, the call, nothing checked): "
        f"{lean_s:.2f} s, {lean_of_bare:.2f} of the bare loop"
    )
    own_cpu, bare_cpu = statistics.median(own_cpus), statistics.median(bare_cpus)
    waited = own_s - own_cpu  # for the fake's answers, as the bare loop waits bare_s - bare_cpu
    cpu_allowed = bare_s / GOAL_OF_BARE - waited
    left = cpu_allowed - store_s - bare_cpu  # for building leads, reading answers, ...
    print(
        f"  CPU of the syncing thread (medians): Rally {own_cpu:.2f} s, {own_cpu / bare_cpu:.1f}x "
        f"the bare loop's {bare_cpu:.2f} s; each waited for the fake {waited:.2f} s and "
        f"{bare_s - bare_cpu:.2f} s; at {GOAL_OF_BARE} of the bare loop Rally could spend "
        f"{cpu_allowed:.2f} s ({cpu_allowed / own_cpu:.2f} of what it spent); less its "
        f"statements ({store_s:.2f} s) and the bare loop's own work ({bare_cpu:.2f} s), that "
        f"leaves {left * 1e6 / args.hubspot:.1f} µs a lead for the rest"
    )

    def other_app(fake: FakeHubSpot) -> Callable[[], None]:
        def spend() -> None:
            with httpx.Client() as client:
                for _ in range(args.spent):
                    client.post(
                        f"{fake.url}/crm/v3/objects/contacts/batch/upsert",
                        json={"inputs": []},
                        headers={"Authorization": f"Bearer {fake.token}"},
                    )

        return spend

    def share(fake: FakeHubSpot, seconds: float) -> tuple[int, float, float]:
        """Rally's calls to a paced fake the other app spent from first, the ceiling's seconds
        (the other app's calls included), and Rally's share of it."""
        calls = sum(1 for r in fake.requests if r.status != 429) - args.spent
        ideal = ceiling_seconds(calls + args.spent, 100, 10.0)
        return calls, ideal, ideal / seconds if seconds else 0.0

    hub_seconds, hub = against(hubspot, "hubspot", other_app(hubspot))
    hub_calls, hub_ideal, hub_share = share(hubspot, hub_seconds)
    hub_refused = refused_at(hubspot.requests)
    hub_429, hub_late = len(hub_refused), late_429s(hubspot.requests, 10.0)
    when = ", ".join(f"{at:.2f}" for at in hub_refused)
    print(
        f"HubSpot at 100 per 10 s: {hub.sent:,} sent in {hub_seconds:.1f} s over "
        f"{hub_calls} calls; ceiling {hub_ideal:.1f} s: {hub_share:.2f} of it; "
        f"429s {hub_429} ({hub_late} after the first window)"
        + (f" at {when} s from the first call" if when else "")
    )

    make_leads(engine, SLUG, args.far, destinations=["hubspot_far"], prefix="far-")
    from sqlmodel import delete

    from store.models import RateWindow

    with transaction(engine) as session:  # another account: its window starts empty
        session.execute(delete(RateWindow))
    far_seconds, far_report = against(far, "hubspot_far")
    far_calls = sum(1 for r in far.requests if r.status != 429)
    far_share = ceiling_seconds(far_calls, 100, 10.0) / far_seconds if far_seconds else 0.0
    print(
        f"HubSpot at 100 per 10 s answering after {args.latency} s: {far_report.sent:,} sent in "
        f"{far_seconds:.1f} s, {far.most_in_flight} calls at once at most; "
        f"{far_share:.2f} of the ceiling; 429s {far.rate_limited}"
    )

    make_leads(engine, SLUG, args.hubspot, destinations=["hubspot_busy"], prefix="busy-")
    make_leads(engine, SLUG, args.hubspot, destinations=["hubspot_unlimited"], prefix="alone-")
    quiet = python_work()
    with busy_processes(args.busy):
        before = python_work()
        alone_seconds, alone = against(unlimited, "hubspot_unlimited")
        with transaction(engine) as session:  # HubSpot's window is kept per account: start anew
            session.execute(delete(RateWindow))
        busy_seconds, busy_report = against(busy, "hubspot_busy", other_app(busy))
        slower = (before + python_work()) / 2 / quiet  # before the syncs and after them
    busy_calls, _, busy_share = share(busy, busy_seconds)
    busy_late = late_429s(busy.requests, 10.0)
    print(
        f"HubSpot at 100 per 10 s on a slow day ({args.busy} busy processes: Python ran "
        f"{slower:.1f}x slower): {busy_report.sent:,} sent in {busy_seconds:.1f} s over "
        f"{busy_calls} calls; {busy_share:.2f} of the ceiling; 429s {busy.rate_limited} "
        f"({busy_late} after the first window)"
    )
    alone_rate = alone.sent / alone_seconds if alone_seconds else 0.0
    print(
        f"  Rally's own rate that day, against the unlimited fake: {alone_rate:,.0f} leads/s, "
        f"{alone_rate / CEILING_RATE:.1f}x HubSpot's ceiling ({CEILING_RATE:,} contacts/s)"
    )

    an_seconds, an = timed_sync(engine, settings, "action_network")
    an_calls = sum(1 for r in action_network.requests if r.status != 429)
    an_ideal = ceiling_seconds(an_calls, 4, 1.0)
    an_share = an_ideal / an_seconds if an_seconds else 0.0
    an_late = late_429s(action_network.requests, 1.0)
    print(
        f"Action Network at 4/s: {an.sent:,} sent in {an_seconds:.1f} s; "
        f"ceiling {an_ideal:.1f} s: {an_share:.2f} of it; 429s after the first window {an_late}"
    )
    everyone = (
        hub.sent == args.hubspot
        and an.sent == args.action_network
        and own_sent == args.hubspot * args.rounds
        and far_report.sent == args.far
        and busy_report.sent == args.hubspot
        and alone.sent == args.hubspot
    )
    met = everyone and hub_share >= GOAL_SHARE and an_share >= GOAL_SHARE
    met = met and hub_late == 0 and an_late == 0 and of_bare >= GOAL_OF_BARE
    print(
        f"Goal: at least {GOAL_SHARE} of each ceiling, no 429 after the first window, unlimited "
        f"at least {GOAL_OF_BARE} of the bare loop: {'met' if met else 'MISSED'}"
    )
    figures = {
        "hubspot_leads": args.hubspot,
        "hubspot_seconds": round(hub_seconds, 2),
        "hubspot_share_of_ceiling": round(hub_share, 3),
        "hubspot_429s": hub_429,
        "hubspot_429s_after_first_window": hub_late,
        "hubspot_429s_at_seconds": [round(at, 2) for at in hub_refused],
        "action_network_leads": args.action_network,
        "action_network_seconds": round(an_seconds, 2),
        "action_network_share_of_ceiling": round(an_share, 3),
        "action_network_429s_after_first_window": an_late,
        "far_hubspot_latency_seconds": args.latency,
        "far_hubspot_share_of_ceiling": round(far_share, 3),
        "far_hubspot_most_in_flight": far.most_in_flight,
        "far_hubspot_429s": far.rate_limited,
        "slow_day_busy_processes": args.busy,
        "slow_day_python_slower": round(slower, 2),
        "slow_day_hubspot_share_of_ceiling": round(busy_share, 3),
        "slow_day_hubspot_429s_after_first_window": busy_late,
        "slow_day_unlimited_leads_per_second": round(alone_rate),
        "slow_day_unlimited_of_hubspot_ceiling": round(alone_rate / CEILING_RATE, 2),
        "unlimited_leads_per_second": round(own_rate),
        "bare_leads_per_second": round(bare_rate),
        "unlimited_share_of_bare": round(of_bare, 3),
        "unlimited_seconds": round(own_s, 3),
        "bare_seconds": round(bare_s, 3),
        "statements_bare_seconds": round(store_s, 3),
        "unlimited_cpu_seconds": round(own_cpu, 3),
        "bare_cpu_seconds": round(bare_cpu, 3),
        "unlimited_cpu_seconds_the_goal_allows": round(cpu_allowed, 3),
        "microseconds_a_lead_the_goal_leaves": round(left * 1e6 / args.hubspot, 1),
        "share_of_bare_with_nothing_but_the_statements": round(no_rest, 3),
        "leanest_drain_seconds": round(lean_s, 3),
        "leanest_drain_share_of_bare": round(lean_of_bare, 3),
    }
    goal = {
        "share_of_ceiling_at_least": GOAL_SHARE,
        "429s_after_first_window": 0,
        "unlimited_share_of_bare_at_least": GOAL_OF_BARE,
    }
    for fake in (hubspot, unlimited, far, busy, action_network):
        fake.stop()
    print(json.dumps({"benchmark": "sync", **figures, "goal": goal, "met": met}))


if __name__ == "__main__":
    main()
