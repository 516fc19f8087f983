"""How fast the service screens real-shaped bundles, against the JSON parse and full validation.

Run it with ``.venv/bin/python -m bench.screening`` (``--quick`` for the three largest
Synthea bundles and the generated one only). For each bundle, in one run and
interleaved (one repeat of each measurement in turn, so machine noise hits all three
alike), it takes the median of several repeats of:

* ``orjson.loads`` of the bytes: the floor, nothing can screen faster than it parses;
* ``fhir.resources`` R4B ``Bundle.model_validate`` of the parsed body: the naive way;
* the service end to end: ``orjson.loads`` + ``Runtime.screen`` +
  ``Runtime.result_resource`` + ``orjson.dumps``, what ``POST /fhir/$ipex-screen``
  does between reading the body and writing the response.

It then screens the generated 20 MB bundle in a fresh subprocess and reports its
peak resident memory, the figure that bounds one gunicorn worker.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import io
import itertools
import json
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from service.config import load_settings
from service.runtime import Runtime

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea"
AS_OF = dt.date(2025, 9, 1)
LARGE_BYTES = 20 * 1024 * 1024
_ID_NAMESPACE = uuid.UUID("6d1c1e52-8a3b-4f0e-9a57-2b1f0c3d9e10")
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Case:
    """One bundle to measure: a name for the table and its exact bytes."""

    name: str
    data: bytes
    entries: int


@dataclass(frozen=True, slots=True)
class CaseTiming:
    """Medians (seconds) of one bundle's three measurements and the ratios the targets use."""

    name: str
    size_bytes: int
    entries: int
    repeats: int
    validate_repeats: int
    loads_s: float
    loads_gc_off_s: float
    validate_s: float | None
    screen_s: float
    screen_over_loads: float
    validate_over_screen: float | None
    app_s: float | None = None
    app_over_loads: float | None = None


@dataclass(frozen=True, slots=True)
class MemoryPeak:
    """Peak resident memory of a fresh process screening one bundle."""

    name: str
    size_bytes: int
    ready_mb: float
    peak_mb: float


def synthea_cases(directory: Path = SYNTHEA, *, largest: int | None = None) -> list[Case]:
    """The Synthea bundles of ``directory``, largest first (only ``largest`` of them if set)."""
    files = sorted(directory.glob("*.json"), key=lambda p: (-p.stat().st_size, p.name))
    if largest is not None:
        files = files[:largest]
    cases = []
    for path in files:
        data = path.read_bytes()
        name = "_".join(path.stem.split("_")[:2])  # Given_Family, without the uuid
        cases.append(Case(name, data, len(orjson.loads(data).get("entry") or [])))
    return cases


def _rewrite(value: Any, ids: Mapping[str, str]) -> Any:
    """Copy a resource, replacing every reference to an old id with the new one."""
    if isinstance(value, dict):
        return {k: _rewrite(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    if isinstance(value, str) and value in ids:
        return ids[value]
    return value


def _fresh_ids(
    entries: Sequence[Mapping[str, Any]], copy: int, patient: Mapping[str, Any]
) -> tuple[dict[str, str], dict[int, str]]:
    """For one copy of a source: old reference -> new, and entry index -> its new id."""
    references: dict[str, str] = {}
    new_ids: dict[int, str] = {}
    for index, entry in enumerate(entries):
        resource = entry["resource"]
        kind = resource["resourceType"]
        old, full_url = resource.get("id"), entry.get("fullUrl")
        if kind == "Patient":
            new, new_full_url = patient["resource"]["id"], patient.get("fullUrl")
        else:
            new = str(uuid.uuid5(_ID_NAMESPACE, f"{copy}/{index}/{old}/{full_url}"))
            new_full_url = f"urn:uuid:{new}"
            new_ids[index] = new
        if isinstance(old, str):
            references[f"urn:uuid:{old}"] = f"urn:uuid:{new}"
            references[f"{kind}/{old}"] = f"{kind}/{new}"
        if isinstance(full_url, str) and isinstance(new_full_url, str):
            references[full_url] = new_full_url
    return references, new_ids


def replicated_bundle(sources: Sequence[Mapping[str, Any]], *, target_bytes: int) -> bytes:
    """A collection Bundle of about ``target_bytes``: one Patient and copies of real entries.

    The Patient is the first source's; every other entry of every source is copied
    round-robin with a fresh, deterministic id and fullUrl, and references to the
    source's Patient point at the one Patient, so the result is one long record of
    real shapes (Claims, Encounters, Observations ...) with no duplicate ids.
    """
    first = sources[0]["entry"]
    patient = next(e for e in first if e["resource"]["resourceType"] == "Patient")
    out: list[Any] = [patient]
    size = len(orjson.dumps(patient)) + 64
    for copy in itertools.count():
        source = sources[copy % len(sources)]["entry"]
        references, new_ids = _fresh_ids(source, copy, patient)
        for index, entry in enumerate(source):
            if entry["resource"]["resourceType"] == "Patient":
                continue
            fresh = _rewrite(entry, references)
            fresh["fullUrl"] = f"urn:uuid:{new_ids[index]}"
            if "id" in fresh["resource"]:
                fresh["resource"]["id"] = new_ids[index]
            out.append(fresh)
            size += len(orjson.dumps(fresh)) + 1
            if size >= target_bytes:
                return orjson.dumps({"resourceType": "Bundle", "id": "bench-large",
                                     "type": "collection", "entry": out})
    raise AssertionError("unreachable")  # pragma: no cover


def large_case(sources: Sequence[Case], *, target_bytes: int = LARGE_BYTES) -> Case:
    data = replicated_bundle([orjson.loads(c.data) for c in sources], target_bytes=target_bytes)
    entries = len(orjson.loads(data)["entry"])
    return Case(f"generated-{target_bytes // _MB}MB", data, entries)


def screen_end_to_end(runtime: Runtime, data: bytes) -> bytes:
    """What the FHIR operation does with a body: parse, screen, build the result, serialise."""
    results = runtime.screen(orjson.loads(data), as_of=AS_OF)
    return orjson.dumps(runtime.result_resource(results))


def _validate_fully(data: bytes) -> object:
    from fhir.resources.R4B.bundle import Bundle

    return Bundle.model_validate(orjson.loads(data))


def _timed(work: Callable[[], object], *, gc_off: bool = False) -> float:
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start
    finally:
        gc.enable()


class AppPath(Protocol):
    """POST a body to ``/fhir/$ipex-screen`` through the whole Flask app, in this process."""

    def __call__(self, data: bytes) -> None: ...


def flask_app_path(state_dir: str) -> AppPath:
    """The operation as the server runs it (body limits, hooks, headers), minus the socket."""
    from service.app import create_app

    app = create_app(settings=load_settings(state_db=str(Path(state_dir) / "state.sqlite3")))
    client = app.test_client()

    def post(data: bytes) -> None:
        response = client.post("/fhir/$ipex-screen", data=data,
                               content_type="application/fhir+json")
        if response.status_code != 200:
            raise RuntimeError(f"the app answered {response.status_code}")

    return post


def measure(
    case: Case, runtime: Runtime, *, repeats: int, validate_repeats: int,
    app_path: AppPath | None = None,
) -> CaseTiming:
    """Median time of each measurement of one bundle, interleaved repeat by repeat."""
    if repeats < 1 or validate_repeats < 0:
        raise ValueError("repeats must be >= 1 and validate_repeats >= 0")
    data = case.data
    screen_end_to_end(runtime, data)  # first call pays lazy imports; not measured
    loads: list[float] = []
    loads_gc_off: list[float] = []
    screens: list[float] = []
    validations: list[float] = []
    through_app: list[float] = []
    if app_path is not None:
        app_path(data)
    for n in range(repeats):
        loads.append(_timed(lambda: orjson.loads(data)))
        loads_gc_off.append(_timed(lambda: orjson.loads(data), gc_off=True))
        screens.append(_timed(lambda: screen_end_to_end(runtime, data)))
        if app_path is not None:
            through_app.append(_timed(lambda: app_path(data)))
        if n < validate_repeats:
            validations.append(_timed(lambda: _validate_fully(data)))
    loads_s, screen_s = statistics.median(loads), statistics.median(screens)
    validate_s = statistics.median(validations) if validations else None
    app_s = statistics.median(through_app) if through_app else None
    return CaseTiming(
        name=case.name,
        size_bytes=len(data),
        entries=case.entries,
        repeats=repeats,
        validate_repeats=len(validations),
        loads_s=loads_s,
        loads_gc_off_s=statistics.median(loads_gc_off),
        validate_s=validate_s,
        screen_s=screen_s,
        screen_over_loads=screen_s / loads_s,
        validate_over_screen=validate_s / screen_s if validate_s is not None else None,
        app_s=app_s,
        app_over_loads=app_s / loads_s if app_s is not None else None,
    )


def memory_peak(case: Case) -> MemoryPeak:
    """Screen ``case`` in a fresh Python process and read its peak resident memory."""
    with tempfile.NamedTemporaryFile(suffix=".json") as handle:
        handle.write(case.data)
        handle.flush()
        done = subprocess.run(
            [sys.executable, "-m", "bench.screening", "--memory-child", handle.name],
            capture_output=True, check=True, timeout=600,
            cwd=Path(__file__).resolve().parents[1],
        )
    figures = json.loads(done.stdout)
    return MemoryPeak(case.name, len(case.data), figures["ready_mb"], figures["peak_mb"])


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss would carry the parent's peak across exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _memory_child(path: str) -> None:
    from service.warmup import WARM_UP_BUNDLE

    runtime = Runtime.start(load_settings())
    runtime.screen(WARM_UP_BUNDLE)  # as `ipex-screen serve` does before forking workers
    ready = _peak_rss_mb()
    with open(path, "rb") as handle:
        data = handle.read()  # a worker holds the request body too
    screen_end_to_end(runtime, data)
    print(json.dumps({"ready_mb": ready, "peak_mb": _peak_rss_mb()}))


def profile(case: Case, runtime: Runtime, *, repeats: int = 5, top: int = 25) -> str:
    """cProfile of the end-to-end screening of one bundle: where the time goes."""
    screen_end_to_end(runtime, case.data)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        screen_end_to_end(runtime, case.data)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Phases:
    """Where the end-to-end time of one bundle goes (medians, seconds)."""

    name: str
    parse_s: float
    screen_s: float
    output_s: float


def phases(case: Case, runtime: Runtime, *, repeats: int = 7) -> Phases:
    """Time parse, screen (reading the facts included) and output separately."""
    parse, screen, output = [], [], []
    screen_end_to_end(runtime, case.data)
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        body = orjson.loads(case.data)
        t1 = time.perf_counter()
        results = runtime.screen(body, as_of=AS_OF)
        t2 = time.perf_counter()
        orjson.dumps(runtime.result_resource(results))
        t3 = time.perf_counter()
        parse.append(t1 - t0)
        screen.append(t2 - t1)
        output.append(t3 - t2)
    med = statistics.median
    return Phases(case.name, med(parse), med(screen), med(output))


def phases_table(rows: Sequence[Phases]) -> str:
    lines = ["| bundle | parse ms | screen ms | output ms |", "|---|---:|---:|---:|"]
    for p in rows:
        lines.append(f"| {p.name} | {_ms(p.parse_s)} | {_ms(p.screen_s)} | {_ms(p.output_s)} |")
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def table(timings: Sequence[CaseTiming]) -> str:
    """A Markdown table of the timings, one row per bundle."""
    lines = [
        "| bundle | MB | entries | orjson.loads ms | (gc off) | full validation ms "
        "| screening e2e ms | e2e / loads | validation / e2e | via Flask app ms | app / loads |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        lines.append(
            f"| {t.name} | {t.size_bytes / _MB:.2f} | {t.entries} | {_ms(t.loads_s)} "
            f"| {_ms(t.loads_gc_off_s)} "
            f"| {_ms(t.validate_s)} | {_ms(t.screen_s)} | {_ratio(t.screen_over_loads)} "
            f"| {_ratio(t.validate_over_screen)} | {_ms(t.app_s)} | {_ratio(t.app_over_loads)} |"
        )
    return "\n".join(lines)


def verdict(timing: CaseTiming) -> str:
    """The issue's targets for one bundle: e2e within 3x loads, >= 10x faster than validation."""
    within = timing.screen_over_loads <= 3.0
    speedup = timing.validate_over_screen
    faster = "not measured" if speedup is None else "met" if speedup >= 10.0 else "MISSED"
    return (
        f"{timing.name} ({timing.size_bytes / _MB:.1f} MB): end-to-end "
        f"{_ratio(timing.screen_over_loads)} orjson.loads (target <= 3x: "
        f"{'met' if within else 'MISSED'}), full validation "
        f"{_ratio(speedup)} slower than end-to-end (target >= 10x: {faster})"
    ) + ("" if timing.app_over_loads is None else
         f"; through the Flask app {_ratio(timing.app_over_loads)} orjson.loads")


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.screening", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="only the 3 largest Synthea bundles (and the generated one)")
    parser.add_argument("--synthea", type=Path, default=SYNTHEA, help="directory of bundles")
    parser.add_argument("--repeats", type=int, default=7, help="repeats per Synthea bundle")
    parser.add_argument("--validate-repeats", type=int, default=3,
                        help="repeats of full validation per Synthea bundle")
    parser.add_argument("--large-repeats", type=int, default=5)
    parser.add_argument("--large-validate-repeats", type=int, default=1)
    parser.add_argument("--no-large", action="store_true", help="skip the generated bundle")
    parser.add_argument("--no-app", action="store_true",
                        help="skip the measurement through the Flask app")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of the largest Synthea bundle")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return 0
    runtime = Runtime.start(load_settings())
    cases = synthea_cases(args.synthea, largest=3 if args.quick else None)
    if not cases:
        print(f"no bundles under {args.synthea}", file=sys.stderr)
        return 2
    timings = []
    large: CaseTiming | None = None
    memory: MemoryPeak | None = None
    with tempfile.TemporaryDirectory(prefix="ipex-bench-") as state_dir:
        app_path = None if args.no_app else flask_app_path(state_dir)
        for case in cases:
            timings.append(measure(case, runtime, repeats=args.repeats,
                                   validate_repeats=args.validate_repeats, app_path=app_path))
            print(f"  measured {case.name}", file=sys.stderr, flush=True)
        if not args.no_large:
            big = large_case(cases if not args.quick else synthea_cases(args.synthea))
            large = measure(big, runtime, repeats=args.large_repeats,
                            validate_repeats=args.large_validate_repeats, app_path=app_path)
            memory = memory_peak(big)
    print(table(timings + ([large] if large else [])))
    print()
    biggest = max(timings, key=lambda t: t.size_bytes)
    print(verdict(biggest))
    if large:
        print(verdict(large))
    ratios = [t.screen_over_loads for t in timings]
    speedups = [t.validate_over_screen for t in timings if t.validate_over_screen is not None]
    summary = (f"all {len(timings)} Synthea bundles: e2e / loads median "
               f"{statistics.median(ratios):.2f}x (max {max(ratios):.2f}x)")
    if speedups:
        summary += (f"; validation / e2e median {statistics.median(speedups):.1f}x "
                    f"(min {min(speedups):.1f}x)")
    print(summary)
    if memory:
        print(f"peak RSS screening {memory.name} ({memory.size_bytes / _MB:.1f} MB) in a fresh "
              f"process: {memory.peak_mb:.0f} MB (ready before the body: {memory.ready_mb:.0f} MB;"
              f" target < 300 MB: {'met' if memory.peak_mb < 300 else 'MISSED'})")
    if args.profile:
        ordered = sorted(cases, key=lambda c: -len(c.data))
        print()
        print(phases_table([phases(c, runtime) for c in ordered[:3]]))
        print()
        print(profile(ordered[0], runtime))
    if args.json:
        args.json.write_text(json.dumps({
            "timings": [asdict(t) for t in timings + ([large] if large else [])],
            "memory": asdict(memory) if memory else None,
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
