"""Numbers as people read them, shared by the CLI, briefs and reports."""


def money(cents: int | None, currency: str = "USD") -> str:
    """`240000` -> `$2,400`; cents are shown only when there are any."""
    if cents is None:
        return "-"
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency, "")
    amount = f"{cents / 100:,.2f}".removesuffix(".00")
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}"
