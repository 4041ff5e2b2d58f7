"""A dependency-free progress bar on stderr with rate and ETA.

Drawn only when stderr is a terminal (or ``force=True``); otherwise silent, so JSON on stdout and logs stay
clean. ``Progress`` is a context manager and a callable ``progress(n_done_increment)``.
"""
from __future__ import annotations

import sys
import time


def _fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Progress:
    """``Progress(total, label)``; call with the number of newly finished units."""

    def __init__(self, total: int, label: str = "", unit: str = "trials", enabled: bool | None = None,
                 stream=None, min_interval: float = 0.1):
        self.total = max(int(total), 1)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = (enabled if enabled is not None
                        else bool(getattr(self.stream, "isatty", lambda: False)()))
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self.min_interval = min_interval

    def __call__(self, n: int = 1) -> None:
        self.done += int(n)
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.min_interval or self.done >= self.total):
            self._last = now
            self._draw(now)

    def set_label(self, label: str) -> None:
        self.label = label

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        bar = "#" * int(28 * frac) + "-" * (28 - int(28 * frac))
        self.stream.write(f"\r{self.label} [{bar}] {100 * frac:5.1f}% {self.done:,}/{self.total:,} {self.unit} "
                          f"{rate:,.0f}/s ETA {_fmt_seconds(eta)}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
