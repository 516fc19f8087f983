"""``--engine spark`` in Spark local mode gives the local engine's outputs, byte for byte.

One SparkSession for the module (``local[2]``, UI off, errors-only logs) keeps
Spark's start-up cost to one JVM start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.config import load_settings
from service.population import spark_submit
from service.population.run import PopulationRequest, screen_export
from service.population.spark_engine import local_session

from .population_support import (
    AS_OF,
    Recorder,
    export_with_unusable_lines,
    outputs,
    synthea_plus_triad,
)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = local_session(master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()


def _both(source: Path, out: Path, spark: Any) -> tuple[dict[str, bytes], dict[str, bytes]]:
    for engine in ("local", "spark"):
        request = PopulationRequest(out=out / engine, as_of=AS_OF,
                                    engine=engine)  # type: ignore[arg-type]
        screen_export(source, request, load_settings({}), progress=Recorder(), spark=spark)
    return outputs(out / "local"), outputs(out / "spark")


def test_spark_and_local_engines_write_identical_outputs(tmp_path: Path, spark: Any) -> None:
    source = synthea_plus_triad(tmp_path / "export", lines_per_file=1500)
    local, on_spark = _both(source, tmp_path, spark)
    assert on_spark == local
    assert b"baby1" in on_spark["flagged.csv"]


def test_spark_lists_the_same_unusable_lines(tmp_path: Path, spark: Any) -> None:
    source = export_with_unusable_lines(tmp_path / "export")
    local, on_spark = _both(source, tmp_path, spark)
    assert on_spark == local
    assert b'"Condition.onsetDateTime"' in on_spark["summary.json"]


def test_the_spark_submit_entry_uses_the_session_it_is_given(tmp_path: Path, spark: Any) -> None:
    source = export_with_unusable_lines(tmp_path / "export")
    assert spark_submit.main([str(source), "--out", str(tmp_path / "out"),
                              "--as-of", AS_OF.isoformat(), "--flagged-only"]) == 0
    assert (tmp_path / "out" / "flagged.csv").read_text().splitlines()[1].startswith("baby1,")
    assert spark.sparkContext._jsc is not None, "a session it did not make is left running"
