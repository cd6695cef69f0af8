"""A progress bar for long replays and backtests, on a terminal only.

A replay of a day of data is thousands of looks; on a terminal the user sees how far it got.
The bar goes to stderr and only when both stdout and stderr are terminals and the output is
not JSON, so piped or machine-read output stays byte-for-byte what it was.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def wanted(json_output: bool) -> bool:
    """Whether to draw a bar: a person is watching and the output is not for a program."""
    return not json_output and sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def looks(total: int, description: str, enabled: bool) -> Iterator[Callable[[], None]]:
    """A callback to call once per look; a bar over ``total`` looks when ``enabled``."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)
