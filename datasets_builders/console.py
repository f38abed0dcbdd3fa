"""The console every crayonflow command prints its tables on.

Why: rich sizes tables to the terminal, and to 80 columns when stdout is a pipe or a log file,
where it cuts cells short ("re…", "samp…" in `make demo`'s log). Piped output gets a wide fixed
width instead, so whole columns survive; a terminal keeps its own width.
"""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 200  #: columns when stdout is not a terminal


def table_console() -> Console:
    """A console whose tables keep whole columns when the output goes to a pipe or a log file."""
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else PIPED_WIDTH)
