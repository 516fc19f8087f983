"""Turn Synthea bundles into a FHIR Bulk Data export of N patients (NDJSON per resource type).

``.venv/bin/python -m bench.bulk_export OUT --patients N`` writes ``Patient.ndjson``,
``Condition.ndjson``, ``Observation.N.ndjson`` and ``ServiceRequest.ndjson`` as a
Bulk Data server would: one resource a line, references as ``Type/id``. Patient k
is a copy of Synthea bundle k mod 40 with fresh ids (the bundle's ids with a copy
number appended), so every patient and resource id is unique. ``--add BUNDLE.json``
adds a FHIR Bundle (or a scenario file holding one) once, keeping its own ids: the
"done when" export is the 40 Synthea bundles plus the classic infant boy triad.

Each template is serialised once with a placeholder for the copy number; a copy
is one ``bytes.replace`` per line, so generating 100,000 patients is bounded by
the disk, not by Python.
"""

from __future__ import annotations

import argparse
import gzip
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import orjson

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea"
TYPES = ("Patient", "Condition", "Observation", "ServiceRequest")
COPY = b"@@COPY@@"
LINES_PER_FILE = 2_000_000


@dataclass(frozen=True, slots=True)
class Template:
    """One source record's lines by type, with ``COPY`` where a copy number goes."""

    lines: dict[str, list[bytes]]


def _rewrite(value: Any, ids: Mapping[str, str], suffix: str) -> Any:
    """Point every reference at ``Type/id`` (with the copy suffix), recursively."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                out[key] = _reference(item, ids, suffix)
            else:
                out[key] = _rewrite(item, ids, suffix)
        return out
    if isinstance(value, list):
        return [_rewrite(v, ids, suffix) for v in value]
    return value


def _reference(ref: str, ids: Mapping[str, str], suffix: str) -> str:
    if ref in ids:
        return ids[ref] + suffix
    parts = ref.split("/")
    if len(parts) == 2 and parts[0] in TYPES:
        return ref + suffix
    return ref


def _bundle(data: Any) -> Mapping[str, Any]:
    bundle = data.get("bundle", data) if isinstance(data, dict) else data
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("expected a FHIR Bundle or a scenario file holding one")
    return bundle


def template(bundle: Mapping[str, Any], *, copies: bool, keep_observation: float = 1.0
             ) -> Template:
    """Read one bundle's four resource types into NDJSON lines (ids get ``-COPY`` when copied)."""
    suffix = "-" + COPY.decode() if copies else ""
    entries = [e for e in bundle.get("entry") or []
               if isinstance(e.get("resource"), dict)
               and e["resource"].get("resourceType") in TYPES]
    ids: dict[str, str] = {}
    for n, entry in enumerate(entries):
        resource = entry["resource"]
        rid = resource.get("id") or f"e{n}"
        key = f"{resource['resourceType']}/{rid}"
        if entry.get("fullUrl"):
            ids[entry["fullUrl"]] = key
        ids[key] = key
    lines: dict[str, list[bytes]] = {t: [] for t in TYPES}
    for n, entry in enumerate(entries):
        resource = dict(entry["resource"])
        kind = resource["resourceType"]
        if kind == "Observation" and keep_observation < 1.0 and not _kept(
                resource.get("id") or str(n), keep_observation):
            continue
        resource["id"] = (resource.get("id") or f"e{n}") + suffix
        lines[kind].append(orjson.dumps(_rewrite(resource, ids, suffix)))
    return Template(lines)


def _kept(key: str, share: float) -> bool:
    """The same Observations are kept every run (a hash, not a random draw)."""
    return zlib.crc32(key.encode()) / 0xFFFFFFFF < share


@dataclass(slots=True)
class _Writer:
    """Writes one resource type, starting a new file every ``LINES_PER_FILE`` lines."""

    out: Path
    kind: str
    compress: bool
    split: bool
    lines_per_file: int = LINES_PER_FILE
    count: int = 0
    handle: IO[bytes] | None = None
    paths: list[Path] = field(default_factory=list)

    def write(self, line: bytes) -> None:
        handle = self.handle
        if handle is None or (self.split and self.count % self.lines_per_file == 0):
            self.close()
            number = f".{len(self.paths) + 1}" if self.split else ""
            path = self.out / f"{self.kind}{number}.ndjson{'.gz' if self.compress else ''}"
            self.paths.append(path)
            handle = cast(IO[bytes], gzip.open(path, "wb", compresslevel=1)) if (
                self.compress) else open(path, "wb", buffering=1 << 20)
            self.handle = handle
        handle.write(line + b"\n")
        self.count += 1

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def synthea_bundles(directory: Path = SYNTHEA) -> list[Mapping[str, Any]]:
    return [_bundle(orjson.loads(p.read_bytes())) for p in sorted(directory.glob("*.json"))]


def copies(templates: Sequence[Template], patients: int) -> Iterator[tuple[str, bytes]]:
    """(type, line) of ``patients`` copies, cycling through the templates."""
    for n in range(patients):
        number = b"%06d" % n
        for kind, lines in templates[n % len(templates)].lines.items():
            for line in lines:
                yield kind, line.replace(COPY, number)


def generate(out: Path, *, patients: int, sources: Sequence[Mapping[str, Any]] | None = None,
             add: Sequence[Mapping[str, Any]] = (), keep_observation: float = 1.0,
             compress: bool = False, lines_per_file: int = LINES_PER_FILE) -> dict[str, int]:
    """Write the export; return the number of lines written per resource type."""
    out.mkdir(parents=True, exist_ok=True)
    templates = [template(b, copies=True, keep_observation=keep_observation)
                 for b in (sources if sources is not None else synthea_bundles())]
    writers = {t: _Writer(out, t, compress, split=t == "Observation",
                          lines_per_file=lines_per_file) for t in TYPES}
    try:
        for kind, line in copies(templates, patients):
            writers[kind].write(line)
        for bundle in add:
            for kind, lines in template(bundle, copies=False).lines.items():
                for line in lines:
                    writers[kind].write(line)
    finally:
        for writer in writers.values():
            writer.close()
    return {t: w.count for t, w in writers.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="directory to write the NDJSON files to")
    parser.add_argument("--patients", type=int, default=40,
                        help="how many patients (copies of the Synthea bundles); default 40")
    parser.add_argument("--add", type=Path, action="append", default=[],
                        help="a Bundle (or scenario) JSON file to add once, with its own ids")
    parser.add_argument("--keep-observations", type=float, default=1.0, metavar="SHARE",
                        help="share of each record's Observations kept (default 1: all)")
    parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz files")
    args = parser.parse_args(argv)
    added = [_bundle(orjson.loads(p.read_bytes())) for p in args.add]
    counts = generate(args.out, patients=args.patients, add=added,
                      keep_observation=args.keep_observations, compress=args.gzip)
    size = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(orjson.dumps({"lines": counts, "bytes": size}).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
