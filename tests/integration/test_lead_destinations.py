"""Each CRM and volunteer system through the whole sync path (queue, drain, connector, fake
over loopback): a 5xx and a 429 are retried and end delivered, a person the remote refuses is
a dead letter with the remote's words while the others go, and after the fix `rally leads retry
--dead` sends them."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from config.settings import get_settings
from store.types import utcnow
from tasks.leads.sync import sync_leads
from tests.conftest import SLUG
from tests.fakes.action_network_api import FakeActionNetwork
from tests.fakes.http_server import FakeHttpServer, serving
from tests.fakes.hubspot_api import FakeHubSpot
from tests.fakes.mobilize_api import FakeMobilize
from tests.fakes.nationbuilder_api import FakeNationBuilder
from tests.fakes.ngpvan_api import FakeNgpVan
from tests.helpers import make_leads
from tests.integration.test_leads import set_destinations


@dataclass
class Remote:
    fake: Callable[[], FakeHttpServer]
    env: Callable[[Any], dict[str, str]]
    options: Callable[[Any], str]
    holds: Callable[[Any, str], bool]


REMOTES = {
    "hubspot": Remote(
        FakeHubSpot,
        lambda f: {"RALLY_HUBSPOT_API_URL": f.url, "RALLY_HUBSPOT_TOKEN": f.token},
        lambda f: "",
        lambda f, email: email in f.contacts,
    ),
    "action_network": Remote(
        FakeActionNetwork,
        lambda f: {"RALLY_ACTION_NETWORK_API_URL": f.url, "RALLY_ACTION_NETWORK_TOKEN": f.token},
        lambda f: "",
        lambda f, email: f.person(email) is not None,
    ),
    "mobilize": Remote(
        FakeMobilize,
        lambda f: {"RALLY_MOBILIZE_API_URL": f.url, "RALLY_MOBILIZE_TOKEN": f.token},
        lambda f: (
            f"    options: {{organization_id: {f.organization_id}, event_id: 7001, "
            "timeslot_ids: [90001]}\n"
        ),
        lambda f, email: f.person(email) is not None,
    ),
    "nationbuilder": Remote(
        FakeNationBuilder,
        lambda f: {"RALLY_NATIONBUILDER_API_URL": f.url, "RALLY_NATIONBUILDER_TOKEN": f.token},
        lambda f: "",
        lambda f, email: f.signup(email) is not None,
    ),
    "ngpvan": Remote(
        FakeNgpVan,
        lambda f: {
            "RALLY_NGPVAN_API_URL": f.url,
            "RALLY_NGPVAN_APP_NAME": f.app_name,
            "RALLY_NGPVAN_API_KEY": f.api_key,
            "RALLY_NGPVAN_MODE": str(f.mode),
        },
        lambda f: "",
        lambda f, email: f.person(email) is not None,
    ),
}


@pytest.fixture(params=sorted(REMOTES))
def remote(request, rally, applied, monkeypatch) -> Iterator[tuple[str, Any]]:
    kind = request.param
    spec = REMOTES[kind]
    for fake in serving(spec.fake()):
        for name, value in spec.env(fake).items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        block = f"destinations:\n  - name: crm\n    type: {kind}\n" + spec.options(fake)
        set_destinations(rally, applied, block)
        yield kind, fake


def sync(engine) -> Any:
    return sync_leads(engine, get_settings(), now=utcnow)[f"{SLUG}/crm"]


def test_retries_end_delivered_and_a_refused_person_is_redriven_after_the_fix(
    engine, rally, remote
):
    kind, fake = remote
    make_leads(engine, SLUG, 3, prefix=f"{kind}-")
    emails = [f"{kind}-{i}@example.org" for i in range(3)]
    fake.fail_next(1, status=503)
    fake.fail_next(1, status=429, headers={"Retry-After": "0"})
    reject = getattr(fake, "reject_email", None) or fake.reject
    accept = getattr(fake, "accept_email", None) or fake.accept
    reject(emails[1], "this address bounced before")

    report = sync(engine)
    assert (report.sent, report.dead, report.retrying) == (2, 1, 0), report.errors
    holds = REMOTES[kind].holds
    assert [holds(fake, e) for e in emails] == [True, False, True]
    assert any("this address bounced before" in e for e in report.errors)

    accept(emails[1])
    run = rally("leads", "retry", "--dead", "--destination", "crm")
    assert run.code == 0 and "1 dead letter" in run.out
    report = sync(engine)
    assert (report.sent, report.dead) == (1, 0)
    assert all(holds(fake, e) for e in emails)
