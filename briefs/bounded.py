"""Operators, string methods and filters that could build huge text in one step, bounded.

A single step (`'%0900000000d' % 1`, `'x'|center(900000000)`, `'{:>900000000}'.format(1)`)
allocates before any clock check could stop it, so each is sized first and refused when the
result would be larger than any one value may be (the render's output budget); the others are
measured once built (`Meter.made`).
"""

import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from string import Formatter
from typing import Any

from jinja2 import filters, pass_environment, pass_eval_context
from jinja2.environment import Environment
from jinja2.nodes import EvalContext
from markupsafe import soft_str

from briefs.budget import METER, RenderBudgetExceeded, current, measure

MAX_EXPONENT = 64
MAX_REPEAT = 100_000  # items a repetition may make
MAX_INT_BITS = 4_096  # about 1,200 digits
MAX_FORMAT_WIDTH = 1_000  # widths and precisions in % and {} formatting
MAX_JSON_INDENT = 8


def refused(what: str) -> RenderBudgetExceeded:
    return current().over(what)


def fits(size: int, what: str) -> None:
    current().fits(size, what)


def made(value: Any) -> Any:
    return current().made(value)


def multiply(left: Any, right: Any) -> Any:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            if len(sequence) * times > MAX_REPEAT:
                raise refused(f"repeating a value more than {MAX_REPEAT} times")
            limit = current().budget.output
            fits(measure(sequence, limit) * times, "repeating a value")
    both_int = isinstance(left, int) and isinstance(right, int)
    if both_int and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise refused(f"a number above {MAX_INT_BITS} bits")
    return made(operator.mul(left, right))


def power(left: Any, right: Any) -> Any:
    if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
        raise refused(f"exponent above {MAX_EXPONENT}")
    both_int = isinstance(left, int) and isinstance(right, int)
    if both_int and left.bit_length() * right > MAX_INT_BITS:
        raise refused(f"a number above {MAX_INT_BITS} bits")
    return operator.pow(left, right)


def add(left: Any, right: Any) -> Any:
    total = operator.add(left, right)
    return made(total) if isinstance(total, str | list | tuple) else total


def modulo(left: Any, right: Any) -> Any:
    if not isinstance(left, str):
        return operator.mod(left, right)
    fits(percent_size(left, right), "'%' formatting")
    return made(operator.mod(left, right))


def _width(number: str, how: str) -> int:
    if len(number) > 6 or int(number) > MAX_FORMAT_WIDTH:
        raise refused(f"a width or precision above {MAX_FORMAT_WIDTH} in {how}")
    return int(number)


_PERCENT = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?.",
    re.DOTALL,
)


def percent_size(template: str, values: Any) -> int:
    """About how long `template % values` is; widths above `MAX_FORMAT_WIDTH` are refused."""
    limit = current().budget.output
    size = len(template) + measure(values, limit)
    for conversion in _PERCENT.finditer(template):
        for number in (conversion["width"], conversion["precision"]):
            if number == "*":
                raise refused("'*' widths in % formatting are not available")
            size += _width(number, "% formatting") if number else 0
        if conversion["key"] is not None and isinstance(values, Mapping):
            size += measure(values.get(conversion["key"]), limit)
    return size


def format_size(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """About how long `template.format(*args, **kwargs)` is, each field counted as often as it
    appears; widths above `MAX_FORMAT_WIDTH` and fields inside a field's format are refused."""
    limit = current().budget.output
    size, automatic = 0, 0
    for literal, field, spec, _ in Formatter().parse(template):
        size += len(literal)
        if field is None:
            continue
        if "{" in (spec or ""):
            raise refused("a field inside a format spec is not available")
        size += sum(_width(number, "{} formatting") for number in re.findall(r"\d+", spec or ""))
        name = re.match(r"[^.\[]*", field).group()  # type: ignore[union-attr]
        if name == "":
            name, automatic = str(automatic), automatic + 1
        if name.isdigit():
            size += measure(args[int(name)], limit) if int(name) < len(args) else 0
        else:
            size += measure(kwargs.get(name), limit)
    return size


def separators_size(separator: str, items: list[Any]) -> int:
    """What the separators add to a join. The items themselves are no more than was built
    (each counted against the render's budget when it was made) or given in the context."""
    return len(separator) * max(len(items) - 1, 0)


def _replaced_size(text: str, old: str, new: str, count: int | None) -> int:
    found = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * max(len(new) - len(old), 0)


STR_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda text, width, *_: max(len(text), width),
    "ljust": lambda text, width, *_: max(len(text), width),
    "rjust": lambda text, width, *_: max(len(text), width),
    "zfill": lambda text, width: max(len(text), width),
    "expandtabs": lambda text, tabsize=8: len(text) + text.count("\t") * tabsize,
    "replace": lambda text, old, new, count=-1: _replaced_size(text, old, new, count),
    "join": separators_size,
}
"""Sizes of what a string's methods would make, for those that can make much more than the
string itself (`'x'.ljust(900000000)`)."""

REFUSED_METHODS = frozenset({"encode", "translate", "maketrans", "to_bytes"})
"""Methods of texts and numbers that templates have no use for, and that lead to values (bytes,
translated text) the bounds above do not cover."""


def bounded_format(method: Callable[..., str], template: str, *, keyed: bool) -> Callable[..., str]:
    """`str.format` (or `format_map`, `keyed`), sized first."""

    @wraps(method)
    def format_(*args: Any, **kwargs: Any) -> str:
        if keyed:
            fits(format_size(template, (), args[0] if len(args) == 1 else {}), "formatting")
        else:
            fits(format_size(template, args, kwargs), "formatting")
        return made(method(*args, **kwargs))

    return format_


def center(value: Any, width: int = 80) -> str:
    fits(max(len(soft_str(value)), width), "the center filter")
    return made(filters.do_center(value, width))


def indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = soft_str(s)
    step = len(width) if isinstance(width, str) else width
    fits(len(text) + (text.count("\n") + 1) * step, "the indent filter")
    return made(filters.do_indent(s, width, first, blank))


@pass_eval_context
def replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    size = _replaced_size(soft_str(s), soft_str(old), soft_str(new), count)
    fits(size, "the replace filter")
    return made(filters.do_replace(eval_ctx, s, old, new, count))


@pass_eval_context
def join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    if attribute is not None:
        value = map(filters.make_attrgetter(eval_ctx.environment, attribute), value)
    items, meter = list(value), METER.get() or current()
    if (size := separators_size(soft_str(d), items)) > meter.limit:
        meter.fits(size, "the join filter")
    return meter.made(filters.sync_do_join(eval_ctx, items, d))


@pass_environment
def wordwrap(
    environment: Environment,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text, between = soft_str(s), wrapstring or environment.newline_sequence
    fits((len(text) + 1) * (1 + len(between)), "the wordwrap filter")
    return made(
        filters.do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)
    )


def format(value: Any, *args: Any, **kwargs: Any) -> str:
    fits(percent_size(soft_str(value), kwargs or args), "the format filter")
    return made(filters.do_format(value, *args, **kwargs))


def batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Any:
    limit = current().budget.output
    fits(linecount * (1 + measure(fill_with, limit)), "the batch filter")
    return made(filters.do_batch(value, linecount, fill_with))


def slice_(value: Iterable[Any], slices: int, fill_with: Any = None) -> Any:
    limit = current().budget.output
    fits(slices * (1 + measure(fill_with, limit)), "the slice filter")
    return made(filters.sync_do_slice(list(value), slices, fill_with))


@pass_environment
def sum_(
    environment: Environment, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
) -> Any:
    if not isinstance(start, int | float):
        raise refused("the sum filter adds numbers only")
    return made(filters.sync_do_sum(environment, iterable, attribute, start))


@pass_eval_context
def urlize(eval_ctx: EvalContext, value: Any, *args: Any, **kwargs: Any) -> str:
    text = soft_str(value)
    extras = sum(len(soft_str(a)) for a in (*args, *kwargs.values()) if isinstance(a, str))
    fits(3 * len(text) + (len(text) // 4 + 1) * (64 + extras), "the urlize filter")
    return made(filters.do_urlize(eval_ctx, value, *args, **kwargs))


def pprint(value: Any) -> str:
    fits(2 * measure(value, current().budget.output, indent=1), "the pprint filter")
    return made(filters.do_pprint(value))


def dumps(value: Any, **options: Any) -> str:
    """`json.dumps` for the `tojson` filter, with its indentation bounded."""
    indent = options.get("indent")
    if indent:
        if not isinstance(indent, int) or indent > MAX_JSON_INDENT:
            raise refused(f"tojson indents by at most {MAX_JSON_INDENT}")
        fits(measure(value, current().budget.output, indent=indent), "the tojson filter")
    return json.dumps(value, **options)


BOUNDED_FILTERS: dict[str, Callable[..., Any]] = {  # each measures what it made, too
    "center": center,
    "indent": indent,
    "replace": replace,
    "join": join,
    "wordwrap": wordwrap,
    "format": format,
    "batch": batch,
    "slice": slice_,
    "sum": sum_,
    "urlize": urlize,
    "pprint": pprint,
}


def metered(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose result is measured and counted (`Meter.made`)."""

    @wraps(function)
    def filter_(*args: Any, **kwargs: Any) -> Any:
        return made(function(*args, **kwargs))

    return filter_


def bounded_filters(defaults: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Every filter metered, the ones that can grow text much in one step sized first."""
    return {name: BOUNDED_FILTERS.get(name) or metered(f) for name, f in defaults.items()}
