"""Progress: a tqdm bar with rate and ETA on a terminal, a plain line every 10 s otherwise."""

from __future__ import annotations

import io

from service.population.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_ten_seconds_with_rate_and_eta() -> None:
    stream, clock = io.StringIO(), Clock()
    progress = Progress("screening", 1000, unit="patients", stream=stream, clock=clock)
    for _ in range(6):
        clock.now += 4
        progress.advance(100)
    progress.close()
    lines = stream.getvalue().splitlines()
    # 100 patients every 4 s: lines at 12 s (300 done) and 24 s (600 done), not between.
    assert lines == [
        "screening: 300 of 1,000 patients (25 patients/s, ETA 0m28s)",
        "screening: 600 of 1,000 patients (25 patients/s, ETA 0m16s)",
        "screening: 600 patients in 24.0 s (25 patients/s)",
    ]


def test_a_terminal_gets_a_bar_with_rate_and_eta() -> None:
    stream = Terminal()
    progress = Progress("screening", 1000, unit="patients", stream=stream)
    progress.advance(400)
    progress.close()
    shown = stream.getvalue()
    assert "screening:  40%|" in shown
    assert "400/1,000 patients [" in shown and "patients/s]" in shown
    assert "<" in shown, "elapsed<remaining: the ETA"
