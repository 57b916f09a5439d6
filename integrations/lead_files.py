"""The embedded default destination: each campaign's leads as one CSV or JSONL file, one line
per person, as they were last synced.

The file is rewritten whole (to a temporary file, then renamed over the old one), so a crash
leaves either the old file or the new one, never half of one; syncing the same person again
replaces their line, and forgetting them removes it. Each rewrite holds a lock on a `.lock`
file beside the export, so syncs running at once (two workers, a sync by hand during a
scheduled one) take turns and none loses another's lines.

Options: `batch_size` (default `BATCH_SIZE`), how many leads one rewrite takes.
"""

import csv
import fcntl
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from integrations.crm import Connector, Lead, Outcome, batch_size
from integrations.errors import UnavailableError

BATCH_SIZE = 5000
COLUMNS = (
    "key",
    "email",
    "phone",
    "given_name",
    "family_name",
    "postal_code",
    "email_status",
    "sms_status",
    "tags",
    "source_code",
    "first_source_code",
    "creator",
    "campaign",
)


def consent_status(consent: bool | None) -> str:
    return {True: "subscribed", False: "unsubscribed", None: ""}[consent]


def lead_record(lead: Lead) -> dict[str, Any]:
    """A lead as one flat record: Rally's columns, then the destination's custom fields."""
    record: dict[str, Any] = {
        "key": lead.key,
        "email": lead.email,
        "phone": lead.phone,
        "given_name": lead.given_name,
        "family_name": lead.family_name,
        "postal_code": lead.postal_code,
        "email_status": consent_status(lead.email_consent),
        "sms_status": consent_status(lead.sms_consent),
        "tags": ";".join(lead.tags),
        "source_code": lead.source_code,
        "first_source_code": lead.first_source_code,
        "creator": lead.creator,
        "campaign": lead.campaign,
    }
    for name, value in lead.custom_fields.items():
        record.setdefault(name, value)
    return record


PLAIN_NUMBER = re.compile(r"[+-]\d[\d .()-]*")


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula: text from public forms that starts
    like one (`=`, `@`, a tab or return, or a sign) gets a leading apostrophe, unless a sign
    leads a plain number or phone number (`+1 215-555-0100`, `-12.5`)."""
    text = "" if value is None else str(value)
    risky = text[:1] in ("=", "@", "\t", "\r") or (
        text[:1] in ("+", "-") and not PLAIN_NUMBER.fullmatch(text)
    )
    return "'" + text if risky else text


class FileExport(Connector):
    """Leads of one destination in `path`, keyed by the lead's key (also its remote id)."""

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        format: Literal["csv", "jsonl"],
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.path, self.name, self.format = path, name, format
        self.batch_size = batch_size(options or {}, BATCH_SIZE)

    def upsert(self, leads: Sequence[Lead]) -> list[Outcome]:
        with self._turn():
            rows = self._read()
            for lead in leads:
                rows[lead.key] = lead_record(lead)
            self._write(rows)
        return [Outcome(lead.key, remote_id=lead.key) for lead in leads]

    def verify(self) -> str:
        """The export's folder exists, or is made, and can be written."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnavailableError(f"export {self.name}: cannot write {folder}: {exc}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UnavailableError(f"export {self.name}: cannot write {folder}")
        return f"writes {self.path}"

    def forget(self, remote_id: str) -> None:
        with self._turn():
            rows = self._read()
            if rows.pop(remote_id, None) is not None:
                self._write(rows)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold the export's lock from reading it to renaming the new file over it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(self.path.name + ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        with self.path.open(encoding="utf-8", newline="") as file:
            if self.format == "jsonl":
                records = [json.loads(line) for line in file if line.strip()]
            else:
                records = [{k: _unsafe(v) for k, v in row.items()} for row in csv.DictReader(file)]
        return {str(r["key"]): r for r in records}

    def _write(self, rows: dict[str, dict[str, Any]]) -> None:
        if self.format == "jsonl":
            text = "".join(
                json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows.values()
            )
        else:
            extra = sorted({k for r in rows.values() for k in r} - set(COLUMNS))
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=[*COLUMNS, *extra], lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: safe_cell(v) for k, v in r.items()} for r in rows.values())
            text = out.getvalue()
        # A name of its own, so a process that crashed mid-write never shares one with another;
        # readable by its owner only, as it holds people's contact details.
        fd, partial = tempfile.mkstemp(
            dir=self.path.parent, prefix=self.path.name + ".", suffix=".partial"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, self.path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


def _unsafe(value: str | None) -> str | None:
    """A cell as it was before `safe_cell`, so a rewrite does not add a second apostrophe."""
    if value and value.startswith("'") and safe_cell(value[1:]) == value:
        return value[1:]
    return value
