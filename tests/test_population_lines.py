"""The line reader gives every line the verdict of parsing it whole with orjson.

It checks each line as JSON but builds only the fields it needs (msgspec), falls back
on orjson when msgspec refuses a line, and checks UTF-8 apart. The reference here is
the obvious reader: ``orjson.loads`` of the whole line, then the same questions. Lines
are Synthea resources, damaged byte by byte and with odd values put in their fields.
The one documented difference: a number too large for a float, which orjson refuses,
goes unnoticed in a field the reader does not build (the line is then read, or passed
over, as the rest of it says; a line the rules read is refused by orjson later).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bulk_export import synthea_bundles
from service.population.lines import BAD_JSON, Keyed, LineReader, Other, Unusable, patient_id
from service.screening import passes_over

from .test_properties import EXAMPLES, RULES

Verdict = tuple[Any, ...] | None

LINES = sorted({orjson.dumps(entry["resource"]) for bundle in synthea_bundles()[:6]
                for entry in bundle["entry"]
                if entry["resource"]["resourceType"] in ("Patient", "Condition",
                                                         "Observation")})
ODD_BYTES = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\xff", b"\xc3", b"\xed",
             b"\x00", b"\x01", b"\t", b" ", b"1", b"e", b"-", b".", b"0", b"n"]
ODD_TOKENS = [b"1e400", b"-1e999", b"1" * 400 + b".0", b"12345678901234567890123", b"NaN",
              b'"\\ud800"', b'"\\ude00\\ud83d"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"\xf4\x90"',
              b"[" * 1100 + b"]" * 1100, b"[" * 600 + b"]" * 600, b'"\\x"', b"01", b".5",
              b"true", b"null", b'"\\u0000"', b'{"a":1,"a":2}']
ODD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=6) | st.sampled_from(["Patient/x1", "Patient/", "8867-4", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["coding", "system", "code", "text", "reference", "x"]), inner,
        max_size=3),
    max_leaves=6)


def reference(line: bytes) -> Verdict:
    """What the reader must say: the whole line parsed by orjson, then its questions."""
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError:
        return ("bad-json",) if line.strip() else None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return ("not-a-resource",)
    kind = resource["resourceType"]
    if kind == "Patient":
        rid = resource.get("id")
        keyed = isinstance(rid, str) and patient_id({"reference": f"Patient/{rid}"}) == rid
        return ("Patient", rid) if keyed else ("no-patient-id",)
    if kind not in ("Condition", "Observation", "ServiceRequest"):
        return ("other", kind)
    owner = patient_id(resource.get("subject"))
    if owner is None:
        return ("no-patient-subject",)
    return (kind, owner, passes_over(resource, RULES))


def verdict(line: bytes) -> Verdict:
    reader = LineReader(RULES)
    said = list(reader.read([(1, line)]))
    passed = reader.take_passed()
    if passed:
        ((owner, kind), numbers), = passed.items()
        assert not said and numbers == [1]
        return (kind, owner, True)
    if not said:
        return None
    ((_, _, found),) = said
    if isinstance(found, Keyed):
        if found.resource_type == "Patient":
            return ("Patient", found.patient_id)
        return (found.resource_type, found.patient_id, False)
    if isinstance(found, Unusable):
        return (found.kind,)
    assert isinstance(found, Other)
    return ("other", found.resource_type)


def _has_infinity(value: Any) -> bool:
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, dict):
        return any(_has_infinity(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_infinity(v) for v in value)
    return False


def _too_large_a_number(line: bytes) -> bool:
    """The documented difference: JSON that orjson refuses for a number no float holds."""
    def refuse(name: str) -> Any:
        raise ValueError(name)
    try:
        return _has_infinity(json.loads(line.decode(), parse_constant=refuse))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


def _same(line: bytes) -> None:
    expected, found = reference(line), verdict(line)
    if found != expected:
        assert expected == ("bad-json",) and _too_large_a_number(line), (line[:200], expected,
                                                                          found)


@pytest.mark.parametrize("line", LINES[:40], ids=lambda line: orjson.loads(line)["resourceType"])
def test_synthea_lines_get_the_verdict_of_a_full_parse(line: bytes) -> None:
    _same(line)
    assert verdict(line) is not None and verdict(line) != ("bad-json",)


@given(st.sampled_from(LINES), st.integers(0, 10_000), st.sampled_from(ODD_BYTES + ODD_TOKENS),
       st.sampled_from(["replace", "insert", "cut"]))
@settings(EXAMPLES, max_examples=max(EXAMPLES.max_examples, 400))
def test_damaged_lines_get_the_verdict_of_a_full_parse(line: bytes, at: int, odd: bytes,
                                                       how: str) -> None:
    at %= len(line)
    if how == "replace":
        line = line[:at] + odd + line[at + 1:]
    elif how == "insert":
        line = line[:at] + odd + line[at:]
    else:
        line = line[:at]
    _same(line)


@given(st.sampled_from(LINES),
       st.sampled_from(["resourceType", "id", "subject", "code", "component", "status",
                        "valueQuantity", "extension"]), ODD_VALUES)
@settings(EXAMPLES, max_examples=max(EXAMPLES.max_examples, 300))
def test_odd_values_get_the_verdict_of_a_full_parse(line: bytes, name: str, value: Any) -> None:
    resource = orjson.loads(line)
    resource[name] = value
    _same(orjson.dumps(resource))


@pytest.mark.parametrize(("line", "expected"), [
    (b'{"resourceType": "Observation", "note": "\xff"}', ("bad-json",)),  # not UTF-8
    (b'{"resourceType": "Observation", "note": "\xc0\xaf"}', ("bad-json",)),  # overlong
    (b'{"resourceType": "Observation", "note": "\\ud800"}', ("bad-json",)),  # lone surrogate
    (b'[{"resourceType": "Patient", "id": "p1"}]', ("not-a-resource",)),
    (b'{"resourceType": "Encounter", "x": ' + b"[" * 900 + b"]" * 900 + b"}",
     ("other", "Encounter")),  # deeper than msgspec goes: orjson decides
    (b" \t\r", None),
    # Keys given twice: the last one counts, for msgspec as for orjson.
    (b'{"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, '
     b'"code": {"coding": [{"system": "http://snomed.info/sct", "code": "46635009"}]}, '
     b'"code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}',
     ("Condition", "p1", True)),
    (b'{"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, '
     b'"code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}, '
     b'"code": {"coding": [{"system": "http://snomed.info/sct", "code": "46635009"}]}}',
     ("Condition", "p1", False)),
    (b'{"resourceType": "Observation", "subject": {"reference": "Patient/p1"}, '
     b'"subject": {"reference": "Group/g1"}, "code": {"coding": []}}',
     ("no-patient-subject",)),
    (b'{"resourceType": "Patient", "id": "p1", "id": "p 2"}', ("no-patient-id",)),
])
def test_what_only_the_fallbacks_or_the_last_key_decide(line: bytes, expected: Verdict) -> None:
    assert verdict(line) == reference(line) == expected
    if expected == ("bad-json",):
        assert BAD_JSON.kind == "bad-json"


def test_a_number_no_float_holds_goes_unnoticed_where_nothing_is_built() -> None:
    heart_rate = {"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
    line = orjson.dumps(heart_rate)[:-1] + b', "valueQuantity": {"value": 1e400}}'
    assert reference(line) == ("bad-json",)
    assert verdict(line) == ("Observation", "p1", True)
    # ... and where the reader builds the field, orjson decides as before.
    assert verdict(line.replace(b'"8867-4"', b"1e400")) == ("bad-json",)


def test_what_is_remembered_by_its_bytes_is_asked_again_for_another_type() -> None:
    """One reader over many lines: the verdict on a code for a Condition is not reused
    for an Observation with the same bytes, nor one patient's subject for another's."""
    t1d = b'{"coding": [{"system": "http://snomed.info/sct", "code": "46635009"}]}'
    lines = [b'{"resourceType": "%s", "subject": {"reference": "Patient/%s"}, "code": %s}'
             % (kind, pid, t1d) for kind in (b"Condition", b"Observation")
             for pid in (b"p1", b"p2")] * 3
    reader = LineReader(RULES)
    kept = [(n, found.resource_type, found.patient_id)
            for n, _, found in reader.read(enumerate(lines, 1)) if isinstance(found, Keyed)]
    # Type 1 diabetes is read as a diagnosis, not as a lab: Observations pass over.
    assert kept == [(n, "Condition", pid) for start in (1, 5, 9)
                    for n, pid in ((start, "p1"), (start + 1, "p2"))]
    assert reader.take_passed() == {("p1", "Observation"): [3, 7, 11],
                                    ("p2", "Observation"): [4, 8, 12]}
