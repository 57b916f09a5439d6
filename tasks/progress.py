"""Progress of long work, told to whoever listens (the CLI's progress bar), in-process.

Flows run in the process that started them, so a listener registered around a flow call sees
each batch finish without passing callbacks through Prefect's parameters.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int, int], None]
_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def report(what: str, done: int, total: int) -> None:
    """`done` of `total` items of `what` are finished."""
    for listener in list(_listeners):
        listener(what, done, total)
