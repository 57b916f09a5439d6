"""Reading events from exports: JSON Lines (one event object a line) or CSV (a header row with
the event fields; `email`, `phone`, `name`, `zip`, `source_code` and `consent_<channel>`
columns make the person's contact). Each record is named `FILE:LINE` in errors.
"""

import csv
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from integrations.http import json_body
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
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{name}:{number}"
            if len(raw) > MAX_LINE:
                yield where, EventError(where, "line", f"longer than {MAX_LINE:,} characters")
                continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield where, EventError(where, "line", "not UTF-8 text")
                continue
            try:
                yield where, json_body(line)
            except ValueError as exc:
                yield where, EventError(where, "line", str(exc))


def _csv(path: Path) -> Iterator[tuple[str, Any]]:
    """Each row, named by its line in the file (blank lines are skipped, not counted out).
    A row that cannot be read (bytes that are not UTF-8, a cell over csv's size limit, more
    cells than the header has columns) is an error of its own: the rest are read on."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # the DictReader's own line_num stays at the row before
                where = f"{path.name}:{reader.reader.line_num}"
                yield where, EventError(where, "row", f"cannot be read as CSV: {exc}")
                continue
            where = f"{path.name}:{reader.line_num}"
            if any(_SURROGATE_ESCAPED.search(v) for v in row.values() if isinstance(v, str)):
                yield where, EventError(where, "row", "not UTF-8 text")
            elif row.get(None):
                extra = len(row[None])
                said = f"{extra} more cell(s) than the header has columns: quote values with commas"
                yield where, EventError(where, "row", said)
            else:
                yield where, csv_record(row)


_SURROGATE_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8


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
