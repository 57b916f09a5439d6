"""What every command shares: the store, JSON output, and human-friendly numbers."""

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from store.db import open_store

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


class _Console:
    """rich's console for people at a terminal, made on first use: a command asked for
    `--json` prints with `print_json` and never loads rich."""

    _made: "Console | None" = None

    def __getattr__(self, name: str) -> Any:
        if _Console._made is None:
            from rich.console import Console

            _Console._made = Console(highlight=False, soft_wrap=True)
        return getattr(_Console._made, name)


console: "Console" = _Console()  # type: ignore[assignment]
JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")
MAX_ID = 2**31 - 1  # the store's row ids; a larger number is refused by name, not by the store


def id_argument(help: str) -> Any:
    """A row id given on the command line: a whole number from 1, within the store's ids."""
    return typer.Argument(..., min=1, max=MAX_ID, help=help)


def store() -> tuple[Settings, Engine]:
    """Settings and a ready store (an empty store is created on first use)."""
    settings = get_settings()
    return settings, open_store(settings)


def flow_progress(label: str, *, quiet: bool, starting: bool = True) -> "Progress":
    """A progress bar on stderr for a flow run, after a word on Prefect's slow first start
    (`starting`; other long work has none)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True, highlight=False)
    if not quiet and starting:
        err.print("Starting the flow (Prefect's first start on this machine takes ~30 s)...")
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def shown_path(path: Path) -> str:
    """A path as short as it can be: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def count(n: int | None) -> str:
    if n is None:
        return "-"
    for limit, suffix in ((1_000_000, "M"), (1_000, "K")):
        if n >= limit:
            return f"{n / limit:.1f}".removesuffix(".0") + suffix
    return str(n)


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.3g}%"
