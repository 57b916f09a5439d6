"""Inline SVG charts for the report page: plain strings built in Python, no JavaScript.

Every piece of text put into the markup goes through `html.escape`; the results are `Markup`
so that the page's template (autoescaped) embeds them as they are. Colours come from the
page's CSS classes, so the charts print and restyle with the page.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

Fmt = Callable[[float], str]

WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 18, 40
SHARE_CAP = 1.5  # bars of the share of target stop at 150%
DASH = "\N{EN DASH}"  # not measurable yet


@dataclass(frozen=True)
class Series:
    """One line of a line chart: a name for the legend, values by week (None: no point)."""

    name: str
    values: Sequence[float | None]
    css: str = "line"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval, for one row of an interval plot."""

    label: str
    point: float
    low: float
    high: float
    fmt: Fmt


def compact(value: float) -> str:
    """A count for an axis: 2,500,000 is "2.5M", 40,000 is "40k"."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def nice_step(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def axis_top(value: float) -> tuple[float, int]:
    """The top of an axis showing `value`, and how many round steps of gridlines it has."""
    step = nice_step(value / 4)
    steps = max(math.ceil(value / step - 1e-9), 1) if value > 0 else 4
    return step * steps, steps


def _svg(body: list[str], label: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """Wrap chart elements in an <svg> with an accessible name."""
    text = escape(label)
    head = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" '
        f'style="max-width: {width * 1.25:.0f}px" '
        f'role="img" aria-label="{text}" xmlns="http://www.w3.org/2000/svg"><title>{text}</title>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, css: str = "", anchor: str = "start") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{cls}>{escape(text)}</text>'


def _y_axis(top: float, steps: int, fmt: Fmt, y_label: str) -> list[str]:
    """Gridlines and tick labels from 0 to `top` in `steps`, and the axis title."""
    parts = []
    plot = HEIGHT - TOP - BOTTOM
    for i in range(steps + 1):
        y = HEIGHT - BOTTOM - plot * i / steps
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(_text(LEFT - 4, y + 3, fmt(top * i / steps), "tick", "end"))
    parts.append(
        f'<text class="axis" transform="translate(12 {TOP + plot / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def _x_axis(labels: Sequence[str], x_label: str) -> list[str]:
    """Week labels under each slot, and the axis title."""
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    parts = [
        _text(LEFT + slot * (i + 0.5), HEIGHT - BOTTOM + 13, lab, "tick", "middle")
        for i, lab in enumerate(labels)
    ]
    parts.append(_text(LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 6, x_label, "axis", "middle"))
    return parts


def _y(value: float, top: float) -> float:
    return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * min(value / top, 1.0)


def _target_line(target: float | None, top: float, fmt: Fmt) -> list[str]:
    if target is None:
        return []
    y = _y(target, top)
    return [
        f'<line class="target" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>',
        _text(WIDTH - RIGHT - 2, y - 4, f"target {fmt(target)}", "target-label", "end"),
    ]


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    label: str,
    y_label: str,
    fmt: Fmt,
    axis_fmt: Fmt = compact,
    x_label: str = "Week",
) -> Markup:
    """One vertical bar a week (none where the value is None), with its value above it."""
    top, steps = axis_top(max((v for v in values if v is not None), default=0.0))
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    body = _y_axis(top, steps, axis_fmt, y_label) + _x_axis(labels, x_label)
    for i, value in enumerate(values):
        x = LEFT + slot * i + slot * 0.15
        if value is None:
            body.append(_text(x + slot * 0.35, HEIGHT - BOTTOM - 4, DASH, "value", "middle"))
            continue
        y = _y(value, top)
        tip = escape(f"{x_label} {labels[i]}: {fmt(value)}")
        body.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{HEIGHT - BOTTOM - y:.1f}"><title>{tip}</title></rect>'
        )
        if len(labels) <= 16:
            body.append(_text(x + slot * 0.35, y - 3, axis_fmt(value), "value", "middle"))
    return _svg(body, label)


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    label: str,
    y_label: str,
    fmt: Fmt,
    axis_fmt: Fmt = compact,
    target: float | None = None,
    x_label: str = "Week",
) -> Markup:
    """Lines with a dot a week (broken where a value is None) and a dashed target line."""
    known = [v for s in series for v in s.values if v is not None]
    top, steps = axis_top(max([*known, target or 0.0], default=0.0))
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    body = _y_axis(top, steps, axis_fmt, y_label) + _x_axis(labels, x_label)
    body += _target_line(target, top, axis_fmt)
    for line in series:
        points = [
            (LEFT + slot * (i + 0.5), _y(v, top), v)
            for i, v in enumerate(line.values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            body.append(f'<polyline class="{line.css}" points="{path}"/>')
        for (x, y, v), i in zip(
            points, [i for i, v in enumerate(line.values) if v is not None], strict=True
        ):
            tip = escape(f"{x_label} {labels[i]}: {fmt(v)} {line.name}")
            body.append(
                f'<circle class="{line.css}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{tip}</title></circle>"
            )
    return _svg(body, label)


def share_chart(rows: Sequence[tuple[str, float | None, bool]], *, label: str) -> Markup:
    """A horizontal bar a KPI for its share of target, capped at 150%, with 100% marked."""
    row_h, left, right = 24, 170, 60
    height = TOP + row_h * len(rows) + 24
    scale = (WIDTH + 100 - left - right) / SHARE_CAP
    width = WIDTH + 100
    body = []
    for tick in (0.0, 0.5, 1.0, 1.5):
        x = left + tick * scale
        css = "target" if tick == 1.0 else "grid"
        body.append(
            f'<line class="{css}" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 6}" y2="{height - 20}"/>'
        )
        body.append(_text(x, height - 6, f"{tick:.0%}", "tick", "middle"))
    for i, (name, share, met) in enumerate(rows):
        y = TOP + row_h * i
        body.append(_text(left - 6, y + 15, name, "label", "end"))
        if share is None:
            body.append(_text(left + 4, y + 15, f"{DASH} not measurable yet", "value"))
            continue
        bar = min(max(share, 0.0), SHARE_CAP) * scale
        css = "bar met" if met else "bar behind"
        body.append(
            f'<rect class="{css}" x="{left}" y="{y + 4}" width="{bar:.1f}" height="14">'
            f"<title>{escape(f'{name}: {share:.0%} of target')}</title></rect>"
        )
        more = "+" if share > SHARE_CAP else ""
        body.append(_text(left + bar + 4, y + 15, f"{share:.0%}{more}", "value"))
    return _svg(body, label, width, height)


def funnel_chart(steps: Sequence[tuple[str, int, float | None]], *, label: str) -> Markup:
    """A horizontal bar a step, as wide as its count against the first step's, with the count
    and the conversion from the step before."""
    row_h, left, width = 34, 110, WIDTH + 100
    area = width - left - 190
    first = max((count for _, count, _ in steps[:1]), default=0) or 1
    height = 8 + row_h * len(steps)
    body = []
    for i, (name, count, of_previous) in enumerate(steps):
        y = 8 + row_h * i
        bar = max(area * count / first, 1.0 if count else 0.0)
        body.append(_text(left - 6, y + 16, name, "label", "end"))
        body.append(
            f'<rect class="bar" x="{left}" y="{y + 4}" width="{bar:.1f}" height="18">'
            f"<title>{escape(f'{name}: {count:,}')}</title></rect>"
        )
        step = (
            ""
            if i == 0
            else " · "
            + (DASH if of_previous is None else f"{of_previous:.2%} of {steps[i - 1][0].lower()}")
        )
        body.append(_text(left + bar + 6, y + 17, f"{count:,}{step}", "value"))
    return _svg(body, label, width, height)


def interval_chart(rows: Sequence[Interval], *, label: str) -> Markup:
    """One row an estimate: a dot at the point, a whisker for its interval, a zero line; each
    row on its own scale, since the rows differ in units."""
    row_h, left, width = 64, 150, WIDTH + 100
    area = width - left - 30
    body = []
    for i, row in enumerate(rows):
        y = 14 + row_h * i
        low_end, high_end = min(row.low, 0.0), max(row.high, 0.0)
        pad = (high_end - low_end) * 0.1 or 1.0
        low_end, high_end = low_end - pad, high_end + pad

        def at(v: float, lo: float = low_end, hi: float = high_end) -> float:
            return left + area * (v - lo) / (hi - lo)

        body.append(_text(left - 8, y + 22, row.label, "label", "end"))
        body.append(
            f'<line class="zero" x1="{at(0):.1f}" x2="{at(0):.1f}" y1="{y}" y2="{y + 34}"/>'
        )
        body.append(_text(at(0), y + 48, "0", "tick", "middle"))
        body.append(
            f'<line class="whisker" x1="{at(row.low):.1f}" x2="{at(row.high):.1f}" '
            f'y1="{y + 18}" y2="{y + 18}"/>'
        )
        for end in (row.low, row.high):
            body.append(
                f'<line class="whisker" x1="{at(end):.1f}" x2="{at(end):.1f}" '
                f'y1="{y + 11}" y2="{y + 25}"/>'
            )
            body.append(_text(at(end), y + 8, row.fmt(end), "tick", "middle"))
        tip = escape(
            f"{row.label}: {row.fmt(row.point)} ({row.fmt(row.low)} to {row.fmt(row.high)})"
        )
        body.append(
            f'<circle class="point" cx="{at(row.point):.1f}" cy="{y + 18}" r="5">'
            f"<title>{tip}</title></circle>"
        )
        body.append(_text(at(row.point), y + 40, row.fmt(row.point), "value", "middle"))
    return _svg(body, label, width, 14 + row_h * len(rows))
