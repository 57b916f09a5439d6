"""A person's consent as the record shows it: each consent given, confirmed or withdrawn, in
order, with its source, the words shown or written and where it came from (`ConsentRecord`),
for `rally leads show` and the export that goes with the audit log."""

import json
from typing import Any, TextIO

from sqlmodel import Session, col, select

from store.models import ConsentRecord, Contact, ContactConsent
from tasks.leads.forget import find_contact


def _row(record: ConsentRecord) -> dict[str, Any]:
    return {
        "contact": record.contact_id,
        "channel": record.channel,
        "status": record.status,
        "source": record.source,
        "wording": record.wording,
        "origin": record.origin,
        "at": record.recorded_at.isoformat(),
    }


def lead_view(session: Session, who: str) -> dict[str, Any]:
    """The person with this email or phone: who they are here, their consent per channel now,
    and its whole record."""
    return contact_view(session, find_contact(session, who))


def contact_view(session: Session, contact: Contact) -> dict[str, Any]:
    """A person as `lead_view` shows them."""
    now = session.exec(
        select(ContactConsent.channel, ContactConsent.status).where(
            ContactConsent.contact_id == contact.id
        )
    ).all()
    history = session.exec(
        select(ConsentRecord)
        .where(ConsentRecord.contact_id == contact.id)
        .order_by(col(ConsentRecord.id))
    ).all()
    return {
        "contact": contact.id,
        "email": contact.email,
        "phone": contact.phone,
        "name": " ".join(filter(None, (contact.given_name, contact.family_name))) or None,
        "handle": contact.handle,
        "tags": contact.tags,
        "consent": dict(now),
        "consent_record": [_row(r) for r in history],
    }


def export_consent_records(session: Session, out: TextIO, *, since: int = 0) -> int:
    """Every consent record after id `since`, oldest first, as JSON lines; how many."""
    written = 0
    query = (
        select(ConsentRecord).where(col(ConsentRecord.id) > since).order_by(col(ConsentRecord.id))
    )
    for record in session.exec(query.execution_options(yield_per=1000)):
        out.write(json.dumps({"seq": record.id, **_row(record)}, ensure_ascii=False) + "\n")
        written += 1
    return written
