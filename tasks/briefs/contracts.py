"""Creator contracts: made from the brief's clauses and the creator's payment terms, signed by
the creator on their brief page, countersigned by staff, and kept as a PDF mailed to both.

A contract's text is its parties, the deliverables, the "Contract clauses" of the creator's
newest brief, and the payment terms the ledger pays by (`tasks.payments.ledger`). `offer`
makes a new version only when that text changes, so a signed version stays as signed and a
changed brief or fee asks for a new signature.

Signing keeps what an electronic signature record needs (ESIGN, UETA): the name as the creator
typed it, their consent to sign electronically, the exact text's SHA-256 and version (the page
sends back the hash of what it showed, and a text changed meanwhile is refused), the moment,
the network address and the browser's user agent. Once staff countersign, the signed copy is
rendered as a PDF (WeasyPrint) under `RALLY_HOME/contracts/<campaign>/` and mailed to the
creator and to the campaign's staff.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape
from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record
from store.models import (
    Brief,
    Campaign,
    Contract,
    Creator,
    RosterMember,
    RosterStatus,
)
from tasks.briefs.run import latest_briefs
from tasks.campaigns.campaign import campaign_spec, staff
from tasks.outbox import enqueue
from tasks.payments.approvals import member_by_handle
from tasks.payments.ledger import member_rate_cents

MAX_NAME = 200
TEXT = Environment(autoescape=False, keep_trailing_newline=True).from_string(
    """# Creator agreement: {{ campaign }}

Between {{ payer }} ("the campaign") and {{ creator }} (@{{ handle }} on {{ platform }}, "the
creator"), for the campaign's sprint from {{ start }} to {{ end }}.

## Deliverables

{{ count }} video{{ "s" if count != 1 }} ({{ format }}, {{ length }}), as the creator's brief
(version {{ brief_version }}) describes.

{{ clauses }}

## Payment terms

The fee is {{ fee }} for the {{ count }} deliverable{{ "s" if count != 1 }}, {{ per }} each.

{% for split in splits %}- {{ split }}
{% endfor %}{% if bonus %}- {{ bonus }}
{% endif %}
What the creator earns is approved by the campaign's staff and paid to the creator's payout
account; the creator gives the campaign a W-9 before the first payment.

## Signing

The creator signs by typing their name on their brief page and agreeing to sign
electronically; the campaign countersigns. Each party receives a PDF copy.
"""
)


def _day(day: date) -> str:
    return f"{day:%B} {day.day}, {day.year}"


def _money(cents: int, currency: str) -> str:
    return f"{cents / 100:,.2f} {currency}"


def contract_text(
    session: Session, campaign: Campaign, member: RosterMember, brief: Brief
) -> str | None:
    """The contract for the creator as their terms and newest brief stand; None without a
    fee (a creator paid nothing signs no payment contract)."""
    spec = campaign_spec(campaign)
    rate = member_rate_cents(member, spec)
    if rate is None:
        return None
    creator = session.get(Creator, member.creator_id)
    assert creator is not None
    currency = spec.budget.currency
    count = spec.brief.deliverables.count
    splits = []
    for split in spec.payments.splits:
        share = f"{split.share * 100:g}% of each deliverable's fee"
        if split.on == "approved":
            splits.append(f"{share} is earned when the deliverable is approved.")
        else:
            days = f" and still up {split.live_days} days later" if split.live_days else ""
            splits.append(f"{share} is earned when it is posted{days}.")
    bonus = spec.payments.signup_bonus
    match = re.search(r"^## Contract clauses\n.*?(?=^## |\Z)", brief.content_markdown, re.M | re.S)
    return TEXT.render(
        campaign=campaign.name,
        payer=campaign.committee_name or campaign.name,
        creator=creator.name or f"@{creator.handle}",
        handle=creator.handle,
        platform=creator.platform,
        start=_day(campaign.start_date),
        end=_day(campaign.start_date + timedelta(weeks=campaign.weeks, days=-1)),
        count=count,
        format=spec.brief.deliverables.format,
        length=spec.brief.deliverables.length,
        brief_version=brief.version,
        clauses=match.group(0).strip() if match else "",
        fee=_money(rate, currency),
        per=_money(rate // count, currency) + (" or so" if rate % count else ""),
        splits=splits,
        bonus=(
            f"A bonus of {_money(round(bonus.per_signup * 100), currency)} per signup the "
            f"creator brings, up to {_money(round(bonus.cap * 100), currency)}."
            if bonus
            else None
        ),
    )


def offer(session: Session, campaign: Campaign, *, actor: str, now: datetime) -> dict[str, int]:
    """A contract version for each active creator whose text is new (see the module)."""
    members = session.exec(
        select(RosterMember).where(
            RosterMember.campaign_id == campaign.id, RosterMember.status == RosterStatus.ACTIVE
        )
    ).all()
    briefs = latest_briefs(session, [m.id or 0 for m in members])
    counts = {"offered": 0, "unchanged": 0, "no_brief": 0, "no_fee": 0}
    for member in members:
        brief = briefs.get(member.id or 0)
        if brief is None:
            counts["no_brief"] += 1
            continue
        text = contract_text(session, campaign, member, brief)
        if text is None:
            counts["no_fee"] += 1
            continue
        current = latest(session, member.id or 0)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if current is not None and current.text_hash == digest:
            counts["unchanged"] += 1
            continue
        made = Contract(
            campaign_id=campaign.id or 0,
            member_id=member.id or 0,
            version=(current.version if current else 0) + 1,
            text=text,
            text_hash=digest,
            created_at=now,
        )
        session.add(made)
        counts["offered"] += 1
    if counts["offered"]:
        record(
            session,
            [
                Change(
                    actor,
                    "contract.offered",
                    "campaign",
                    campaign.id or 0,
                    f"{counts['offered']} contract(s) offered for {campaign.slug}",
                    counts,
                )
            ],
        )
    return counts


def latest(session: Session, member_id: int) -> Contract | None:
    """The creator's newest contract version."""
    return session.exec(
        select(Contract)
        .where(Contract.member_id == member_id)
        .order_by(col(Contract.version).desc())
    ).first()


@dataclass(frozen=True)
class Signature:
    """What the creator's browser sent: the version and hash of the text it showed, the name
    typed, whether they agreed to sign electronically; and where it came from."""

    version: int
    text_hash: str
    name: str
    agreed: bool
    address: str
    user_agent: str


class SignedAlready(RallyError):
    """The contract version was signed before (a second tap on Sign, say)."""


def sign(session: Session, member_id: int, signature: Signature, *, now: datetime) -> Contract:
    """The creator signs their newest contract version (see the module)."""
    contract = latest(session, member_id)
    if contract is None:
        raise RallyError("contract: there is no contract to sign yet")
    if contract.signed_at is not None:
        raise SignedAlready(f"contract: version {contract.version} is signed already")
    if contract.version != signature.version or contract.text_hash != signature.text_hash:
        raise RallyError("contract: it changed since the page was opened: read the new version")
    name = " ".join(signature.name.split())
    if not name or len(name) > MAX_NAME:
        raise RallyError(f"name: type your full name (at most {MAX_NAME} characters) to sign")
    if not signature.agreed:
        raise RallyError("agree: tick the box to agree to sign electronically")
    contract.signed_name, contract.signed_at = name, now
    contract.signed_address = signature.address[:64]
    contract.signed_user_agent = signature.user_agent[:500]
    session.add(contract)
    record(
        session,
        [
            Change(
                f"creator:member:{member_id}",
                "contract.signed",
                "contract",
                contract.id or 0,
                f"contract version {contract.version} signed as {name!r}",
                {
                    "version": contract.version,
                    "text_sha256": contract.text_hash,
                    "address": contract.signed_address,
                    "user_agent": contract.signed_user_agent,
                },
            )
        ],
    )
    return contract


def countersign(
    session: Session,
    campaign: Campaign,
    handle: str,
    *,
    by: str,
    home: Path,
    mail_to: list[str] | None = None,
    now: datetime,
) -> Contract:
    """Staff countersign the creator's signed contract: its PDF is written and mailed to the
    creator and to the campaign's staff (`mail_to`, else its staff list)."""
    by = by.strip()
    if not by:
        raise RallyError("by: say who countersigns (a name or email)")
    member = member_by_handle(session, campaign, handle)
    contract = latest(session, member.id or 0)
    if contract is None or contract.signed_at is None:
        raise RallyError(f"@{handle.lstrip('@')}: no signed contract to countersign")
    if contract.countersigned_at is not None:
        raise RallyError(f"@{handle.lstrip('@')}: version {contract.version} is countersigned")
    creator = session.get(Creator, member.creator_id)
    assert creator is not None
    contract.countersigned_by, contract.countersigned_at = by, now
    relative = Path("contracts") / campaign.slug / f"{creator.handle}-v{contract.version}.pdf"
    target = home / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(contract_pdf(contract, creator))
    contract.pdf_file = str(relative)
    session.add(contract)
    record(
        session,
        [
            Change(
                by,
                "contract.countersigned",
                "contract",
                contract.id or 0,
                f"@{creator.handle}'s contract version {contract.version} countersigned",
                {"pdf": contract.pdf_file, "text_sha256": contract.text_hash},
            )
        ],
    )
    recipients = [(creator.email, creator.name or creator.handle)] if creator.email else []
    recipients += [(email, email) for email in (mail_to or staff(campaign_spec(campaign)))]
    enqueue(session, [_email(contract, campaign, creator, to, name) for to, name in recipients])
    return contract


def _email(
    contract: Contract, campaign: Campaign, creator: Creator, to: str, name: str
) -> dict[str, Any]:
    text = (
        f"The contract between {campaign.committee_name or campaign.name} and "
        f"{contract.signed_name} (@{creator.handle}), version {contract.version}, is signed by "
        f"both. The signed copy is attached.\n"
    )
    return {
        "channel": "email",
        "destination": "contract",
        "idempotency_key": f"contract:{contract.id}:v{contract.version}:{to}",
        "subject_type": "contract",
        "subject_id": str(contract.id),
        "payload": {
            "to": to,
            "to_name": name,
            "subject": f"Signed: your contract for {campaign.name}",
            "text": text,
            "attachments": [
                {
                    "file": contract.pdf_file,
                    "filename": Path(contract.pdf_file or "contract.pdf").name,
                    "type": "application/pdf",
                }
            ],
        },
    }


PAGE = Environment(autoescape=True).from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: sans-serif; font-size: 10.5pt; line-height: 1.45; margin: 0; }
h1 { font-size: 16pt; } h2 { font-size: 12pt; margin-top: 1.4em; }
table { border-collapse: collapse; margin-top: 1em; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 3pt 6pt 3pt 0; font-size: 9pt; }
th { width: 30%; } .hash { font-family: monospace; word-break: break-all; }
</style></head><body>{{ body }}
<h2>Signatures</h2>
<table>
<tr><th>Creator</th><td>{{ c.signed_name }}, {{ c.signed_at.strftime(WHEN) }}</td></tr>
<tr><th>From</th><td>{{ c.signed_address }}; {{ c.signed_user_agent }}</td></tr>
<tr><th>Countersigned</th>
<td>{{ c.countersigned_by }}, {{ c.countersigned_at.strftime(WHEN) }}</td></tr>
<tr><th>Version</th><td>{{ c.version }}</td></tr>
<tr><th>Text SHA-256</th><td class="hash">{{ c.text_hash }}</td></tr>
</table></body></html>"""
)


def contract_html(text: str) -> Markup:
    """The contract's text as simple HTML: headings, list items and paragraphs."""
    parts: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().splitlines()
        if lines[0].startswith("#"):
            level = min(len(lines[0]) - len(lines[0].lstrip("#")), 3)
            parts.append(f"<h{level}>{escape(lines[0].lstrip('# '))}</h{level}>")
            lines = lines[1:]
        items = [line for line in lines if re.match(r"\s*(?:-|\d+\.)\s", line)]
        if lines and len(items) == len([ln for ln in lines if not ln.startswith("   ")]):
            joined = re.split(r"\n(?=\s*(?:-|\d+\.)\s)", "\n".join(lines))
            rows = "".join(
                f"<li>{escape(' '.join(_plain(i).split()))}</li>" for i in joined if i.strip()
            )
            tag = "ol" if re.match(r"\s*\d+\.", lines[0]) else "ul"
            parts.append(f"<{tag}>{rows}</{tag}>")
        elif lines:
            parts.append(f"<p>{escape(' '.join(_plain(ln) for ln in lines))}</p>")
    return Markup("\n".join(parts))


def _plain(line: str) -> str:
    """A line without its list marker and Markdown emphasis."""
    line = re.sub(r"^\s*(?:-|\d+\.)\s+", "", line)
    return line.replace("**", "").strip()


def contract_pdf(contract: Contract, creator: Creator) -> bytes:
    """The signed contract as a PDF: its text, then both signatures and the text's hash."""
    from weasyprint import HTML

    title = f"Contract v{contract.version}: @{creator.handle}"
    page = PAGE.render(
        title=title, body=contract_html(contract.text), c=contract, WHEN="%Y-%m-%d %H:%M:%S UTC"
    )
    pdf: bytes = HTML(string=page).write_pdf()
    return pdf
