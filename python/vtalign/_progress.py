"""A dependency-free progress line on stderr for long loops (quiet when asked)."""
from __future__ import annotations

import sys
import time


class Progress:
    """`with Progress("kNN", total) as p: ... p.step()` prints `label i/total (elapsed)`.

    On a terminal the line is redrawn in place; otherwise one line per step is
    written so logs still show where a long run is.
    """

    def __init__(self, label: str, total: int, *, enabled: bool = True, stream=None):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, note: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        msg = f"{self.label} {self.done}/{self.total} ({time.perf_counter() - self.t0:.1f}s){' ' + note if note else ''}"
        if self.tty:
            self.stream.write("\r\033[K" + msg)
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self.tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
