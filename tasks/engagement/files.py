"""Reading events from exports: JSON Lines (one event object a line) or CSV (a header row with
the event fields; `email`, `phone`, `name`, `zip`, `source_code` and `consent_<channel>`
columns make the person's contact). Each record is named `FILE:LINE` in errors.
"""

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tasks.engagement.events import EventError

CONTACT_COLUMNS = ("email", "phone", "name", "zip", "source_code")
MAX_LINE = 1_000_000  # an event is a few hundred characters


def read_events(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) for every line of `path`; a line that is not a record yields an
    `EventError` in place of the record, so the caller reports it and goes on."""
    if path.suffix.lower() == ".csv":
        yield from _csv(path)
    else:
        yield from _jsonl(path)


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    name = path.name
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{name}:{number}"
            if len(line) > MAX_LINE:
                yield where, EventError(where, "line", f"longer than {MAX_LINE:,} characters")
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                yield where, EventError(where, "line", f"not JSON: {exc.msg}")
            except RecursionError:
                yield where, EventError(where, "line", "nested too deeply to be an event")


def _csv(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            yield f"{path.name}:{number}", csv_record(row)


def csv_record(row: Mapping[str, str | None]) -> dict[str, Any]:
    record: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
    contact = {k: record.pop(k) for k in CONTACT_COLUMNS if k in record}
    consent = {
        key.removeprefix("consent_"): record.pop(key)
        for key in list(record)
        if key.startswith("consent_")
    }
    if contact or consent:
        record["payload"] = {**record, "contact": {**contact, "consent": consent}}
    return record
