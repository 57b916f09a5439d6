"""The CSV export written by several syncs at once (two workers, or a sync by hand during a
scheduled one): every lead each of them sent is in the file, and no temporary file is left."""

import csv
import multiprocessing
from pathlib import Path

import pytest

from integrations.crm import Lead
from integrations.lead_files import FileExport

WRITERS, BATCHES, PER_BATCH = 3, 15, 4


def _sync(path: str, writer: int) -> None:
    export = FileExport(Path(path), name="export", format="csv")
    for batch in range(BATCHES):
        leads = [
            Lead(key=f"{writer}-{batch}-{i}", contact_id=i, campaign="c", email=f"{i}@example.org")
            for i in range(PER_BATCH)
        ]
        export.upsert(leads)


@pytest.mark.slow
def test_syncs_at_once_lose_no_lead(tmp_path: Path) -> None:
    path = tmp_path / "exports" / "export.csv"
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_sync, args=(str(path), w)) for w in range(WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    with path.open(newline="") as file:
        keys = [row["key"] for row in csv.DictReader(file)]
    assert sorted(keys) == sorted(
        f"{w}-{b}-{i}" for w in range(WRITERS) for b in range(BATCHES) for i in range(PER_BATCH)
    )
    assert sorted(p.name for p in path.parent.iterdir()) == ["export.csv", "export.csv.lock"]
