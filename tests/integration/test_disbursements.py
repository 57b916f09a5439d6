"""Disbursement reports as a treasurer files them: creators' settled payouts as Schedule B
records for the FEC (the format's 44 fields in order, checked against a hand-worked example),
the same as CSV, and a plain CSV for state filings; payees over USD 200 in the year itemized,
the rest counted, and a payee without an address named rather than filed incomplete; and the
disclaimer archive of what was posted."""

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlmodel import col, select

from benchmarks.pages import apply_example
from config.settings import get_settings
from store.db import transaction
from store.models import Campaign, LedgerEntry, Payout
from tasks.payments.disbursements import (
    SA_FIELDS,
    SB_FIELDS,
    WIDTHS,
    committee_campaigns,
    disbursements,
    fec_text,
    filing_of,
)
from tasks.payments.payouts import pay, settled_payouts, start_payouts, take_back
from tests.conftest import SLUG
from tests.fakes.stripe_api import FakeStripe
from tests.integration.test_payouts import handles, ready_to_pay, use

FILING = """
payments:
  fec:
    committee_id: C00123456
    form_type: SB21B
    election_code: G2028
"""
PERIOD = ("2027-01-01", "2027-03-31")


@pytest.fixture
def stripe(settings, monkeypatch) -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield use(fake, monkeypatch)
    get_settings.cache_clear()


@pytest.fixture
def filing(applied, rally):
    campaign = applied / "campaign.yaml"
    campaign.write_text(campaign.read_text() + FILING)
    assert rally("campaign", "apply", campaign).code == 0


def paid_on(engine, stripe, handle: str, cents: int, day: date, n: int, *, slug: str = SLUG) -> int:
    """`cents` earned, approved and paid to `handle` by campaign `slug`, settled on `day`; the
    payout's id."""
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    ready_to_pay(engine, stripe, {handle: cents}, first=n * 100, slug=slug)
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
        start_payouts(session, campaign, actor="staff:test", now=at)
    assert pay(engine, get_settings(), now=lambda: at).sent == 1
    with transaction(engine, write=False) as session:
        return max(p or 0 for p in session.exec(select(Payout.id)))


def test_a_quarter_of_payouts_as_schedule_b_against_a_hand_worked_example(
    engine, filing, rally, stripe, settings
) -> None:
    maya, reyes, even, nowhere = handles(engine, 4)
    for handle, name, extra in (
        (maya, "Maya Thompson", ["--street", "12 Main St", "--city", "Philadelphia",
                                 "--state", "pa", "--zip", "19104"]),
        (reyes, "Reyes Media LLC", ["--business", "--street", "400 Market St",
                                    "--street2", "Ste 2", "--city", "Pittsburgh",
                                    "--state", "PA", "--zip", "15222-1234"]),
        (even, "José Ortiz", ["--street", "9 Elm Ave", "--city", "Erie", "--state", "PA",
                              "--zip", "16501"]),
    ):  # fmt: skip
        run = rally(
            "payments", "w9", handle, "--collected-on", "2026-11-30", "--name", name, *extra
        )
        assert run.code == 0, run.err
    reyes_1 = paid_on(engine, stripe, reyes, 15_000, date(2027, 1, 10), 1)
    paid_on(engine, stripe, even, 20_000, date(2027, 1, 20), 2)  # 200.00: not over, not itemized
    maya_1 = paid_on(engine, stripe, maya, 25_000, date(2027, 2, 15), 3)
    paid_on(engine, stripe, nowhere, 30_000, date(2027, 2, 20), 4)  # no W-9, no address
    reyes_2 = paid_on(engine, stripe, reyes, 10_000, date(2027, 3, 2), 5)
    paid_on(engine, stripe, maya, 5_000, date(2027, 4, 1), 6)  # the next quarter

    run = rally("payments", "disbursements", SLUG, "--from", PERIOD[0], "--to", PERIOD[1])
    assert run.code == 1  # a payee is left out, and said to be
    assert "3 itemized disbursement(s), 500.00 USD; 1 unitemized, 200.00 USD." in run.out
    assert f"Not itemized: {nowhere}: address: none on file" in run.out
    folder = settings.exports / SLUG
    fec = (folder / "disbursements-2027-01-01-2027-03-31.fec").read_bytes().decode("ascii")

    # By hand: Reyes Media is over USD 200 in the year with its second payment, so both of its
    # payments are lines (its year's total through each: 150.00, then 250.00).
    empty_25_to_44 = [""] * 20
    org = ["ORG", "Reyes Media LLC", "", "", "", "", "", "400 Market St", "Ste 2",
           "Pittsburgh", "PA", "152221234"]  # fmt: skip
    ind = ["IND", "", "Thompson", "Maya", "", "", "", "12 Main St", "", "Philadelphia", "PA",
           "19104"]  # fmt: skip
    purpose = ["Online advertising: creator content", "004"]
    expected = [
        ["SB21B", "C00123456", f"RALLY-PAY-{reyes_1}", "", "", *org, "G2028", "",
         "20270110", "150.00", "", *purpose, *empty_25_to_44],
        ["SB21B", "C00123456", f"RALLY-PAY-{maya_1}", "", "", *ind, "G2028", "",
         "20270215", "250.00", "", *purpose, *empty_25_to_44],
        ["SB21B", "C00123456", f"RALLY-PAY-{reyes_2}", "", "", *org, "G2028", "",
         "20270302", "100.00", "", *purpose, *empty_25_to_44],
    ]  # fmt: skip
    assert fec == "".join("\x1c".join(record) + "\r\n" for record in expected)
    assert all(len(record) == len(SB_FIELDS) == 44 for record in expected)
    widths = [width for _, width in SCHEDULE_B]
    assert all(len(v) <= w for r in expected for v, w in zip(r, widths, strict=True))
    by_csv = list(csv.reader(io.StringIO(
        (folder / "disbursements-2027-01-01-2027-03-31.fec.csv").read_text()
    )))  # fmt: skip
    assert by_csv == expected
    state = list(csv.DictReader(io.StringIO(
        (folder / "disbursements-2027-01-01-2027-03-31.csv").read_text()
    )))  # fmt: skip
    assert [(r["payee"], r["amount"], r["to_date"]) for r in state] == [
        ("Reyes Media LLC", "150.00", "150.00"),
        ("Maya Thompson", "250.00", "250.00"),
        ("Reyes Media LLC", "100.00", "250.00"),
    ]


def test_money_that_came_back_is_an_offset_on_schedule_a_against_a_hand_worked_example(
    engine, filing, rally, stripe, settings
) -> None:
    maya, reyes = handles(engine, 2)
    for handle, name, extra in (
        (maya, "Maya Thompson", ["--street", "12 Main St", "--city", "Philadelphia",
                                 "--state", "PA", "--zip", "19104"]),
        (reyes, "Reyes Media LLC", ["--business", "--street", "400 Market St",
                                    "--city", "Pittsburgh", "--state", "PA", "--zip", "15222"]),
    ):  # fmt: skip
        run = rally(
            "payments", "w9", handle, "--collected-on", "2026-11-30", "--name", name, *extra
        )
        assert run.code == 0, run.err
    reyes_paid = paid_on(engine, stripe, reyes, 15_000, date(2027, 1, 10), 1)
    maya_paid = paid_on(engine, stripe, maya, 25_000, date(2027, 2, 15), 2)

    def back(payout: int, cents: int, day: date) -> None:
        """Of the payout, `cents` in all came back by `day` (a reversal, in part)."""
        at = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        with transaction(engine) as session:
            assert take_back(session, payout, cents, "reversed", actor="stripe", now=at)

    back(maya_paid, 12_000, date(2027, 2, 20))
    back(maya_paid, 25_000, date(2027, 3, 5))  # the other 130.00: 250.00 back in the year
    back(reyes_paid, 5_000, date(2027, 3, 10))  # 50.00 in the year: not over 200, not itemized
    back(reyes_paid, 15_000, date(2027, 4, 2))  # the next quarter
    with transaction(engine, write=False) as session:
        first, second, *_ = session.exec(
            select(LedgerEntry.id)
            .where(LedgerEntry.kind == "taken_back", LedgerEntry.account == "paid")
            .order_by(col(LedgerEntry.id))
        ).all()

    run = rally("payments", "disbursements", SLUG, "--from", PERIOD[0], "--to", PERIOD[1])
    assert run.code == 0, run.out + run.err
    # What came back leaves the disbursements as they were paid, and is a receipt of its own.
    assert "1 itemized disbursement(s), 250.00 USD; 1 unitemized, 150.00 USD." in run.out
    assert (
        "Money that came back after it was paid: 2 itemized offset(s), 250.00 USD; "
        "1 unitemized, 50.00 USD." in run.out
    )
    folder = settings.exports / SLUG
    fec = (folder / "offsets-2027-01-01-2027-03-31.fec").read_bytes().decode("ascii")
    # By hand: Form 3X's offsets are line 15; Maya's two refunds, her year's total through each.
    maya_fields = ["IND", "", "Thompson", "Maya", "", "", "", "12 Main St", "", "Philadelphia",
                   "PA", "19104", "", ""]  # fmt: skip
    refund = "Refund of creator payment of 02/15/2027"
    expected = [
        ["SA15", "C00123456", f"RALLY-RET-{first}", "", "", *maya_fields, "20270220", "120.00",
         "120.00", refund, *[""] * 22],
        ["SA15", "C00123456", f"RALLY-RET-{second}", "", "", *maya_fields, "20270305", "130.00",
         "250.00", refund, *[""] * 22],
    ]  # fmt: skip
    assert fec == "".join("\x1c".join(record) + "\r\n" for record in expected)
    widths = [width for _, width in SCHEDULE_A]
    assert all(len(v) <= w for r in expected for v, w in zip(r, widths, strict=True))
    by_csv = list(csv.reader(io.StringIO(
        (folder / "offsets-2027-01-01-2027-03-31.fec.csv").read_text()
    )))  # fmt: skip
    assert by_csv == expected
    state = list(csv.DictReader(io.StringIO(
        (folder / "offsets-2027-01-01-2027-03-31.csv").read_text()
    )))  # fmt: skip
    assert [(r["from"], r["amount"], r["to_date"], r["refunds"]) for r in state] == [
        ("Maya Thompson", "120.00", "120.00", f"RALLY-PAY-{maya_paid}"),
        ("Maya Thompson", "130.00", "250.00", f"RALLY-PAY-{maya_paid}"),
    ]
    # A quarter with nothing back writes no offsets.
    winter = rally("payments", "disbursements", SLUG, "--from", "2027-10-01", "--to", "2027-12-31")
    assert winter.code == 0 and "came back" not in winter.out
    assert not (folder / "offsets-2027-10-01-2027-12-31.fec").exists()


AGENCIES = """
  agencies:
    northside:
      name: Northside Talent LLC
      street: 1 Penn Sq
      city: Philadelphia
      state: PA
      zip: 19107-3001
"""


def through_agency(folder, rally, handles_: list[str]) -> None:
    """The campaign file names an agency, and the roster says `handles_` are paid through it."""
    campaign = folder / "campaign.yaml"
    campaign.write_text(campaign.read_text() + AGENCIES)
    roster = folder / "roster.csv"
    rows = list(csv.reader(io.StringIO(roster.read_text())))
    paid_through = {h.lstrip("@") for h in handles_}
    rows = [[*rows[0], "agency"]] + [
        [*r, "northside" if r[0] in paid_through else ""] for r in rows[1:]
    ]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    roster.write_text(out.getvalue())
    run = rally("campaign", "apply", campaign)
    assert run.code == 0, run.err


def test_creators_paid_through_an_agency_are_memo_entries_under_the_agency_s_line(
    engine, applied, filing, rally, stripe, settings
) -> None:
    ana, ben, cal = handles(engine, 3)
    through_agency(applied, rally, [ana, ben])
    for handle, name, street in ((ana, "Ana Diaz", "5 Oak St"), (ben, "Ben Okafor", "7 Ash St")):
        run = rally("payments", "w9", handle, "--collected-on", "2026-11-30", "--name", name,
                    "--street", street, "--city", "Reading", "--state", "PA",
                    "--zip", "19601")  # fmt: skip
        assert run.code == 0, run.err
    # By hand: neither creator reaches USD 200, but the agency, paid for both, does with the
    # second payment; so both payments are lines to the agency (150.00, then 300.00 to date),
    # each followed by its creator's memo entry.
    ana_1 = paid_on(engine, stripe, ana, 15_000, date(2027, 1, 10), 1)
    ben_1 = paid_on(engine, stripe, ben, 15_000, date(2027, 2, 10), 2)
    paid_on(engine, stripe, cal, 5_000, date(2027, 2, 11), 3)  # paid directly, under 200

    run = rally("payments", "disbursements", SLUG, "--from", PERIOD[0], "--to", PERIOD[1])
    assert run.code == 0, run.out
    assert (
        "2 itemized disbursement(s), 300.00 USD (with 2 memo entries for creators paid through "
        "an agency); 1 unitemized, 50.00 USD." in run.out
    )  # a memo entry is not a second disbursement
    folder = settings.exports / SLUG
    records = [
        line.split("\x1c")
        for line in (folder / "disbursements-2027-01-01-2027-03-31.fec")
        .read_bytes()
        .decode("ascii")
        .split("\r\n")
        if line
    ]
    agency = ["ORG", "Northside Talent LLC", "", "", "", "", "", "1 Penn Sq", "",
              "Philadelphia", "PA", "191073001"]  # fmt: skip

    def person(last: str, first: str, street: str) -> list[str]:
        return ["IND", "", last, first, "", "", "", street, "", "Reading", "PA", "19601"]

    tail = ["Online advertising: creator content", "004", *[""] * 17]  # through conduit zip
    memo = ["X", "Paid by Northside Talent LLC for creator content", ""]
    expected = [
        ["SB21B", "C00123456", f"RALLY-PAY-{ana_1}", "", "", *agency, "G2028", "",
         "20270110", "150.00", "", *tail, "", "", ""],
        ["SB21B", "C00123456", f"RALLY-PAY-{ana_1}-M", f"RALLY-PAY-{ana_1}", "SB21B",
         *person("Diaz", "Ana", "5 Oak St"), "G2028", "", "20270110", "150.00", "", *tail,
         *memo],
        ["SB21B", "C00123456", f"RALLY-PAY-{ben_1}", "", "", *agency, "G2028", "",
         "20270210", "150.00", "", *tail, "", "", ""],
        ["SB21B", "C00123456", f"RALLY-PAY-{ben_1}-M", f"RALLY-PAY-{ben_1}", "SB21B",
         *person("Okafor", "Ben", "7 Ash St"), "G2028", "", "20270210", "150.00", "", *tail,
         *memo],
    ]  # fmt: skip
    assert records == expected
    assert all(len(r) == 44 for r in records)
    state = list(csv.DictReader(io.StringIO(
        (folder / "disbursements-2027-01-01-2027-03-31.csv").read_text()
    )))  # fmt: skip
    assert [(r["payee"], r["to_date"], r["memo_of"]) for r in state] == [
        ("Northside Talent LLC", "150.00", ""),
        ("Ana Diaz", "", f"RALLY-PAY-{ana_1}"),
        ("Northside Talent LLC", "300.00", ""),
        ("Ben Okafor", "", f"RALLY-PAY-{ben_1}"),
    ]
    # The agency is the payee for tax too; the creators it paid are not listed as paid.
    [year] = json.loads(rally("payments", "tax-year", "2027", "--json").out)["payers"]
    assert year["payer"] == "C00123456"  # the committee pays
    assert [row["creator"] for row in year["creators"]] == [cal.lstrip("@")]
    assert year["agencies"] == [
        {"agency": "Northside Talent LLC", "paid_cents": 30_000, "needs_1099_nec": False}
    ]


def test_an_agency_not_in_the_campaign_file_is_refused_naming_the_row(
    engine, applied, rally
) -> None:
    roster = applied / "roster.csv"
    rows = roster.read_text().splitlines()
    rows = [rows[0] + ",agency", rows[1] + ",nobody_we_know", *rows[2:]]
    roster.write_text("\n".join(rows) + "\n")
    run = rally("campaign", "apply", applied / "campaign.yaml")
    assert run.code != 0
    assert "row 2 (@maya.votes.pa): agency: must be one of" in run.err + run.out
    assert "nobody_we_know" in run.err + run.out


CANDIDATE = """
payments:
  fec:
    committee_id: C00654321
    form_type: SB17
    election_code: G2028
    cycle_starts: 2026-11-04
"""


def test_a_candidate_committee_aggregates_over_the_election_cycle(
    engine, applied, rally, stripe, settings
) -> None:
    campaign = applied / "campaign.yaml"
    original = campaign.read_text()
    campaign.write_text(original + CANDIDATE.replace("    cycle_starts: 2026-11-04\n", ""))
    refused = rally("campaign", "apply", campaign)
    assert refused.code != 0 and "cycle_starts" in refused.err + refused.out
    campaign.write_text(original + CANDIDATE)
    assert rally("campaign", "apply", campaign).code == 0
    (maya,) = handles(engine, 1)
    assert rally("payments", "w9", maya, "--collected-on", "2026-11-30", "--name", "Maya Thompson",
                 "--street", "12 Main St", "--city", "Philadelphia", "--state", "PA",
                 "--zip", "19104").code == 0  # fmt: skip
    paid_on(engine, stripe, maya, 15_000, date(2026, 12, 1), 1)  # in the cycle, last year
    second = paid_on(engine, stripe, maya, 10_000, date(2027, 2, 1), 2)

    # By calendar year Maya would be at 100.00 in 2027, not itemized; over the cycle she is
    # at 250.00, so her 2027 payment is a line, with the cycle's total through it.
    run = rally("payments", "disbursements", SLUG, "--from", PERIOD[0], "--to", PERIOD[1])
    assert run.code == 0, run.out
    state = list(csv.DictReader(io.StringIO(
        (settings.exports / SLUG / "disbursements-2027-01-01-2027-03-31.csv").read_text()
    )))  # fmt: skip
    assert [(r["transaction_id"], r["amount"], r["to_date"]) for r in state] == [
        (f"RALLY-PAY-{second}", "100.00", "250.00")
    ]
    fec = (settings.exports / SLUG / "disbursements-2027-01-01-2027-03-31.fec").read_text()
    assert fec.startswith("SB17\x1cC00654321\x1c")
    # A period across New Year is one report in a cycle; one before the cycle is refused.
    across = rally("payments", "disbursements", SLUG, "--from", "2026-11-04", "--to", "2027-03-31")
    assert across.code == 0 and "2 itemized disbursement(s), 250.00 USD" in across.out
    before = rally("payments", "disbursements", SLUG, "--from", "2026-11-01", "--to", "2026-12-31")
    assert before.code != 0 and "before the election cycle" in before.err


# Schedule B's columns in the format's order, with their widths, as fecgov/fecfile-validate's
# `schema/SchB.json` (spec 8.3.0.1, the layout of 8.0 to 8.5) lists them.
SCHEDULE_B = [
    ("FORM TYPE", 8), ("FILER COMMITTEE ID NUMBER", 9), ("TRANSACTION ID", 20),
    ("BACK REFERENCE TRAN ID NUMBER", 20), ("BACK REFERENCE SCHED NAME", 8), ("ENTITY TYPE", 3),
    ("PAYEE ORGANIZATION NAME", 200), ("PAYEE LAST NAME", 30), ("PAYEE FIRST NAME", 20),
    ("PAYEE MIDDLE NAME", 20), ("PAYEE PREFIX", 10), ("PAYEE SUFFIX", 10),
    ("PAYEE STREET 1", 34), ("PAYEE STREET 2", 34), ("PAYEE CITY", 30), ("PAYEE STATE", 2),
    ("PAYEE ZIP", 9), ("ELECTION CODE", 5), ("ELECTION OTHER DESCRIPTION", 20),
    ("EXPENDITURE DATE", 8), ("EXPENDITURE AMOUNT", 12), ("SEMI-ANNUAL REFUNDED BUNDLED AMT", 12),
    ("EXPENDITURE PURPOSE DESCRIP", 100), ("CATEGORY CODE", 3),
    ("BENEFICIARY COMMITTEE FEC ID", 9), ("BENEFICIARY COMMITTEE NAME", 200),
    ("BENEFICIARY CANDIDATE FEC ID", 9), ("BENEFICIARY CANDIDATE LAST NAME", 30),
    ("BENEFICIARY CANDIDATE FIRST NAME", 20), ("BENEFICIARY CANDIDATE MIDDLE NAME", 20),
    ("BENEFICIARY CANDIDATE PREFIX", 10), ("BENEFICIARY CANDIDATE SUFFIX", 10),
    ("BENEFICIARY CANDIDATE OFFICE", 1), ("BENEFICIARY CANDIDATE STATE", 2),
    ("BENEFICIARY CANDIDATE DISTRICT", 2), ("CONDUIT NAME", 200), ("CONDUIT STREET1", 34),
    ("CONDUIT STREET2", 34), ("CONDUIT CITY", 30), ("CONDUIT STATE", 2), ("CONDUIT ZIP", 9),
    ("MEMO CODE", 1), ("MEMO TEXT/DESCRIPTION", 100),
    ("REFERENCE TO SI OR SL SYSTEM CODE THAT IDENTIFIES THE ACCOUNT", 9),
]  # fmt: skip


# Schedule A's columns in the format's order, with their widths, as the FEC's format
# specification 8.3.0.1 (fecgov/fecfile-validate's `FEC_Format_v8.3.0.1.xlsx`, "Sch A") lists them.
SCHEDULE_A = [
    ("FORM TYPE", 8), ("FILER COMMITTEE ID NUMBER", 9), ("TRANSACTION ID", 20),
    ("BACK REFERENCE TRAN ID NUMBER", 20), ("BACK REFERENCE SCHED NAME", 8), ("ENTITY TYPE", 3),
    ("CONTRIBUTOR ORGANIZATION NAME", 200), ("CONTRIBUTOR LAST NAME", 30),
    ("CONTRIBUTOR FIRST NAME", 20), ("CONTRIBUTOR MIDDLE NAME", 20), ("CONTRIBUTOR PREFIX", 10),
    ("CONTRIBUTOR SUFFIX", 10), ("CONTRIBUTOR STREET  1", 34), ("CONTRIBUTOR STREET  2", 34),
    ("CONTRIBUTOR CITY", 30), ("CONTRIBUTOR STATE", 2), ("CONTRIBUTOR ZIP", 9),
    ("ELECTION CODE", 5), ("ELECTION OTHER DESCRIPTION", 20), ("CONTRIBUTION DATE", 8),
    ("CONTRIBUTION AMOUNT", 12), ("CONTRIBUTION AGGREGATE", 12),
    ("CONTRIBUTION PURPOSE DESCRIP", 100), ("CONTRIBUTOR EMPLOYER", 38),
    ("CONTRIBUTOR OCCUPATION", 38), ("DONOR COMMITTEE FEC ID", 9), ("DONOR COMMITTEE NAME", 200),
    ("DONOR CANDIDATE FEC ID", 9), ("DONOR CANDIDATE LAST NAME", 30),
    ("DONOR CANDIDATE FIRST NAME", 20), ("DONOR CANDIDATE MIDDLE NAME", 20),
    ("DONOR CANDIDATE PREFIX", 10), ("DONOR CANDIDATE SUFFIX", 10), ("DONOR CANDIDATE OFFICE", 1),
    ("DONOR CANDIDATE STATE", 2), ("DONOR CANDIDATE DISTRICT", 2), ("CONDUIT NAME", 200),
    ("CONDUIT STREET1", 34), ("CONDUIT STREET2", 34), ("CONDUIT CITY", 30), ("CONDUIT STATE", 2),
    ("CONDUIT ZIP", 9), ("MEMO CODE", 1), ("MEMO TEXT/DESCRIPTION", 100),
    ("REFERENCE TO SI OR SL SYSTEM CODE THAT IDENTIFIES THE ACCOUNT", 9),
]  # fmt: skip


def test_the_format_s_fields_and_widths(engine, filing) -> None:
    """The record keeps the format's order (fecfile-validate's SchB, 8.x) where Rally fills
    it, and the widths Rally checks are the format's."""
    named = [re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") for name, _ in SCHEDULE_B]
    assert list(SB_FIELDS) == named  # every column, in the format's order
    offsets = [re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") for name, _ in SCHEDULE_A]
    assert list(SA_FIELDS) == offsets and len(SA_FIELDS) == 45
    widths = dict(zip(SB_FIELDS, (width for _, width in SCHEDULE_B), strict=True))
    assert {name: widths[name] for name in WIDTHS} == WIDTHS
    assert SB_FIELDS[:6] == (
        "form_type", "filer_committee_id_number", "transaction_id",
        "back_reference_tran_id_number", "back_reference_sched_name", "entity_type",
    )  # fmt: skip
    assert SB_FIELDS.index("payee_zip") == 16 and SB_FIELDS.index("expenditure_date") == 19
    assert SB_FIELDS.index("category_code") == 23 and SB_FIELDS.index("memo_code") == 41
    assert WIDTHS["payee_last_name"] == 30 and WIDTHS["payee_street_1"] == 34
    with transaction(engine, write=False) as session:
        filing = filing_of(session.exec(select(Campaign).where(Campaign.slug == SLUG)).one())
        found = disbursements(session, date(2027, 1, 1), date(2027, 3, 31), filing)
    assert found.lines == [] and fec_text(found.lines, filing) == ""


def test_bad_addresses_and_periods_are_refused_naming_the_field(engine, filing, rally) -> None:
    (maya,) = handles(engine, 1)
    bad = rally("payments", "w9", maya, "--street", "1 A St", "--city", "X", "--state", "Penn",
                "--zip", "19104")  # fmt: skip
    assert bad.code != 0 and "state: 'Penn' is not a two-letter state code" in bad.err
    zip_ = rally("payments", "w9", maya, "--street", "1 A St", "--city", "X", "--state", "PA",
                 "--zip", "1910")  # fmt: skip
    assert zip_.code != 0 and "zip: '1910' is not a ZIP code" in zip_.err
    partial = rally("payments", "w9", maya, "--street", "1 A St")
    assert partial.code != 0 and "city: the address needs a city" in partial.err
    backwards = rally(
        "payments", "disbursements", SLUG, "--from", "2027-03-31", "--to", "2027-01-01"
    )
    assert backwards.code != 0 and "to: 2027-01-01 is before 2027-03-31" in backwards.err
    across = rally("payments", "disbursements", SLUG, "--from", "2026-12-01", "--to", "2027-01-31")
    assert across.code != 0 and "within one calendar year" in across.err


def test_a_campaign_without_fec_settings_is_told_what_to_add(
    applied, rally, settings, engine
) -> None:
    from tests.integration.test_staff_console import STAFF, signed_in

    run = rally("payments", "disbursements", SLUG, "--from", PERIOD[0], "--to", PERIOD[1])
    assert run.code != 0 and "payments.fec" in run.err and "committee_id" in run.err
    page = signed_in(settings, engine, STAFF).get(f"/staff/campaigns/{SLUG}/payments/reports")
    assert page.status_code == 200 and 'id="not-filing"' in page.text
    assert "committee_id" in page.text and 'id="period"' not in page.text


def test_the_disclaimer_archive_keeps_what_was_posted_and_what_stands_behind_it(
    engine, applied, rally, settings
) -> None:
    from tests.integration.test_payments import approved
    from tests.integration.test_review import COUNSEL, DANA, GOOD

    creative = approved(engine)  # through internal and legal review: half its fee earned
    url = "https://www.tiktok.com/@maya.votes.pa/video/1"
    assert rally("creatives", "posted", creative, url).code == 0
    unposted = approved(engine)  # approved, never posted: not in the archive
    (row,) = json.loads(rally("payments", "disclaimers", SLUG, "--json").out)
    assert (row["creative"], row["creator"], row["posted_url"]) == (creative, "maya.votes.pa", url)
    assert row["caption"] == GOOD and unposted != creative
    assert row["paid_for_by"] and row["paid_for_by"] in GOOD
    assert row["paid_for_by"].startswith("Paid for by") and row["paid_for_by"].endswith(".")
    assert [(a["tier"], a["by"]) for a in row["approvals"]] == [
        ("internal", DANA),
        ("legal", COUNSEL),
    ]
    assert row["earned_cents"] == 40_000 and row["creator_payouts"] == []
    run = rally("payments", "disclaimers", SLUG)
    assert "1 posted creative(s)" in run.out
    written = list(csv.DictReader(io.StringIO(
        (settings.exports / SLUG / "disclaimer-archive.csv").read_text()
    )))  # fmt: skip
    assert [(r["creative"], r["paid_for_by"]) for r in written] == [
        (str(creative), row["paid_for_by"])
    ]


def test_the_console_serves_a_report_s_files_only_to_the_campaign_s_staff(
    engine, filing, settings, stripe
) -> None:
    """The treasurer's page says what is wrong with a period, serves each file of the report
    under its name, and nothing else; someone who is not the campaign's staff gets nothing."""
    from tests.integration.test_staff_console import LEGAL, STAFF, signed_in

    (maya,) = handles(engine, 1)
    paid_on(engine, stripe, maya, 25_000, date(2027, 2, 15), 1)
    staff = signed_in(settings, engine, STAFF)
    reports = f"/staff/campaigns/{SLUG}/payments/reports"
    bad = staff.get(reports, params={"from": "2027-02-30", "to": "2027-03-31"})
    assert bad.status_code == 200 and "from: &#39;2027-02-30&#39; is not a day" in bad.text
    page = staff.get(reports, params={"from": "2027-01-01", "to": "2027-03-31"})
    assert "0 itemized disbursement(s), 0.00 USD; 0 unitemized" in page.text  # no address yet
    assert f"{maya}: address: none on file" in page.text
    name = "disbursements-2027-01-01-2027-03-31.csv"
    period = {"from": "2027-01-01", "to": "2027-03-31"}
    got = staff.get(f"{reports}/{name}", params=period)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"] == f'attachment; filename="{name}"'
    assert got.text.startswith("transaction_id,date,amount,payee")
    assert (
        staff.get(f"{reports}/offsets-2027-01-01-2027-03-31.fec", params=period).status_code == 404
    )
    assert staff.get(f"{reports}/..%2Frally.db", params=period).status_code == 404
    stranger = signed_in(settings, engine, LEGAL)  # an approver, not this campaign's staff
    refused = stranger.get(f"{reports}/{name}", params=period)
    assert refused.status_code == 404 and "transaction_id" not in refused.text


def test_a_committee_s_report_covers_its_own_campaigns_and_only_their_staff_prepare_it(
    engine, applied, filing, settings, stripe, tmp_path
) -> None:
    """A second campaign under the same committee (its staff someone else) shares the report,
    so the first campaign's staff cannot prepare it on the console; once the second campaign
    files under another committee, each report holds its own campaign's payments only."""
    from tests.integration.test_staff_console import STAFF, other_campaign, signed_in

    (maya,) = handles(engine, 1)
    payout = paid_on(engine, stripe, maya, 25_000, date(2027, 2, 15), 1)
    other = other_campaign(engine, applied, tmp_path)  # the same campaign file: one committee
    staff = signed_in(settings, engine, STAFF)
    reports = f"/staff/campaigns/{SLUG}/payments/reports"
    period = {"from": "2027-01-01", "to": "2027-03-31"}
    page = staff.get(reports, params=period)
    assert 'id="not-theirs"' in page.text and "1 other campaign that you are not" in page.text
    assert "itemized disbursement" not in page.text
    name = "disbursements-2027-01-01-2027-03-31.csv"
    assert staff.get(f"{reports}/{name}", params=period).status_code == 404

    second = tmp_path / "other" / "campaign.yaml"
    second.write_text(second.read_text().replace("C00123456", "C00999999"))
    apply_example(engine, second.parent)
    with transaction(engine, write=False) as session:
        ours = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        assert [c.id for c in committee_campaigns(session, filing_of(ours))] == [ours.id]
        since, until = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)
        assert [p.id for p, *_ in settled_payouts(session, since, until, [ours.id or 0])] == [
            payout
        ]
        assert settled_payouts(session, since, until, [other]) == []
    page = staff.get(reports, params=period)  # the campaign's own committee again: its staff's
    assert 'id="not-theirs"' not in page.text
    assert f"{maya}: address: none on file" in page.text  # Maya's payment, to be itemized
    far = staff.get(reports, params={"from": "9999-01-01", "to": "9999-12-31"})
    assert far.status_code == 200 and "further ahead than any report" in far.text


def test_each_payer_s_1099_nec_counts_its_own_payments(
    engine, applied, filing, stripe, rally, tmp_path
) -> None:
    """One creator paid 1,500.00 by each of two campaigns: under one committee that is 3,000.00
    and a 1099-NEC; once the second campaign files under another committee, each payer paid
    less than the threshold and neither needs one."""
    from tests.integration.test_staff_console import OTHER, other_campaign

    (maya,) = handles(engine, 1)
    other_campaign(engine, applied, tmp_path)  # the same campaign file: one committee
    paid_on(engine, stripe, maya, 150_000, date(2027, 2, 15), 1)
    paid_on(engine, stripe, maya, 150_000, date(2027, 3, 15), 2, slug=OTHER)

    def year(*options: str) -> list[tuple[str | None, list[str], list[tuple[str, int, bool]]]]:
        run = rally("payments", "tax-year", "2027", "--json", *options)
        assert run.code == 0, run.err
        return [
            (payer["payer"], payer["campaigns"],
             [(r["creator"], r["paid_cents"], r["needs_1099_nec"]) for r in payer["creators"]])
            for payer in json.loads(run.out)["payers"]
        ]  # fmt: skip

    creator = maya.lstrip("@")
    assert year() == [("C00123456", sorted([SLUG, OTHER]), [(creator, 300_000, True)])]
    second = tmp_path / "other" / "campaign.yaml"
    second.write_text(second.read_text().replace("C00123456", "C00999999"))
    apply_example(engine, second.parent)
    assert year() == [
        ("C00123456", [SLUG], [(creator, 150_000, False)]),
        ("C00999999", [OTHER], [(creator, 150_000, False)]),
    ]
    assert year("--payer", "C00999999") == [("C00999999", [OTHER], [(creator, 150_000, False)])]
    shown = rally("payments", "tax-year", "2027")
    assert f"Paid by C00123456 ({SLUG}):" in shown.out and "needed" not in shown.out
    unknown = rally("payments", "tax-year", "2027", "--payer", "C00000001")
    assert unknown.code != 0
    assert "no campaign is paid by 'C00000001'" in unknown.err and "C00999999" in unknown.err


def test_the_console_records_a_w9_for_the_campaign_s_own_creators_only(
    engine, applied, settings, tmp_path
) -> None:
    """Staff record a creator's W-9 on the console as `rally payments w9` does; a whole
    taxpayer id is refused and never shown back; a creator of another campaign's roster only,
    a stranger and a form from another site get nothing."""
    from store.models import Creator, RosterMember, TaxForm
    from tests.integration.test_staff_console import LEGAL, STAFF, other_campaign, signed_in

    (maya,) = handles(engine, 1)
    other = other_campaign(engine, applied, tmp_path)
    with transaction(engine) as session:
        elsewhere = Creator(platform="tiktok", handle="only.elsewhere")
        session.add(elsewhere)
        session.flush()
        session.add(RosterMember(campaign_id=other, creator_id=elsewhere.id or 0,
                                 tracking_code="elsewhere1", source_code="elsewhere1"))  # fmt: skip
    staff = signed_in(settings, engine, STAFF)
    form = f"/staff/campaigns/{SLUG}/payments/w9/{maya.lstrip('@')}"
    sent = {"collected_on": "2026-11-30", "name": "Maya Thompson", "tin_last4": "123-45-6789",
            "street": "12 Main St", "city": "Philadelphia", "state": "pa",
            "zip": "19104"}  # fmt: skip
    whole = staff.post(form, data=sent)
    assert whole.status_code == 400 and "tin_last4: give only the last four digits" in whole.text
    assert "6789" not in whole.text and 'value="12 Main St"' in whole.text
    kept = staff.post(form, data=sent | {"tin_last4": "6789"}, follow_redirects=False)
    assert kept.status_code == 303 and kept.headers["location"].startswith(
        f"/staff/campaigns/{SLUG}/payments/w9?done="
    )
    with transaction(engine, write=False) as session:
        (on_file,) = session.exec(select(TaxForm)).all()
    assert (on_file.legal_name, on_file.tin_last4, on_file.state) == ("Maya Thompson", "6789", "PA")
    listed = staff.get(f"/staff/campaigns/{SLUG}/payments/w9")
    assert "TIN ending 6789" in listed.text and "only.elsewhere" not in listed.text
    assert 'value="Maya Thompson"' in staff.get(form).text  # the form shows what is on file

    not_ours = f"/staff/campaigns/{SLUG}/payments/w9/only.elsewhere"
    assert staff.get(not_ours).status_code == 404
    assert staff.post(not_ours, data=sent | {"tin_last4": "1111"}).status_code == 404
    assert staff.get(f"/staff/campaigns/{SLUG}/payments/w9/nobody").status_code == 404
    stranger = signed_in(settings, engine, LEGAL)
    assert stranger.get(form).status_code == 404
    assert stranger.post(form, data=sent | {"tin_last4": "2222"}).status_code == 404
    forged = staff.post(form, data=sent | {"tin_last4": "3333"},
                        headers={"Origin": "https://elsewhere.example"})  # fmt: skip
    assert forged.status_code == 403
    with transaction(engine, write=False) as session:
        assert [f.tin_last4 for f in session.exec(select(TaxForm))] == ["6789"]
