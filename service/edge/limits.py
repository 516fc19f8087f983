"""Caps on what a parsed JSON body may look like.

The body size is capped before parsing (``IPEX_MAX_BODY_MB``, 413); after parsing,
:func:`check_json_limits` caps the nesting depth (400: no FHIR resource nests that
deep, so the body is malformed) and the number of Bundle entries (413: too much work).
"""

from __future__ import annotations

from typing import Any

from .errors import BadRequest, PayloadTooLarge


def check_json_limits(document: Any, *, max_depth: int, max_entries: int) -> None:
    """Raise BadRequest when nesting exceeds ``max_depth``, PayloadTooLarge over ``max_entries``.

    Entries are summed over every Bundle in the document (a Parameters-wrapped Bundle,
    the Bundles of a CDS Hooks prefetch). The walk is iterative: no recursion limit.
    """
    # Level by level, with exact type checks and no per-node tuples: this walk runs on
    # every request body, and the per-node version cost 2-3x the JSON parse itself.
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
