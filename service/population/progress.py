"""Progress on stderr: a tqdm bar (rate and ETA) on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

PLAIN_EVERY_S = 10.0


class Progress:
    """Counts work done towards a total; ``unit`` is what is counted (patients, MB)."""

    def __init__(self, label: str, total: float, *, unit: str, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every_s: float = PLAIN_EVERY_S,
                 scale: float = 1.0) -> None:
        self._stream = stream or sys.stderr
        self._label, self._unit, self._total, self._scale = label, unit, total, scale
        self._clock, self._every = clock, every_s
        self._done = 0.0
        self._start = self._last = clock()
        self._bar: tqdm[Any] | None = None
        if self._stream.isatty():
            self._bar = tqdm(total=total / scale, desc=label, unit=f" {unit}",
                             file=self._stream, dynamic_ncols=True, smoothing=0.1,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:,.0f}/{total:,.0f}"
                                        "{unit} [{elapsed}<{remaining}, {rate_fmt}]")

    def advance(self, amount: float) -> None:
        self._done += amount
        if self._bar is not None:
            self._bar.update(amount / self._scale)
            return
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._stream.write(self.line(now) + "\n")
            self._stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self._done / self._scale / elapsed
        done, total = self._done / self._scale, self._total / self._scale
        remaining = (total - done) / rate if rate > 0 and total > done else 0.0
        return (f"{self._label}: {done:,.0f} of {total:,.0f} {self._unit} "
                f"({rate:,.0f} {self._unit}/s, ETA {_duration(remaining)})")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            return
        now = self._clock()
        elapsed = now - self._start
        rate = self._done / self._scale / max(elapsed, 1e-9)
        self._stream.write(f"{self._label}: {self._done / self._scale:,.0f} {self._unit} in "
                           f"{elapsed:.1f} s ({rate:,.0f} {self._unit}/s)\n")
        self._stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
