"""The `sync_leads` flow as the served process runs it: queued leads out to the campaign's
export through one Prefect flow run."""

import csv

import pytest

from tests.conftest import SLUG
from tests.helpers import make_leads

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),  # the flow, not the store
]


def test_the_flow_drains_every_destination_and_reports_each(engine, settings, applied):
    from flows.leads import sync_leads

    make_leads(engine, SLUG, 30)
    result = sync_leads()
    assert result[f"{SLUG}/export"]["sent"] == 30
    with (settings.exports / SLUG / "export.csv").open(newline="") as file:
        assert len(list(csv.DictReader(file))) == 30
    assert sync_leads()[f"{SLUG}/export"]["sent"] == 0  # nothing left to send twice
