"""What every page must be, checked in the browser: laid out within a 390 px phone and a
1280 px laptop (no sideways scroll), its buttons and navigation links 44 px touch targets, and
free of serious or critical accessibility problems as axe-core finds them (from the npm
registry, installed by `make browser`). Pages checked this way can also be photographed for
the README (`RALLY_SCREENSHOTS=folder`)."""

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT

AXE = ROOT / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (390, 1280)
HEIGHT = {390: 844, 1280: 800}


def axe_source() -> str:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing at {AXE}: run `make browser`")
    return AXE.read_text(encoding="utf-8")


def problems_at(page, width: int) -> list[str]:
    """What is wrong with the page as it stands, at `width` px: sideways scroll, buttons and
    navigation links shorter than a 44 px touch target, and axe's serious and critical
    findings, each in a line that names the element."""
    # A click that navigates returns once the new page commits, before its stylesheet has
    # loaded: measured then, every button is unstyled and too small.
    page.wait_for_load_state("load")
    page.set_viewport_size({"width": width, "height": HEIGHT.get(width, 800)})
    found = []
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if scroll > inner:
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 3).map(e => e.outerHTML.slice(0, 120))"""
        )
        found.append(f"{width} px: the page is {scroll} px wide; widest: {wide}")
    small = page.evaluate(
        """() => [...document.querySelectorAll('button, .button, nav a')]
            .filter(e => { const box = e.getBoundingClientRect();
                           return box.width > 0 && box.height < 43.5; })
            .slice(0, 3).map(e => e.outerHTML.slice(0, 120))"""
    )
    if small:
        found.append(f"{width} px: buttons or links in a nav under 44 px tall: {small}")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())  # not a script tag: the pages' policy allows none inline
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    for violation in result["violations"]:
        if violation["impact"] in ("serious", "critical"):
            targets = [" ".join(map(str, n["target"])) for n in violation["nodes"][:3]]
            found.append(f"{width} px: {violation['id']} ({violation['impact']}): {targets}")
    return found


def assert_page_fits(page, name: str | None = None) -> None:
    """The page as it stands fits a phone and a laptop, with 44 px touch targets, and passes
    axe at both widths; with `RALLY_SCREENSHOTS` set, it is photographed at each width as
    `<name>-<width>.png`, and as a phone's first screen as `<name>-390-screen.png`."""
    found: list[str] = []
    for width in WIDTHS:
        found += problems_at(page, width)
        folder = os.environ.get("RALLY_SCREENSHOTS")
        if folder and name:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)
            if width == 390:
                page.screenshot(path=str(Path(folder) / f"{name}-390-screen.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
    assert not found, "\n".join(found)
