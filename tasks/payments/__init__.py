"""Money: what each creator earns under the campaign's payment terms, kept in an append-only,
double-entry ledger."""
