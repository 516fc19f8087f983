"""Population screening throughput and memory, against orjson parsing the same bytes.

``.venv/bin/python -m bench.population --patients 100000 --scale-from 10000`` generates
a Bulk export of N patients from the Synthea bundles (``bench.bulk_export``), then,
for each size and in this order:

* the floor: ``orjson.loads`` of every line of the export, one process, files read
  in blocks as the engine reads them (``source.read_blocks``);
* ``ipex-screen population`` with one worker process, with every core, and with
  ``--engine spark`` (local mode, ``local[cores]``), each in a fresh process.

Before the floor and before each run every file of the export is read once (not
timed), so that all of them read the same bytes from the page cache; the machine
has to hold the export in memory for that (8.4 GB at 100,000 patients).

Each run's wall time gives patients per second; its peak memory is the largest
sum of resident memory over the whole process tree (the CLI, its workers, and for
Spark the JVM and its Python workers), sampled every 0.2 s with psutil. The
ratio to the floor is taken per core: (patients/s) / (floor patients/s x cores
used). Time per patient at the small and the large size shows whether time grows
linearly. The generated export is deleted at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil

from bench.bulk_export import generate, synthea_bundles, template
from service.population.patient import gc_paused
from service.population.source import list_export, read_blocks

AS_OF = "2025-09-01"
ENGINES = ("local-1", "local-all", "spark")
_PHASE = re.compile(r"^(reading export|screening|writing outputs): .*? in ([\d.]+) s", re.M)


@dataclass(frozen=True, slots=True)
class Run:
    what: str
    patients: int
    seconds: float
    peak_rss_mb: float
    cores: int
    phases: dict[str, float]
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0

    @property
    def per_second(self) -> float:
        return self.patients / self.seconds


def core_alone(repeats: int = 5) -> tuple[float, float, float]:
    """(parse ms, screen ms, screen-what-is-kept ms) per patient: each Synthea record's
    four resource types as one collection Bundle, ``orjson.loads`` of its lines and
    ``screen_bundle`` of the parsed Bundle timed apart (CPU time, median of ``repeats``),
    GC paused as the engine does; then ``screen_bundle`` of the Bundle without what
    ``passes_over`` drops, which is what the engine hands the core. The export is copies
    of these records, so this is the core's own share of the work."""
    import datetime as dt
    import statistics

    from service.config import default_profiles_dir
    from service.profiles import load_profiles
    from service.screening import passes_over, screen_bundle

    rules = load_profiles(default_profiles_dir()).rules
    as_of = dt.date.fromisoformat(AS_OF)
    records = [[line for lines in template(b, copies=False).lines.values() for line in lines]
               for b in synthea_bundles()]
    parse: list[float] = []
    screen: list[float] = []
    kept: list[float] = []
    for _ in range(repeats):
        with gc_paused():
            started = time.process_time()
            parsed = [[orjson.loads(line) for line in lines] for lines in records]
            parse.append(time.process_time() - started)
            for times, drop in ((screen, False), (kept, True)):
                bundles = [{"resourceType": "Bundle", "type": "collection",
                            "entry": [{"resource": r} for r in resources
                                      if not (drop and passes_over(r, rules))]}
                           for resources in parsed]
                started = time.process_time()
                for bundle in bundles:
                    screen_bundle(bundle, rules, as_of=as_of)
                times.append(time.process_time() - started)
    per_patient = [statistics.median(t) / len(records) * 1000 for t in (parse, screen, kept)]
    return per_patient[0], per_patient[1], per_patient[2]


def warm(export: Path) -> None:
    """Read every file of the export once, so the next measurement reads the page cache."""
    for export_file in list_export(export):
        with open(export_file.path, "rb") as handle:
            while handle.read(64 << 20):
                pass


def floor_seconds(export: Path) -> tuple[float, int]:
    """orjson.loads of every line, one process; returns (seconds, bytes)."""
    started = time.perf_counter()
    size = 0
    loads = orjson.loads
    for export_file in list_export(export):
        for block in read_blocks(export_file):
            size += len(block.data)
            for line in block.data.split(b"\n"):
                if line:
                    loads(line)
    return time.perf_counter() - started, size


class TreeMemory:
    """The peak of the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(every_s,), daemon=True)
        self._thread.start()

    def _sample(self, every_s: float) -> None:
        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(every_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_cli(export: Path, out: Path, engine: str, patients: int, cores: int) -> Run:
    workers = 1 if engine == "local-1" else cores
    command = [sys.executable, "-m", "service.cli", "population", str(export), "--out", str(out),
               "--as-of", AS_OF, "--workers", str(workers),
               "--engine", "spark" if engine == "spark" else "local"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    memory = TreeMemory(process.pid)
    _, err = process.communicate()
    seconds = time.perf_counter() - started
    peak = memory.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"{engine} failed ({process.returncode}):\n{err[-2000:]}")
    phases = {str(m.group(1)): float(m.group(2)) for m in _PHASE.finditer(err)}
    summary = orjson.loads((out / "summary.json").read_bytes())
    if summary["patients"]["screened"] != patients:
        raise RuntimeError(f"{engine} screened {summary['patients']['screened']} of {patients}")
    return Run(engine, patients, seconds, peak / 2**20, workers, phases,
               after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GB memory, "
            f"{platform.platform()}, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f} at start")


def table(floor: dict[int, tuple[float, int]], runs: list[Run]) -> str:
    lines = ["| run | patients | export MB | seconds | patients/s | floor patients/s (1 core) "
             "| per core / floor | peak RSS MB (tree) | CPU user + sys s | phases s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for size, (seconds, size_bytes) in sorted(floor.items()):
        lines.append(f"| orjson floor | {size:,} | {size_bytes / 2**20:,.0f} | {seconds:.1f} | "
                     f"{size / seconds:,.0f} | {size / seconds:,.0f} | 1.00 | | | |")
        for run in (r for r in runs if r.patients == size):
            floor_rate = size / seconds
            ratio = run.per_second / (floor_rate * run.cores)
            phases = ", ".join(f"{k} {v:g}" for k, v in run.phases.items())
            lines.append(f"| {run.what} | {size:,} | {size_bytes / 2**20:,.0f} | "
                         f"{run.seconds:.1f} | {run.per_second:,.0f} | {floor_rate:,.0f} | "
                         f"{ratio:.2f} | {run.peak_rss_mb:,.0f} | "
                         f"{run.cpu_user_s:.0f} + {run.cpu_sys_s:.0f} | {phases} |")
    return "\n".join(lines)


def scaling(runs: list[Run]) -> str:
    sizes = sorted({r.patients for r in runs})
    if len(sizes) < 2:
        return ""
    small, large = sizes[0], sizes[-1]
    lines = [f"| run | ms per patient at {small:,} | at {large:,} | growth "
             f"(1.00 = linear) |", "|---|---:|---:|---:|"]
    for what in dict.fromkeys(r.what for r in runs):
        pair = {r.patients: r for r in runs if r.what == what}
        if small in pair and large in pair:
            a = pair[small].seconds / small * 1000
            b = pair[large].seconds / large * 1000
            lines.append(f"| {what} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.population", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--scale-from", type=int, default=None, metavar="N",
                        help="also measure N patients, to see how time grows")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--keep-observations", type=float, default=1.0, metavar="SHARE")
    parser.add_argument("--work", type=Path, default=None,
                        help="where the export and outputs go (default a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the generated export")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    if unknown := set(engines) - set(ENGINES):
        parser.error(f"unknown engines: {sorted(unknown)}")
    cores = os.cpu_count() or 1
    print(f"machine: {machine()}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="ipex-population-bench-", dir=args.work))
    floor: dict[int, tuple[float, int]] = {}
    runs: list[Run] = []
    try:
        for size in sorted({args.patients, *([args.scale_from] if args.scale_from else [])}):
            export = work / f"export-{size}"
            started = time.perf_counter()
            generate(export, patients=size, keep_observation=args.keep_observations)
            print(f"generated {size:,} patients in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
            warm(export)
            floor[size] = floor_seconds(export)
            for engine in engines:
                out = work / f"out-{size}-{engine}"
                warm(export)
                runs.append(run_cli(export, out, engine, size, cores))
                print(f"  {engine}: {runs[-1].seconds:.1f} s", file=sys.stderr, flush=True)
                shutil.rmtree(out)
            if not args.keep:
                shutil.rmtree(export)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    parse_ms, screen_ms, kept_ms = core_alone()
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(floor, runs))
    print(f"\nThe core alone, per patient (CPU ms, GC paused): orjson.loads {parse_ms:.3f}, "
          f"screen_bundle {screen_ms:.3f} ({screen_ms / parse_ms:.1f}x the parse), "
          f"screen_bundle of what passes_over keeps {kept_ms:.3f} "
          f"({kept_ms / parse_ms:.2f}x the parse)")
    text = scaling(runs)
    if text:
        print()
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
