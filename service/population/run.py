"""What ``ipex-screen population`` does: read (or fetch) an export, screen it, write outputs."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import Settings, default_profiles_dir
from ..profiles import load_profiles
from ..screening import RuleSet
from .local_engine import EngineRun, ScreeningSpec, run_local
from .outputs import REPORT, RunInfo, write_outputs
from .progress import Progress
from .report import write_report
from .source import ExportFile, list_export

Engine = Literal["local", "spark"]


@dataclass(frozen=True, slots=True)
class PopulationRequest:
    out: Path
    as_of: dt.date
    engine: Engine = "local"
    flagged_only: bool = False
    workers: int = 1


def screen_export(source: Path, request: PopulationRequest, settings: Settings, *,
                  export: dict[str, Any] | None = None,
                  progress: Callable[..., Progress] = Progress,
                  spark: Any = None) -> dict[str, Any]:
    """Screen the export at ``source`` into ``request.out``; return the summary.

    ``spark``: a SparkSession to use with the spark engine (default: a local one,
    ``local[workers]``, stopped at the end).
    """
    files = list_export(source)
    profiles_dir = settings.profiles_dir or str(default_profiles_dir())
    rules = load_profiles(Path(profiles_dir)).rules
    spec = ScreeningSpec(profiles_dir, request.as_of, settings.order_coding)
    request.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".ipex-population-", dir=request.out))
    try:
        run = _engine_run(files, spec, request, work, progress, spark, rules)
        info = RunInfo(request.as_of, rules.id, rules.version, request.flagged_only, files,
                       export)
        summary = write_outputs(request.out, run.outcomes, run.tally, info,
                                patients=run.patients, progress=progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(request.out / REPORT, summary)
    return summary


def _engine_run(files: list[ExportFile], spec: ScreeningSpec, request: PopulationRequest,
                work: Path, progress: Callable[..., Progress], spark: Any,
                rules: RuleSet) -> EngineRun:
    if request.engine == "spark":
        from .spark_engine import local_session, run_spark

        session = spark or local_session(master=f"local[{request.workers}]")
        return run_spark(files, spec, work_dir=work, progress=progress, spark=session,
                         stop_session=spark is None)
    return run_local(files, spec, work_dir=work, workers=request.workers, progress=progress,
                     rules=rules)
