"""UCUM unit conversion for lab values, with ucumvert (a UCUM grammar on top of pint).

The library parses a UCUM code in about 1-2 ms, so each unit string is parsed once
per process and its conversion factor cached; the work per Observation is a dict
lookup. Lab habits that are not UCUM (``IU/mL`` for ``[IU]/mL``, ``K/uL``) are
mapped by alias tables in the lab rules before parsing. Glucose mass <-> molar is
not dimensional, so it is done here with the molar mass the lab rules give.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from typing import Any

# A unit longer than this, or with characters UCUM never uses, is not parsed at all:
# the parser is the expensive step and the strings come from outside.
MAX_UNIT_LENGTH = 40
_UCUM_CHARS = re.compile(r"^[A-Za-z0-9\[\]{}()/.*^%'_+\-]+$")
_CACHE_SIZE = 2048
_EXACT = 1e-9


class UnitError(ValueError):
    """A unit that is not UCUM, or that does not convert to the unit wanted."""


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str


@cache
def _registry() -> Any:
    # Loaded once per process (about 1.5 s): at rule loading, not on a request.
    from ucumvert import PintUcumRegistry  # type: ignore[import-untyped]

    return PintUcumRegistry()


def normalise_unit(unit: str) -> str:
    """Spell a unit as UCUM does where labs commonly differ (micro sign, stray spaces)."""
    return unit.strip().replace("\u00b5", "u").replace("\u03bc", "u").replace(" ", "")


class UnitConverter:
    """Conversion factors between UCUM units, each pair computed once and cached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parse_lock = threading.Lock()  # the parser and pint's caches are not thread-safe
        # A failure is cached as its message: a fresh UnitError is raised each time
        # (re-raising one instance would grow its traceback on every request).
        self._quantities: OrderedDict[str, Any | _Failure] = OrderedDict()
        self._factors: dict[tuple[str, str], float | _Failure] = {}

    def _quantity(self, unit: str) -> Any:
        with self._lock:
            found = self._quantities.get(unit)
            if found is not None:
                self._quantities.move_to_end(unit)
        if found is None:
            with self._parse_lock:
                found = self._parse(unit)
            with self._lock:
                self._quantities[unit] = found
                if len(self._quantities) > _CACHE_SIZE:
                    self._quantities.popitem(last=False)
        if isinstance(found, _Failure):
            raise UnitError(found.message)
        return found

    @staticmethod
    def _parse(unit: str) -> Any:
        if not unit:
            return _Failure("no unit")
        if len(unit) > MAX_UNIT_LENGTH or not _UCUM_CHARS.match(unit):
            return _Failure(f"'{unit[:MAX_UNIT_LENGTH]}' is not a UCUM unit")
        try:
            quantity = _registry().from_ucum(unit)
            _ = quantity.dimensionality  # an annotation alone parses to a bare token
        except Exception:  # any failure of the library means "not UCUM"
            return _Failure(f"'{unit}' is not a UCUM unit")
        return quantity

    def check(self, unit: str) -> None:
        """Raise :class:`UnitError` unless ``unit`` is a UCUM unit."""
        self._quantity(unit)

    def factor(self, unit: str, target: str) -> float:
        """Return f such that x ``unit`` = x * f ``target``; raise UnitError if none."""
        if unit == target:
            return 1.0
        key = (unit, target)
        cached = self._factors.get(key)
        if cached is None:
            cached = self._compute(unit, target)
            with self._lock:
                if len(self._factors) > _CACHE_SIZE:
                    self._factors.clear()
                self._factors[key] = cached
        if isinstance(cached, _Failure):
            raise UnitError(cached.message)
        return cached

    def _compute(self, unit: str, target: str) -> float | _Failure:
        try:
            source, wanted = self._quantity(unit), self._quantity(target)
        except UnitError as exc:
            return _Failure(str(exc))
        try:
            with self._parse_lock:
                ratio = (source / wanted).to("dimensionless")
            factor = float(ratio.magnitude)
        except Exception:  # pint's DimensionalityError and kin
            return _Failure(f"'{unit}' does not convert to '{target}'")
        if not math.isfinite(factor) or factor <= 0:
            return _Failure(f"'{unit}' gives no usable factor to '{target}'")
        return factor

    def is_same_unit(self, unit: str, target: str) -> bool:
        """True when two spellings name the same unit (factor exactly 1)."""
        try:
            return abs(self.factor(unit, target) - 1.0) < _EXACT
        except UnitError:
            return False

    def convertible(self, unit: str, target: str) -> bool:
        try:
            self.factor(unit, target)
        except UnitError:
            return False
        return True


@cache
def shared_converter() -> UnitConverter:
    """The process-wide converter: its cache outlives one screening."""
    return UnitConverter()
