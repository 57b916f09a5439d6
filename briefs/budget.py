"""What one render may spend: time, output, and the text it builds on the way.

Every render of a sandboxed template runs against a `Meter` (held in a context variable, so
renders in different threads or tasks never share one). The sandbox's hooks report to it: calls,
filters, operators and loops check the clock; every text or list a template builds is measured
(a list holding one text twice counts it twice, as printing it would); output is counted as it
is produced. Going over raises `RenderBudgetExceeded`, a one-line `SecurityError` naming the
template and the budget, never a traceback. Signals are not used, so this works in any thread.
"""

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from time import monotonic
from typing import Any

from jinja2 import Undefined
from jinja2.sandbox import SecurityError
from jinja2.utils import Namespace
from markupsafe import Markup

BRIEF_SECONDS = 2.0
BRIEF_OUTPUT = 1_000_000  # characters: a brief page or an email, and any one value in it
MESSAGE_SECONDS = 1.0
MESSAGE_OUTPUT = 20_000  # characters: a follow-up message or its subject
BUILT_PER_OUTPUT = 10  # all text built while rendering, as a multiple of the output budget
FIRST_BLOCK = 128  # output pieces counted at once first: a whole brief, as a rule
BLOCK = 16  # then pieces counted at a time, and loop items between checks of the clock


@dataclass(frozen=True)
class RenderBudget:
    unnamed: str  # what errors call a template without a name of its own
    seconds: float
    output: int  # characters of the output, and of any one value a template builds
    built: int  # characters of all the text a render builds (what it writes into macros too)


BRIEF_BUDGET = RenderBudget(
    "template", BRIEF_SECONDS, BRIEF_OUTPUT, BRIEF_OUTPUT * BUILT_PER_OUTPUT
)
MESSAGE_BUDGET = RenderBudget(
    "message", MESSAGE_SECONDS, MESSAGE_OUTPUT, MESSAGE_OUTPUT * BUILT_PER_OUTPUT
)


class RenderBudgetExceeded(SecurityError):
    """A render went over its budget; the message names the template and the budget."""


def amount(characters: int) -> str:
    """Characters as a size (1 MB, 20 KB), as people think of text."""
    for unit, size in (("MB", 1_000_000), ("KB", 1_000)):
        if characters >= size:
            return f"{characters / size:g} {unit}"
    return f"{characters} characters"


TEXTS = frozenset({str, Markup})
_CONTAINERS = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)


def measure(value: Any, limit: int, *, indent: int = 0) -> int:
    """About how many characters `value` takes as text, counting a value each time it appears
    (so `[x, x]` counts `x` twice, as printing it would) and, with `indent`, that many spaces
    per level of nesting before each item; stops once past `limit`, so the cost is at most
    about `limit` steps whatever `value` holds."""
    if isinstance(value, str):
        return len(value)
    total, pending = 0, [(value, 0)]
    while pending and total <= limit:
        item, depth = pending.pop()
        total += indent * depth
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, bool | float | Undefined) or item is None:
            total += 1
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, Mapping | Namespace):
            items = item._Namespace__attrs if isinstance(item, Namespace) else item
            total += 2 * len(items) + 2
            if total > limit:
                break
            pending += ((key, depth + 1) for key in islice(items.keys(), limit))
            pending += ((each, depth + 1) for each in islice(items.values(), limit))
        elif isinstance(item, _CONTAINERS):
            total += len(item) + 2
            if total > limit:
                break
            pending += ((each, depth + 1) for each in islice(item, limit))
        else:
            total += 1
    return total


class Meter:
    """One render's spending against its budget; `label` names the template in errors."""

    __slots__ = ("budget", "built", "built_limit", "deadline", "label", "limit")

    def __init__(self, budget: RenderBudget, label: str) -> None:
        self.budget, self.label = budget, label
        self.limit, self.built_limit = budget.output, budget.built
        self.deadline = monotonic() + budget.seconds
        self.built = 0

    def over(self, what: str) -> RenderBudgetExceeded:
        return RenderBudgetExceeded(f"{self.label}: {what}")

    def tick(self) -> None:
        if monotonic() > self.deadline:
            raise self.over(f"rendering took longer than {self.budget.seconds:g} s")

    def fits(self, size: int, what: str) -> None:
        """Refuse to build `what` when it would be larger than any one value may be."""
        if size > self.limit:
            raise self.over(f"{what} would be larger than {amount(self.limit)}")

    def made(self, value: Any) -> Any:
        """`value`, just built by the template: measured, and counted as built."""
        size = len(value) if type(value) in TEXTS else measure(value, self.limit)
        if size > self.limit:
            raise self.over(f"a value larger than {amount(self.limit)}")
        self.built += size
        if self.built > self.built_limit:
            raise self.over(f"built more than {amount(self.built_limit)} of text")
        if monotonic() > self.deadline:  # `tick`, without a call: this runs often
            self.tick()
        return value

    def joined(self, pieces: Iterable[str]) -> str:
        """An output's pieces joined, refused past the output budget. A brief's worth of pieces
        is joined and then measured; past that, pieces are counted a few at a time as they
        come, so an output that keeps growing is stopped early. (A buffer, a list, was counted
        as it was written.)"""
        if type(pieces) is list:
            text = "".join(pieces)
        else:
            iterator = iter(pieces)
            text = "".join(islice(iterator, FIRST_BLOCK))
            if (more := next(iterator, None)) is not None:
                text = self._joined_rest([text, more], iterator)
        if len(text) > self.limit:
            self.output(len(text))
        return text

    def _joined_rest(self, parts: list[str], iterator: Iterator[str]) -> str:
        size = sum(map(len, parts))
        while block := list(islice(iterator, BLOCK)):
            size += sum(map(len, block))
            self.output(size)
            self.tick()
            parts += block
        return "".join(parts)

    def output(self, size: int) -> None:
        if size > self.limit:
            raise self.over(f"output larger than {amount(self.limit)}")

    def loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """A loop's items, with the clock checked every few of them."""
        for count, item in enumerate(iterable):
            if not count % BLOCK:
                self.tick()
            yield item


METER: ContextVar[Meter | None] = ContextVar("render_meter", default=None)


def current() -> Meter:
    """The running render's meter; the sandbox's hooks refuse to run outside a render."""
    meter = METER.get()
    if meter is None:
        raise RenderBudgetExceeded("a template ran outside render(), without a budget")
    return meter
