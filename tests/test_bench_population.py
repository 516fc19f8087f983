"""The population benchmark runs: a tiny export through the generator, the floor and one run."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import orjson

from bench.bulk_export import generate, synthea_bundles
from bench.population import Run, core_alone, floor_seconds, run_cli, scaling, table


def _lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_the_generator_makes_fresh_ids_and_bulk_style_references(tmp_path: Path) -> None:
    sources = synthea_bundles()[:2]
    counts = generate(tmp_path, patients=5, sources=sources, lines_per_file=100)
    patients = _lines(tmp_path / "Patient.ndjson")
    ids = [p["id"] for p in patients]
    assert len(ids) == 5 == len(set(ids)) == counts["Patient"]
    assert ids[0].endswith("-000000") and ids[2].endswith("-000002")
    assert ids[0].removesuffix("-000000") == ids[2].removesuffix("-000002"), "copies of bundle 0"
    observations = [o for p in sorted(tmp_path.glob("Observation.*.ndjson")) for o in _lines(p)]
    assert len(observations) == counts["Observation"] > 100
    assert len({o["id"] for o in observations}) == len(observations)
    owners = Counter(o["subject"]["reference"] for o in observations)  # type: ignore[index]
    assert set(owners) == {f"Patient/{i}" for i in ids}
    again = tmp_path / "again"
    generate(again, patients=5, sources=sources, lines_per_file=100)
    assert (again / "Observation.1.ndjson").read_bytes() == (
        tmp_path / "Observation.1.ndjson").read_bytes()


def test_the_benchmark_measures_the_floor_and_a_run(tmp_path: Path) -> None:
    generate(tmp_path / "export", patients=20)
    seconds, size = floor_seconds(tmp_path / "export")
    assert seconds > 0 and size == sum(p.stat().st_size for p in (tmp_path / "export").iterdir())
    run = run_cli(tmp_path / "export", tmp_path / "out", "local-1", 20, os.cpu_count() or 1)
    assert run.patients == 20 and run.cores == 1 and run.seconds > 0
    assert run.peak_rss_mb > 50
    assert set(run.phases) == {"reading export", "screening", "writing outputs"}
    text = table({20: (seconds, size)}, [run])
    assert "| orjson floor | 20 |" in text and "| local-1 | 20 |" in text
    bigger = Run("local-1", 40, run.seconds * 2, run.peak_rss_mb, 1, {})
    assert "| local-1 |" in scaling([run, bigger]) and "| 1.00 |" in scaling([run, bigger])


def test_the_core_alone_is_measured_against_its_parse() -> None:
    parse_ms, screen_ms, kept_ms = core_alone(repeats=1)
    assert 0 < kept_ms < parse_ms < screen_ms, "what passes_over drops is most of the work"
