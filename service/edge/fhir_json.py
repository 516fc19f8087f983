"""Reading and writing FHIR JSON at the HTTP edge (shared by FHIR and CDS Hooks)."""

from __future__ import annotations

import gc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from flask import Request, Response

from .errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from .limits import check_containers, check_json_limits, count_entries

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
JSON_TYPES = frozenset({JSON, FHIR_JSON})


# A list a server may put in the WSGI environ: what the app appends to it, the server
# frees only once the answer is on its way (freeing a parsed 4 MB record takes as long
# as screening it, and the caller need not wait for that). See service.serving.worker.
RELEASE_AFTER_ANSWER = "ipex.release_after_answer"

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_CHUNK = 1 << 20


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    """A gzip body, decompressed; its *decompressed* size is what the limit bounds, so a
    small bomb that would inflate to gigabytes is refused after ``max_bytes`` + 1."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while pending:
            out += inflater.decompress(pending, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise PayloadTooLarge(
                    f"the gzip body inflates to more than the limit of {max_bytes} bytes")
            pending = inflater.unconsumed_tail
            if not pending and not inflater.eof:
                break
        out += inflater.flush()
    except zlib.error as exc:
        raise BadRequest(f"the body says Content-Encoding: gzip but is not valid gzip: {exc}"
                         ) from None
    if len(out) > max_bytes:
        raise PayloadTooLarge(f"the gzip body inflates to more than the limit of {max_bytes} "
                              "bytes")
    if not inflater.eof:
        raise BadRequest("the gzip body is cut short")
    return bytes(out)


_READ_CHUNK = 1 << 20


def _body(request: Request, max_bytes: int) -> bytes:
    """The body, at most ``max_bytes`` (413 past it). A stream read of N bytes makes the
    server zero-fill an N-byte buffer first, so a read never asks for the whole limit
    (64 MB per request): the announced length, or 1 MB pieces of a chunked body."""
    length = request.content_length
    if length is not None:
        if length > max_bytes:
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {max_bytes} bytes")
        # The server's own input, read once: werkzeug's stream wrapper would copy a
        # 4 MB body twice more. WSGI lets an app read up to CONTENT_LENGTH from it.
        data: bytes = request.environ["wsgi.input"].read(length)
        if len(data) < length:
            raise BadRequest(f"the body ended after {len(data)} of the {length} bytes its "
                             "Content-Length announced")
        return data
    pieces: list[bytes] = []
    total = 0
    while True:
        piece = request.stream.read(min(_READ_CHUNK, max_bytes + 1 - total))
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        total += len(piece)
        if total > max_bytes:
            raise PayloadTooLarge(f"the body is larger than the limit of {max_bytes} bytes")


def read_json(request: Request, *, max_bytes: int, max_depth: int | None = None,
              max_entries: int | None = None, what: str = "a FHIR Bundle") -> Any:
    """Parse a JSON body, refusing the wrong media type (415) and oversize bodies (413).

    A ``Content-Encoding: gzip`` body is accepted (interface engines compress large
    Bundles), the limit applying to its decompressed size. ``max_entries`` caps the
    Bundle entries the service reads (413); ``max_depth``, for a body handed to code that
    recurses into it, also walks every node for the nesting depth (400): see
    :mod:`.limits`. ``what`` names what the caller should have sent, in their terms.
    """
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES:
        shown = mimetype or "none"
        raise UnsupportedMedia(
            f"Content-Type must be application/fhir+json or application/json, got {shown}"
        )
    data = _body(request, max_bytes)
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "gzip":
        data = _gunzip(data, max_bytes)
    elif encoding != "identity":
        raise UnsupportedMedia(f"Content-Encoding {encoding} is not supported; send the body "
                               "as it is or gzip-compressed")
    if not data.strip():
        raise BadRequest(f"the body is empty; send {what} as JSON")
    check_containers(data)
    try:
        document = parse_json(data)
    except orjson.JSONDecodeError as exc:
        if data.startswith(_GZIP_MAGIC):
            raise BadRequest("the body is gzip-compressed but has no 'Content-Encoding: "
                             "gzip' header") from None
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if max_depth is not None:
        check_json_limits(document, max_depth=max_depth, max_entries=max_entries or 10**9)
    elif max_entries is not None:
        count_entries(document, max_entries=max_entries)
    keep = request.environ.get(RELEASE_AFTER_ANSWER)
    if keep is not None:
        keep.append(document)
    return document


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC paused: parsing, screening and writing a record make many objects
    but no cycles, and the GC passes they trigger walk the whole parsed body each time
    (a 20 MB body parsed about 3x slower; 50,000 patients screened 2x slower)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_json(data: bytes) -> Any:
    """``orjson.loads`` with the cyclic GC paused (see :func:`paused_gc`)."""
    with paused_gc():
        return orjson.loads(data)


def json_response(payload: Any, *, status: int = 200, mimetype: str = FHIR_JSON) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype=mimetype)
