"""Caps on what a parsed JSON body may look like.

The body size is capped before parsing (``IPEX_MAX_BODY_MB``, 413; the parser itself
refuses nesting past 1,024 levels), and so is what parsing it would build
(:func:`check_containers`, 413): 64 MB of ``[[],[],...]`` would be 21 million lists,
1.8 GB in one worker. After parsing:

* :func:`count_entries` caps the Bundle entries the service will read (413: too much
  work): the request's Bundle, a ``Parameters`` bundle, each CDS Hooks prefetch Bundle.
  It looks only where such a Bundle can be, so it costs nothing on a large record.
* :func:`check_json_limits` also caps the nesting depth (400), walking every node; it
  runs only for what is handed to code that recurses into the structure (the FHIR
  validator under ``Prefer: handling=strict``, the feedback store). The lenient reading
  of a record is iterative and reads fields at fixed places, so a deep structure it
  never reads costs it nothing, and the walk over every node was a fifth of a CDS call.
"""

from __future__ import annotations

from typing import Any

from .errors import BadRequest, PayloadTooLarge

#: Most JSON objects and arrays a body may hold. FHIR runs at about 130 bytes a container
#: (the Synthea records), so a 64 MB record holds about 500,000; the densest legal shape
#: the service must answer (100,000 Observations of 20 components, 65 MB) holds 4.8
#: million. Past this a body is refused before it is parsed.
MAX_JSON_CONTAINERS = 5_000_000
#: Below this size a body cannot hold that many containers (three bytes each at least).
_COUNT_ABOVE_BYTES = 3 * MAX_JSON_CONTAINERS


def check_containers(data: bytes) -> None:
    """Raise PayloadTooLarge when ``data`` could hold more than :data:`MAX_JSON_CONTAINERS`
    objects and arrays (each ``{`` or ``[`` counted, inside strings too: an upper bound,
    two passes of C over the bytes, only for bodies large enough to matter)."""
    if len(data) <= _COUNT_ABOVE_BYTES:
        return
    containers = data.count(b"{") + data.count(b"[")
    if containers > MAX_JSON_CONTAINERS:
        raise PayloadTooLarge(
            f"the body holds {containers:,} JSON objects and arrays; the limit is "
            f"{MAX_JSON_CONTAINERS:,} (about 500,000 make a 64 MB FHIR record): "
            "send the record in parts, one Bundle per patient")


def _bundle_entries(value: Any) -> int:
    if type(value) is dict and value.get("resourceType") == "Bundle":
        entries = value.get("entry")
        return len(entries) if type(entries) is list else 0
    return 0


def count_entries(document: Any, *, max_entries: int) -> None:
    """Raise PayloadTooLarge when the Bundles the service reads hold over ``max_entries``."""
    entries = _bundle_entries(document)
    if type(document) is dict:
        if document.get("resourceType") == "Parameters":
            parameters = document.get("parameter")
            for parameter in parameters if type(parameters) is list else ():
                if type(parameter) is dict:
                    entries += _bundle_entries(parameter.get("resource"))
        prefetch = document.get("prefetch")
        if type(prefetch) is dict:
            entries += sum(_bundle_entries(v) for v in prefetch.values())
    if entries > max_entries:
        raise PayloadTooLarge(f"the body holds more than {max_entries} Bundle entries")


def check_json_limits(document: Any, *, max_depth: int, max_entries: int) -> None:
    """Raise BadRequest when nesting exceeds ``max_depth``, PayloadTooLarge over ``max_entries``.

    Entries are summed over every Bundle in the document (a Parameters-wrapped Bundle,
    the Bundles of a CDS Hooks prefetch). The walk is iterative: no recursion limit.
    """
    # Level by level, with exact type checks and no per-node tuples: this walk visits
    # every node, and the per-node version cost 2-3x the JSON parse itself.
    entries = 0
    level: list[Any] = [document] if type(document) in (dict, list) else []
    depth = 1
    while level:
        if depth > max_depth:
            raise BadRequest(f"the JSON nests deeper than {max_depth} levels")
        below: list[Any] = []
        keep = below.append
        for node in level:
            if type(node) is dict:
                if node.get("resourceType") == "Bundle":
                    bundle_entries = node.get("entry")
                    if type(bundle_entries) is list:
                        entries += len(bundle_entries)
                        if entries > max_entries:
                            raise PayloadTooLarge(
                                f"the body holds more than {max_entries} Bundle entries"
                            )
                values = node.values()
            else:
                values = node
            for value in values:
                kind = type(value)
                if kind is dict or kind is list:
                    keep(value)
        level = below
        depth += 1
