"""Progress bars on stderr for long loops: tqdm (count, rate, ETA), silent when quiet."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(label: str, total: int, *, enabled: bool = True, unit: str = "it") -> tqdm:
    """`with progress_bar("kNN search, layer", L) as bar: ... bar.update()`.

    Nothing is drawn for a loop that ends (or fails) within its first second, so
    a quick run or a one-line error stays clean. On a terminal the bar is redrawn
    in place; in a log (no tty) tqdm writes at most one line per 10 s."""
    return tqdm(total=total, desc=label, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                delay=1.0, mininterval=0.5 if sys.stderr.isatty() else 10.0)
