"""Which NDJSON files make up a Bulk Data export: a directory of them, or a manifest."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote, urlparse

import orjson

# The resource types the screening rules read; a kick-off asks for these only.
SCREENED_TYPES = ("Patient", "Condition", "Observation", "ServiceRequest")
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
BLOCK_BYTES = 8 << 20


class SourceError(ValueError):
    """The export cannot be read at all (no files, a broken manifest); the message says why."""


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One NDJSON file of the export; ``index`` orders files (and so lines) deterministically."""

    index: int
    path: Path
    declared_type: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(".gz")

    def size(self) -> int:
        return self.path.stat().st_size


def list_export(source: Path) -> list[ExportFile]:
    """The export's files: every ``*.ndjson[.gz]`` of a directory (by name), or a manifest's."""
    if source.is_dir():
        paths = sorted(p for p in source.iterdir()
                       if p.is_file() and p.name.endswith(NDJSON_SUFFIXES))
        if not paths:
            raise SourceError(f"{source}: no .ndjson or .ndjson.gz files in this directory")
        return [ExportFile(i, p) for i, p in enumerate(paths)]
    if source.is_file() and source.name.endswith(NDJSON_SUFFIXES):
        return [ExportFile(0, source)]
    if source.is_file():
        return _from_manifest(source)
    raise SourceError(f"{source}: no such file or directory")


def _from_manifest(path: Path) -> list[ExportFile]:
    try:
        manifest = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SourceError(f"{path}: not an NDJSON file and not a JSON manifest: {exc}") from None
    outputs = manifest.get("output") if isinstance(manifest, dict) else None
    if not isinstance(outputs, list):
        raise SourceError(f"{path}: a Bulk Data manifest needs an 'output' array")
    files: list[ExportFile] = []
    for item in outputs + list(manifest.get("error") or []):
        files.append(ExportFile(len(files), _local_path(path, item), _declared(item)))
    if not files:
        raise SourceError(f"{path}: the manifest lists no output files")
    return files


def _declared(item: Any) -> str | None:
    kind = item.get("type") if isinstance(item, dict) else None
    return kind if isinstance(kind, str) else None


def _local_path(manifest: Path, item: Any) -> Path:
    url = item.get("url") if isinstance(item, dict) else None
    if not isinstance(url, str) or not url:
        raise SourceError(f"{manifest}: every output needs a 'url'")
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        raise SourceError(
            f"{manifest}: output {url!r} is on a server; fetch the export with "
            "'ipex-screen population --from URL' instead")
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
    elif parsed.scheme:
        raise SourceError(f"{manifest}: output url scheme {parsed.scheme!r} is not supported")
    else:
        local = Path(url)
    resolved = local if local.is_absolute() else manifest.parent / local
    if not resolved.is_file():
        raise SourceError(f"{manifest}: output file {resolved} does not exist")
    return resolved


def open_export_file(export_file: ExportFile) -> IO[bytes]:
    if export_file.compressed:
        return cast(IO[bytes], gzip.open(export_file.path, "rb"))
    return open(export_file.path, "rb")


@dataclass(frozen=True, slots=True)
class Block:
    """Whole lines of one file, from line ``first_line`` (1-based) on.

    ``offset``: where the block starts in the file, for an uncompressed file (None for
    gzip), so that another process can read the same bytes itself (:func:`reread`).
    """

    file_index: int
    first_line: int
    data: bytes
    raw_bytes: int
    offset: int | None = None

    def place(self, export_file: ExportFile) -> BlockPlace | None:
        """Where to read this block again, or None when it cannot be (gzip)."""
        if self.offset is None:
            return None
        return BlockPlace(export_file.path, self.offset, len(self.data), self.file_index,
                          self.first_line, self.raw_bytes)


@dataclass(frozen=True, slots=True)
class BlockPlace:
    """A block of an uncompressed file by place: cheap to send to a worker process."""

    path: Path
    offset: int
    size: int
    file_index: int
    first_line: int
    raw_bytes: int

    def read(self) -> Block:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.size)
        if len(data) != self.size or not data.endswith(b"\n"):
            raise SourceError(f"{self.path}: changed while it was being read")
        return Block(self.file_index, self.first_line, data, self.raw_bytes, self.offset)


def read_blocks(export_file: ExportFile, *, block_bytes: int = BLOCK_BYTES) -> Iterator[Block]:
    """Cut a file into blocks of whole lines, so workers can split them with no context."""
    line = 1
    rest = b""
    start = 0  # offset of ``rest`` in the (uncompressed) file
    offsets = not export_file.compressed
    with open_export_file(export_file) as handle:
        while True:
            chunk = handle.read(block_bytes)
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield Block(export_file.index, line, block, len(chunk), start if offsets else None)
            start += cut
            line += block.count(b"\n")
    if rest:
        yield Block(export_file.index, line, rest + b"\n", 0)


def estimated_bytes(files: list[ExportFile]) -> int:
    """Uncompressed size of the export; gzip'd NDJSON is taken as 8 times its size."""
    return sum(f.size() * (8 if f.compressed else 1) for f in files)
