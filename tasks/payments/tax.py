"""Tax forms: each creator's W-9 on file, and who needs a 1099-NEC for a payment year.

A payer files a 1099-NEC for each payee it paid at least the threshold in force for the year in
nonemployee compensation: USD 600 for payments through 2025, USD 2,000 for payments made in
2026, indexed for inflation from 2027. For a year after the last one Rally knows,
`Settings.nec_threshold` gives the published figure; until it is set, the last known one is
used, and the list says so. What counts is what left the payer's balance for the creator:
settled payouts in USD (`tasks.payments.payouts.settled_payouts`), net of what came back
(a reversal, a refund), by the day they settled (UTC), across the payer's campaigns: a store
may serve more than one payer (a committee, a brand), each named by its campaigns' files
(`payer_of`), and each payer's totals are its own. What was paid through an agency is the
agency's (its W-9 is kept outside Rally), listed apart by the agency's name, as the
disbursement reports name the payee (campaigns of one committee may give the same agency
different ids).

Only the last four digits of a taxpayer id are kept, to tell forms apart; a whole number is
refused, so that none is ever in the store, its backups or its audit log.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session, col, select

from config.errors import RallyError
from store.audit import Change, record
from store.models import Campaign, Creator, RosterMember, TaxForm
from tasks.campaigns.campaign import campaign_spec
from tasks.payments.payouts import settled_payouts

# The threshold in cents from the first payment year it applies to.
THRESHOLDS = {2025: 60_000, 2026: 200_000}
CURRENCY = "USD"


def nec_threshold(year: int, override_usd: float | None = None) -> tuple[int, str]:
    """The 1099-NEC threshold for payments made in `year`, in cents, and where it comes from."""
    known = [first for first in sorted(THRESHOLDS) if first <= year]
    if not known:
        raise RallyError(f"year: Rally knows the 1099-NEC threshold from {min(THRESHOLDS)} on")
    last = known[-1]
    if year > max(THRESHOLDS) and override_usd is not None:
        return round(override_usd * 100), "RALLY_NEC_THRESHOLD"
    if year > max(THRESHOLDS):
        return THRESHOLDS[last], (
            f"{last}'s; {year}'s is indexed for inflation: set RALLY_NEC_THRESHOLD once the IRS "
            "publishes it"
        )
    return THRESHOLDS[last], f"in force for payments made in {year}"


@dataclass(frozen=True)
class Address:
    """A payee's address as the FEC's Schedule B takes it; `checked` refuses one it would not."""

    street: str
    city: str
    state: str
    zip: str
    street2: str | None = None

    @classmethod
    def checked(
        cls, street: str, city: str, state: str, zip_code: str, street2: str | None = None
    ) -> "Address":
        fields = {"street": street, "city": city, "state": state, "zip": zip_code}
        fields = {name: (value or "").strip() for name, value in fields.items()}
        for name, value in fields.items():
            if not value:
                raise RallyError(f"{name}: the address needs a {name}")
        limits = {"street": 34, "city": 30}
        for name, most in limits.items():
            if len(fields[name]) > most:
                raise RallyError(f"{name}: at most {most} characters on Schedule B")
        if street2 and len(street2.strip()) > 34:
            raise RallyError("street2: at most 34 characters on Schedule B")
        state = fields["state"].upper()
        if not re.fullmatch(r"[A-Z]{2}", state):
            raise RallyError(f"state: {fields['state']!r} is not a two-letter state code")
        digits = fields["zip"].replace("-", "")
        if not re.fullmatch(r"\d{5}(\d{4})?", digits):
            raise RallyError(f"zip: {fields['zip']!r} is not a ZIP code (12345 or 12345-6789)")
        return cls(fields["street"], fields["city"], state, digits, (street2 or "").strip() or None)


def creator_by_handle(session: Session, handle: str) -> Creator:
    """The creator with this handle (on any platform: the one there is)."""
    found = session.exec(
        select(Creator).where(Creator.handle == handle.strip().lstrip("@").lower())
    ).all()
    if not found:
        raise RallyError(f"creator: no creator @{handle.lstrip('@')} on any roster")
    if len(found) > 1:
        platforms = ", ".join(sorted(c.platform for c in found))
        raise RallyError(f"creator: @{handle.lstrip('@')} is on several platforms ({platforms})")
    return found[0]


def record_w9(
    session: Session,
    handle: str,
    *,
    collected_on: date,
    legal_name: str | None,
    tin_last4: str | None,
    actor: str,
    now: datetime,
    address: Address | None = None,
    business: bool = False,
) -> TaxForm:
    """Record that the creator's W-9 was collected, with the name and address on it
    (replacing an earlier record)."""
    digits = re.sub(r"[\s-]", "", tin_last4 or "")
    if digits and not re.fullmatch(r"\d{4}", digits):
        raise RallyError(
            "tin_last4: give only the last four digits of the taxpayer id; Rally never keeps "
            "a whole one"
        )
    if collected_on > now.date():
        raise RallyError(f"collected_on: {collected_on} is in the future")
    creator = creator_by_handle(session, handle)
    form = session.exec(select(TaxForm).where(TaxForm.creator_id == creator.id)).first()
    if form is None:
        form = TaxForm(creator_id=creator.id or 0, collected_on=collected_on, recorded_by=actor)
    form.collected_on, form.recorded_by = collected_on, actor
    form.legal_name = (legal_name or "").strip()[:200] or None
    form.tin_last4 = digits or None
    form.business = business
    if address is not None:
        form.street, form.street2, form.city = address.street, address.street2, address.city
        form.state, form.zip = address.state, address.zip
    session.add(form)
    record(
        session,
        [
            Change(
                actor,
                "tax.w9_recorded",
                "creator",
                creator.id or 0,
                f"@{creator.handle}: W-9 collected on {collected_on}",
                {"collected_on": collected_on.isoformat(), "tin_last4": form.tin_last4},
            )
        ],
    )
    return form


def agency_name(session: Session, campaign_id: int, agency: str) -> str:
    """The name the campaign file gives the agency `agency`; its id if the file no longer
    has it."""
    campaign = session.get(Campaign, campaign_id)
    found = campaign_spec(campaign).payments.agencies.get(agency) if campaign else None
    return found.name if found else agency


def payer_of(campaign: Campaign) -> str:
    """Who pays a campaign's creators: its file's `payments.payer`, else its FEC committee,
    else "" (the store's one payer, for campaigns that name none)."""
    payments = campaign_spec(campaign).payments
    return payments.payer or (payments.fec.committee_id if payments.fec else "")


def tax_year(
    session: Session, year: int, *, override_usd: float | None = None, payer: str | None = None
) -> dict[str, Any]:
    """Each payer's creators paid in `year` (USD, settled payouts; of one payer if given):
    the total, whether it reaches the 1099-NEC threshold, and their W-9; largest first.
    Payers who paid nobody are left out, unless asked for."""
    threshold, source = nec_threshold(year, override_usd)
    campaigns = list(session.exec(select(Campaign).order_by(col(Campaign.slug))))
    payers = {campaign.id or 0: payer_of(campaign) for campaign in campaigns}
    if payer is not None and payer not in payers.values():
        named = sorted(p for p in set(payers.values()) if p)
        raise RallyError(
            f"--payer: no campaign is paid by {payer!r}; "
            + (f"the payers are {', '.join(named)}" if named else "no campaign names a payer")
        )
    start = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    found: dict[str, PayerYear] = {}
    if payer is not None:
        found[payer] = PayerYear()
    for payout, creator, form in settled_payouts(session, start, end):
        whose = payers.get(payout.campaign_id, "")
        if payout.currency != CURRENCY or payer not in (None, whose):
            continue
        cents = payout.amount_cents - payout.taken_back_cents  # what the payee kept
        paid = found.setdefault(whose, PayerYear())
        if payout.agency is not None:  # the agency is the payee, and pays the creator
            name = agency_name(session, payout.campaign_id, payout.agency)
            paid.through[name] = paid.through.get(name, 0) + cents
        else:
            paid.creators[creator.id or 0] = (creator, form)
            paid.cents[creator.id or 0] = paid.cents.get(creator.id or 0, 0) + cents
    return {
        "year": year,
        "currency": CURRENCY,
        "threshold_cents": threshold,
        "threshold": source,
        "payers": [
            {
                "payer": whose or None,
                "campaigns": [c.slug for c in campaigns if payers[c.id or 0] == whose],
                **found[whose].listed(threshold),
            }
            for whose in sorted(found, key=lambda p: (not p, p))
        ],
    }


@dataclass
class PayerYear:
    """What one payer paid in a year: USD cents per creator (with their W-9) and per agency."""

    cents: dict[int, int] = field(default_factory=dict)
    creators: dict[int, tuple[Creator, TaxForm | None]] = field(default_factory=dict)
    through: dict[str, int] = field(default_factory=dict)

    def listed(self, threshold: int) -> dict[str, list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        for creator_id, cents in self.cents.items():
            creator, form = self.creators[creator_id]
            needs = cents >= threshold
            rows.append(
                {
                    "creator": creator.handle,
                    "name": (form.legal_name if form else None) or creator.name,
                    "paid_cents": cents,
                    "needs_1099_nec": needs,
                    "w9_on_file": form is not None,
                    "w9_collected_on": form.collected_on.isoformat() if form else None,
                    "tin_last4": form.tin_last4 if form else None,
                    "missing_w9": needs and form is None,
                }
            )
        rows.sort(key=lambda r: (-r["paid_cents"], r["creator"]))
        agencies = sorted(self.through.items(), key=lambda a: (-a[1], a[0]))
        return {
            "creators": rows,
            "agencies": [
                {"agency": agency, "paid_cents": cents, "needs_1099_nec": cents >= threshold}
                for agency, cents in agencies
            ],
        }


@dataclass(frozen=True)
class OnRoster:
    """A creator of a campaign's roster with their W-9, if one is on file. `ready` says
    whether it holds what a disbursement report itemizes (a name and a whole address); a
    creator paid through an agency needs none of their own."""

    creator: Creator
    form: TaxForm | None
    agency: str | None

    @property
    def ready(self) -> bool:
        from tasks.payments.disbursements import payee_fields

        try:
            payee_fields(self.creator, self.form)
        except RallyError:
            return False
        return True


def roster_forms(session: Session, campaign: Campaign, handle: str | None = None) -> list[OnRoster]:
    """The campaign's roster (or its creator `handle`, if on it) with each one's W-9, by
    handle."""
    query = (
        select(Creator, TaxForm, RosterMember.agency)
        .join(RosterMember, col(RosterMember.creator_id) == Creator.id)
        .outerjoin(TaxForm, col(TaxForm.creator_id) == Creator.id)
        .where(RosterMember.campaign_id == campaign.id)
        .order_by(col(Creator.handle))
    )
    if handle is not None:
        query = query.where(Creator.handle == handle.strip().lstrip("@").lower())
    return [OnRoster(creator, form, agency) for creator, form, agency in session.exec(query)]
