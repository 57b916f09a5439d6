"""Numbers and text as people read them, shared by the CLI, briefs and reports."""

import html
import re
import unicodedata


def money(cents: int | None, currency: str = "USD") -> str:
    """`240000` -> `$2,400`; cents are shown only when there are any."""
    if cents is None:
        return "-"
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency, "")
    amount = f"{cents / 100:,.2f}".removesuffix(".00")
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}"


_LIST_ITEM = re.compile(r"<li[^>]*>")
_HEADING_END = re.compile(r"</h[1-6]>")
_TAG = re.compile(r"<[^>]+>")


def html_to_text(markup: str) -> str:
    """The plain-text form of a rendered brief: tags dropped, entities (and so any text that
    came from a user) restored exactly."""
    text = _TAG.sub("", _HEADING_END.sub("\n", _LIST_ITEM.sub("- ", markup)))
    if "&" in text:
        text = html.unescape(text)
    text = "\n".join([line.strip() for line in text.split("\n")])
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def plain_text(value: str) -> str:
    """`value` without control and format characters (NUL, ESC sequences' ESC, BEL, bidi
    overrides): what a stranger types is stored, exported and printed as the text it shows."""
    return "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
