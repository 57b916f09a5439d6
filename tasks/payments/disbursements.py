"""Disbursement reports: creators' payments as the FEC's Schedule B itemizes them, and a plain
CSV of the same for state filings.

A disbursement is a payout that settled (not a rehearsal's): the day it settled (UTC), its
amount, and its payee, named and addressed as on their W-9 (`tasks.payments.tax`). A payee is
itemized once their disbursements in the aggregation period add up to more than USD 200: the
calendar year for a PAC (11 CFR 104.3(b)(3)(i)), the election cycle for a candidate committee
(104.3(b)(4)(i); it starts on the filing's `cycle_starts`). Then every one of their payments in
the report's period is a line, with their total to date through it; the rest are counted as
unitemized. The payer is the committee: its report covers the campaigns whose files name its
FEC id (`committee_campaigns`). A payout whose money later came back (a reversal, a
refund) stays a disbursement at its full amount: what came back is an offset to operating
expenditures, a receipt on Schedule A (Form 3's line 14, Form 3X's line 15; `offsets`), from
the same payee, itemized once their offsets in the aggregation period are over USD 200.

A creator paid through an agency (the roster's `agency` when the payout was made) is not the
payee: the agency is, itemized against its own total, and each of its lines is followed by a
memo entry (memo code X, back-referenced to the agency's line) naming the creator it paid, the
ultimate payee, with the creator's W-9 name and address.

The FEC lines are Schedule B records of the electronic filing format (versions 8.0 to 8.5: 44
fields, in the order of fecgov/fecfile-validate's SchB schema), as `.fec` text (fields
separated by ASCII 28, records by CRLF) or as CSV of the same fields in the same order. Each
line's transaction id is `RALLY-PAY-<payout id>` (its memo entry's, with `-M`), the same in
every export and amendment. A payee whose name or address is missing or too long for its field
is left out and named, with the field, so that nothing incomplete is filed unnoticed.
"""

import csv
import io
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar

from sqlmodel import Session, col, select

from config.campaign import Agency, FecFiling
from config.errors import RallyError
from store.models import Campaign, Creator, Payout, TaxForm
from tasks.campaigns.campaign import campaign_spec
from tasks.payments.payouts import money_back, settled_payouts

ITEMIZED_OVER_CENTS = 200_00
T = TypeVar("T")
SEPARATOR, END = "\x1c", "\r\n"  # the .fec format's field and record separators
SB_FIELDS = (
    "form_type",
    "filer_committee_id_number",
    "transaction_id",
    "back_reference_tran_id_number",
    "back_reference_sched_name",
    "entity_type",
    "payee_organization_name",
    "payee_last_name",
    "payee_first_name",
    "payee_middle_name",
    "payee_prefix",
    "payee_suffix",
    "payee_street_1",
    "payee_street_2",
    "payee_city",
    "payee_state",
    "payee_zip",
    "election_code",
    "election_other_description",
    "expenditure_date",
    "expenditure_amount",
    "semi_annual_refunded_bundled_amt",
    "expenditure_purpose_descrip",
    "category_code",
    "beneficiary_committee_fec_id",
    "beneficiary_committee_name",
    "beneficiary_candidate_fec_id",
    "beneficiary_candidate_last_name",
    "beneficiary_candidate_first_name",
    "beneficiary_candidate_middle_name",
    "beneficiary_candidate_prefix",
    "beneficiary_candidate_suffix",
    "beneficiary_candidate_office",
    "beneficiary_candidate_state",
    "beneficiary_candidate_district",
    "conduit_name",
    "conduit_street1",
    "conduit_street2",
    "conduit_city",
    "conduit_state",
    "conduit_zip",
    "memo_code",
    "memo_text_description",
    "reference_to_si_or_sl_system_code_that_identifies_the_account",
)
WIDTHS = {  # the fields Rally fills: at most so many characters
    "payee_organization_name": 200,
    "payee_last_name": 30,
    "payee_first_name": 20,
    "payee_street_1": 34,
    "payee_street_2": 34,
    "payee_city": 30,
    "payee_state": 2,
    "payee_zip": 9,
}


# Schedule A's 45 fields (the format's 8.3.0.1 layout, versions 8.0 to 8.5), for offsets to
# operating expenditures: money a payee gave back, on Form 3's line 14 or Form 3X's line 15,
# the form the Schedule B lines go on.
SA_FIELDS = (
    "form_type",
    "filer_committee_id_number",
    "transaction_id",
    "back_reference_tran_id_number",
    "back_reference_sched_name",
    "entity_type",
    "contributor_organization_name",
    "contributor_last_name",
    "contributor_first_name",
    "contributor_middle_name",
    "contributor_prefix",
    "contributor_suffix",
    "contributor_street_1",
    "contributor_street_2",
    "contributor_city",
    "contributor_state",
    "contributor_zip",
    "election_code",
    "election_other_description",
    "contribution_date",
    "contribution_amount",
    "contribution_aggregate",
    "contribution_purpose_descrip",
    "contributor_employer",
    "contributor_occupation",
    "donor_committee_fec_id",
    "donor_committee_name",
    "donor_candidate_fec_id",
    "donor_candidate_last_name",
    "donor_candidate_first_name",
    "donor_candidate_middle_name",
    "donor_candidate_prefix",
    "donor_candidate_suffix",
    "donor_candidate_office",
    "donor_candidate_state",
    "donor_candidate_district",
    "conduit_name",
    "conduit_street1",
    "conduit_street2",
    "conduit_city",
    "conduit_state",
    "conduit_zip",
    "memo_code",
    "memo_text_description",
    "reference_to_si_or_sl_system_code_that_identifies_the_account",
)
OFFSET_FORM = {"SB17": "SA14", "SB21B": "SA15"}


@dataclass(frozen=True)
class Disbursement:
    """One Schedule B line: an itemized payment with the payee's total to date through it, or
    the memo entry of the creator an agency paid with it (`memo_of`: the agency's line)."""

    transaction_id: str
    payout_id: int
    creator: str
    paid_on: date
    amount_cents: int
    aggregate_cents: int
    payee: dict[str, str]  # the SB payee fields, entity type through ZIP
    memo_of: str = ""
    memo_text: str = ""


@dataclass
class Disbursements:
    """A period's lines, what was not itemized, and payees that could not be."""

    lines: list[Disbursement] = field(default_factory=list)
    unitemized_cents: int = 0
    unitemized_payments: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Offset:
    """One Schedule A line: money a payee gave back after a payout was paid (a reversed
    transfer, a refunded item), with their offsets' total to date through it."""

    transaction_id: str
    payout_id: int
    creator: str
    received_on: date
    amount_cents: int
    aggregate_cents: int
    paid_on: date  # the disbursement it offsets
    payee: dict[str, str]  # the SB payee fields, as the disbursement named them
    ledger_id: int  # its `paid` line's, in the order money came back

    def contributor(self) -> dict[str, str]:
        """The payee's fields under Schedule A's names."""
        return {name.replace("payee_", "contributor_"): v for name, v in self.payee.items()}


@dataclass
class Offsets:
    """A period's offsets: the itemized lines, what was not itemized, payees that could not
    be."""

    lines: list[Offset] = field(default_factory=list)
    unitemized_cents: int = 0
    unitemized_receipts: int = 0
    problems: list[str] = field(default_factory=list)


def aggregation_start(filing: FecFiling, start: date, end: date) -> date:
    """The first day of the period a payee's total to date counts from: the calendar year, or
    a candidate committee's election cycle; RallyError if the report's period crosses it."""
    if end < start:
        raise RallyError(f"to: {end} is before {start}")
    if end.year > 9000:
        raise RallyError(f"to: {end} is further ahead than any report")
    if filing.cycle_starts is None:
        if start.year != end.year:
            raise RallyError("from, to: a report's period lies within one calendar year")
        return date(start.year, 1, 1)
    if start < filing.cycle_starts:
        raise RallyError(
            f"from: {start} is before the election cycle, which payments.fec.cycle_starts "
            f"begins on {filing.cycle_starts}"
        )
    return filing.cycle_starts


def disbursements(
    session: Session,
    start: date,
    end: date,
    filing: FecFiling,
    campaigns: Collection[int] | None = None,
) -> Disbursements:
    """Every settled payout from `start` to `end` (both included) as Schedule B itemizes it
    (see the module)."""
    since, until = _period(filing, start, end)
    found = Disbursements()
    agencies: dict[int, dict[str, Agency]] = {}
    rows = [
        ((payout, creator, form), payout, creator, payout.amount_cents, payout.settled_at)
        for payout, creator, form in settled_payouts(session, since, until, campaigns)
    ]
    itemized, rest = _per_payee(session, rows, start, agencies, found.problems)
    found.unitemized_cents = sum(payout.amount_cents for payout, _, _ in rest)
    found.unitemized_payments = len(rest)
    for (payout, creator, form), aggregate in itemized:
        try:
            found.lines += _lines(payout, creator, form, aggregate, agencies)
        except RallyError as exc:
            found.problems.append(f"@{creator.handle}: {exc}")
    found.lines.sort(key=lambda d: (d.paid_on, d.payout_id, d.memo_of != ""))
    return found


def offsets(
    session: Session, start: date, end: date, filing: FecFiling, campaigns: Collection[int]
) -> Offsets:
    """Money that came back from `start` to `end` (both included) after a payout was paid, as
    Schedule A itemizes offsets to operating expenditures: from the payee the payout paid
    (the creator, or their agency), itemized once that payee's offsets in the aggregation
    period add up to more than USD 200, each saying it refunds the payment of its day."""
    since, until = _period(filing, start, end)
    found = Offsets()
    agencies: dict[int, dict[str, Agency]] = {}
    rows = [
        ((entry, payout, creator, form), payout, creator, entry.amount_cents, entry.created_at)
        for entry, payout, creator, form in money_back(session, since, until, campaigns)
    ]
    itemized, rest = _per_payee(session, rows, start, agencies, found.problems)
    found.unitemized_cents = sum(entry.amount_cents for entry, *_ in rest)
    found.unitemized_receipts = len(rest)
    for (entry, payout, creator, form), aggregate in itemized:
        try:
            payee = (
                agency_fields(agencies[payout.campaign_id][payout.agency])
                if payout.agency is not None
                else payee_fields(creator, form)
            )
        except RallyError as exc:
            found.problems.append(f"@{creator.handle}: {exc}")
            continue
        line = Offset(
            f"RALLY-RET-{entry.id}", payout.id or 0, creator.handle, entry.created_at.date(),
            entry.amount_cents, aggregate, (payout.settled_at or entry.created_at).date(),
            payee, entry.id or 0,
        )  # fmt: skip
        found.lines.append(line)
    found.lines.sort(key=lambda o: (o.received_on, o.ledger_id))
    return found


def _period(filing: FecFiling, start: date, end: date) -> tuple[datetime, datetime]:
    """The times to read from and up to: the aggregation period's start, the day after `end`."""
    since = datetime.combine(aggregation_start(filing, start, end), time(), tzinfo=UTC)
    return since, datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC)


def _per_payee(
    session: Session,
    rows: list[tuple[T, Payout, Creator, int, datetime | None]],
    start: date,
    agencies: dict[int, dict[str, Agency]],
    problems: list[str],
) -> tuple[list[tuple[T, int]], list[T]]:
    """The period's items (from `start`) of the aggregation period's `rows` (item, its payout
    and creator, its cents, when), by payee: those of payees over the itemization threshold,
    each with its payee's total to date through it, and the rest."""
    by_payee: dict[str, list[tuple[T, int]]] = {}
    totals: dict[str, int] = {}
    for item, payout, creator, cents, at in rows:
        key = _payee_key(session, payout, creator, agencies, problems)
        if key is None:
            continue
        totals[key] = totals.get(key, 0) + cents
        if at is not None and at.date() >= start:
            by_payee.setdefault(key, []).append((item, totals[key]))
    itemized = [
        row for key, rows_ in by_payee.items() if totals[key] > ITEMIZED_OVER_CENTS for row in rows_
    ]
    rest = [
        item
        for key, rows_ in by_payee.items()
        if totals[key] <= ITEMIZED_OVER_CENTS
        for item, _ in rows_
    ]
    return itemized, rest


def _payee_key(
    session: Session,
    payout: Payout,
    creator: Creator,
    agencies: dict[int, dict[str, Agency]],
    problems: list[str],
) -> str | None:
    """Whom a payout paid, as payees are aggregated: the creator, or the agency that was paid
    for them (read into `agencies` once per campaign); None, with the problem told, when that
    agency is no longer in the campaign file."""
    if payout.agency is None:
        return f"creator:{creator.id}"
    if payout.campaign_id not in agencies:
        campaign = session.get(Campaign, payout.campaign_id)
        assert campaign is not None
        agencies[payout.campaign_id] = campaign_spec(campaign).payments.agencies
    agency = agencies[payout.campaign_id].get(payout.agency)
    if agency is None:
        problems.append(
            f"@{creator.handle}: agency: {payout.agency!r}, which paid them, is no "
            "longer in the campaign file's payments.agencies"
        )
        return None
    return "agency:" + ascii_text(agency.name).upper()


def _lines(
    payout: Payout,
    creator: Creator,
    form: TaxForm | None,
    aggregate: int,
    agencies: dict[int, dict[str, Agency]],
) -> list[Disbursement]:
    """An itemized payout's line: to the creator, or to their agency with the creator's memo
    entry after it. RallyError names a payee's missing or too long field."""
    paid_on = (payout.settled_at or datetime.min).date()
    transaction_id = f"RALLY-PAY-{payout.id}"
    to_creator = payee_fields(creator, form)
    line = Disbursement(
        transaction_id, payout.id or 0, creator.handle, paid_on, payout.amount_cents, aggregate,
        to_creator,
    )  # fmt: skip
    if payout.agency is None:
        return [line]
    agency = agencies[payout.campaign_id][payout.agency]
    memo = replace(
        line,
        transaction_id=f"{transaction_id}-M",
        memo_of=transaction_id,
        memo_text=ascii_text(f"Paid by {agency.name} for creator content")[:100],
    )
    return [replace(line, payee=agency_fields(agency)), memo]


def agency_fields(agency: Agency) -> dict[str, str]:
    """An agency's Schedule B payee fields, from the campaign file."""
    fields = {
        "entity_type": "ORG",
        "payee_organization_name": agency.name,
        "payee_last_name": "",
        "payee_first_name": "",
        "payee_street_1": agency.street,
        "payee_street_2": agency.street2 or "",
        "payee_city": agency.city,
        "payee_state": agency.state,
        "payee_zip": agency.zip.replace("-", ""),
    }
    return {name: ascii_text(value) for name, value in fields.items()}


def payee_fields(creator: Creator, form: TaxForm | None) -> dict[str, str]:
    """A payee's Schedule B fields from their W-9; RallyError names what is missing."""
    if form is None or not (form.street and form.city and form.state and form.zip):
        raise RallyError(
            "address: none on file (`rally payments w9` with --street, --city, --state, --zip)"
        )
    name = (form.legal_name or creator.name or "").strip()
    if not name:
        raise RallyError("name: none on file (`rally payments w9 --name`)")
    fields = {
        "entity_type": "ORG" if form.business else "IND",
        "payee_organization_name": name if form.business else "",
        "payee_last_name": "",
        "payee_first_name": "",
        "payee_street_1": form.street,
        "payee_street_2": form.street2 or "",
        "payee_city": form.city,
        "payee_state": form.state,
        "payee_zip": form.zip,
    }
    if not form.business:
        first, _, last = name.rpartition(" ")
        if not first:
            raise RallyError(f"name: {name!r} needs a first and a last name")
        fields["payee_last_name"], fields["payee_first_name"] = last, first
    fields = {name_: ascii_text(value) for name_, value in fields.items()}
    for name_, most in WIDTHS.items():
        if len(fields.get(name_, "")) > most:
            raise RallyError(f"{name_}: {fields[name_]!r} is over {most} characters")
    return fields


def ascii_text(text: str) -> str:
    """Text as the .fec format takes it: printable ASCII, accents dropped (José: Jose)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in plain if " " <= c <= "~")


def filing_of(campaign: Campaign) -> FecFiling:
    filing = campaign_spec(campaign).payments.fec
    if filing is None:
        raise RallyError(
            f"payments.fec: {campaign.slug}'s campaign file does not say how it files with "
            "the FEC (committee_id, form_type, election_code)"
        )
    return filing


def sb_record(line: Disbursement, filing: FecFiling) -> list[str]:
    """The 44 fields of the line's Schedule B record, in the format's order."""
    values = dict.fromkeys(SB_FIELDS, "")
    values |= line.payee
    values |= {
        "form_type": filing.form_type,
        "filer_committee_id_number": filing.committee_id,
        "transaction_id": line.transaction_id,
        "back_reference_tran_id_number": line.memo_of,
        "back_reference_sched_name": filing.form_type if line.memo_of else "",
        "election_code": filing.election_code or "",
        "expenditure_date": line.paid_on.strftime("%Y%m%d"),
        "expenditure_amount": f"{line.amount_cents / 100:.2f}",
        "expenditure_purpose_descrip": filing.purpose,
        "category_code": filing.category,
        "memo_code": "X" if line.memo_of else "",
        "memo_text_description": line.memo_text,
    }
    return [values[name] for name in SB_FIELDS]


def fec_text(lines: list[Disbursement], filing: FecFiling) -> str:
    """The lines as .fec records: fields separated by ASCII 28, records ended by CRLF."""
    return _fec([sb_record(line, filing) for line in lines])


def fec_csv(lines: list[Disbursement], filing: FecFiling) -> str:
    """The lines as CSV: the same 44 fields in the same order, no header."""
    return _csv([sb_record(line, filing) for line in lines])


def sa_record(line: Offset, filing: FecFiling) -> list[str]:
    """The 45 fields of the offset's Schedule A record, in the format's order."""
    values = dict.fromkeys(SA_FIELDS, "")
    values |= line.contributor()
    values |= {
        "form_type": OFFSET_FORM[filing.form_type],
        "filer_committee_id_number": filing.committee_id,
        "transaction_id": line.transaction_id,
        "contribution_date": line.received_on.strftime("%Y%m%d"),
        "contribution_amount": f"{line.amount_cents / 100:.2f}",
        "contribution_aggregate": f"{line.aggregate_cents / 100:.2f}",
        "contribution_purpose_descrip": offset_purpose(line),
    }
    return [values[name] for name in SA_FIELDS]


def offset_purpose(line: Offset) -> str:
    """What an offset is, as the FEC asks: a refund, and the day of the payment it refunds."""
    return f"Refund of creator payment of {line.paid_on:%m/%d/%Y}"


def offsets_fec_text(lines: list[Offset], filing: FecFiling) -> str:
    """The offsets as .fec records, as `fec_text` writes disbursements."""
    return _fec([sa_record(line, filing) for line in lines])


def offsets_fec_csv(lines: list[Offset], filing: FecFiling) -> str:
    """The offsets as CSV: the same 45 fields in the same order, no header."""
    return _csv([sa_record(line, filing) for line in lines])


def _fec(records: list[list[str]]) -> str:
    return "".join(SEPARATOR.join(record) + END for record in records)


def _csv(records: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=END).writerows(records)
    return out.getvalue()


def state_csv(lines: list[Disbursement], filing: FecFiling) -> str:
    """The lines as a plain CSV with a header, for state filings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["transaction_id", "date", "amount", "payee", "entity_type", "street", "street2",
         "city", "state", "zip", "purpose", "category", "to_date", "creator", "memo_of"]
    )  # fmt: skip
    for line in lines:
        p = line.payee
        name = p["payee_organization_name"] or f"{p['payee_first_name']} {p['payee_last_name']}"
        writer.writerow(
            [line.transaction_id, line.paid_on.isoformat(),
             f"{line.amount_cents / 100:.2f}", name, p["entity_type"], p["payee_street_1"],
             p["payee_street_2"], p["payee_city"], p["payee_state"], p["payee_zip"],
             filing.purpose, filing.category,
             "" if line.memo_of else f"{line.aggregate_cents / 100:.2f}", line.creator,
             line.memo_of]
        )  # fmt: skip
    return out.getvalue()


def offsets_state_csv(lines: list[Offset]) -> str:
    """The offsets as a plain CSV with a header, for state filings: each names the payment it
    refunds (`refunds`, the disbursement's transaction id)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["transaction_id", "date", "amount", "from", "entity_type", "street", "street2", "city",
         "state", "zip", "purpose", "to_date", "creator", "refunds"]
    )  # fmt: skip
    for line in lines:
        p = line.payee
        name = p["payee_organization_name"] or f"{p['payee_first_name']} {p['payee_last_name']}"
        writer.writerow(
            [line.transaction_id, line.received_on.isoformat(),
             f"{line.amount_cents / 100:.2f}", name, p["entity_type"], p["payee_street_1"],
             p["payee_street_2"], p["payee_city"], p["payee_state"], p["payee_zip"],
             offset_purpose(line), f"{line.aggregate_cents / 100:.2f}", line.creator,
             f"RALLY-PAY-{line.payout_id}"]
        )  # fmt: skip
    return out.getvalue()


def committee_campaigns(session: Session, filing: FecFiling) -> list[Campaign]:
    """The campaigns whose payments the committee of `filing` reports: those whose campaign
    file names its FEC id (a store may hold more than one committee's)."""
    found = []
    for campaign in session.exec(select(Campaign).order_by(col(Campaign.id))):
        fec = campaign_spec(campaign).payments.fec
        if fec is not None and fec.committee_id == filing.committee_id:
            found.append(campaign)
    return found


@dataclass(frozen=True)
class Report:
    """A period's report for the treasurer: its files by name (the offsets' only when money
    came back), what it holds in a sentence or two, and the payees left out, with why."""

    files: dict[str, str]
    summary: list[str]
    problems: list[str]


def report(session: Session, campaign: Campaign, start: date, end: date) -> Report:
    """The disbursements from `start` to `end` and the offsets of the money that came back,
    as the files `rally payments disbursements` writes and the staff console serves."""
    filing = filing_of(campaign)
    campaigns = [c.id or 0 for c in committee_campaigns(session, filing)]
    found = disbursements(session, start, end, filing, campaigns)
    back = offsets(session, start, end, filing, campaigns)
    stem = f"disbursements-{start}-{end}"
    files = {
        f"{stem}.fec": fec_text(found.lines, filing),
        f"{stem}.fec.csv": fec_csv(found.lines, filing),
        f"{stem}.csv": state_csv(found.lines, filing),
    }
    itemized = [line for line in found.lines if not line.memo_of]
    memos = len(found.lines) - len(itemized)
    summary = [
        f"{len(itemized)} itemized disbursement(s), "
        f"{sum(line.amount_cents for line in itemized) / 100:,.2f} USD"
        + (f" (with {memos} memo entries for creators paid through an agency)" if memos else "")
        + f"; {found.unitemized_payments} unitemized, {found.unitemized_cents / 100:,.2f} USD."
    ]
    if back.lines or back.unitemized_receipts:
        stem = f"offsets-{start}-{end}"
        files |= {
            f"{stem}.fec": offsets_fec_text(back.lines, filing),
            f"{stem}.fec.csv": offsets_fec_csv(back.lines, filing),
            f"{stem}.csv": offsets_state_csv(back.lines),
        }
        summary.append(
            f"Money that came back after it was paid: {len(back.lines)} itemized offset(s), "
            f"{sum(line.amount_cents for line in back.lines) / 100:,.2f} USD; "
            f"{back.unitemized_receipts} unitemized, {back.unitemized_cents / 100:,.2f} USD."
        )
    problems = list(dict.fromkeys(found.problems + back.problems))
    return Report(files, summary, problems)
