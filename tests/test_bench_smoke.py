"""The benchmark runs: a tiny generated bundle through the screening benchmark (not timed)."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from bench.load import cds_request
from bench.screening import Case, measure, replicated_bundle, table, verdict
from service.config import load_settings
from service.profiles import Profiles
from service.runtime import Runtime

from .conftest import SCENARIOS, load_json

SOURCE = SCENARIOS / "classic-infant-boy-triad.json"


@pytest.fixture(scope="module")
def tiny() -> Case:
    source = load_json(SOURCE)["bundle"]
    data = replicated_bundle([source], target_bytes=20_000)
    return Case("tiny", data, len(orjson.loads(data)["entry"]))


def test_generated_bundle_is_one_patient_with_fresh_ids(tiny: Case) -> None:
    bundle = orjson.loads(tiny.data)
    entries = bundle["entry"]
    assert len(tiny.data) >= 20_000
    kinds = Counter(e["resource"]["resourceType"] for e in entries)
    assert kinds["Patient"] == 1 and kinds["Condition"] == len(entries) - 1
    assert len({e["fullUrl"] for e in entries}) == len(entries)
    ids = [e["resource"]["id"] for e in entries]
    assert len(set(ids)) == len(ids)
    patient = entries[0]
    owner = {f"Patient/{patient['resource']['id']}", patient["fullUrl"]}
    assert all(e["resource"]["subject"]["reference"] in owner for e in entries[1:])
    assert replicated_bundle([load_json(SOURCE)["bundle"]], target_bytes=20_000) == tiny.data


def test_screening_benchmark_gives_medians_and_ratios(tiny: Case, profiles: Profiles) -> None:
    runtime = Runtime(settings=load_settings(), profiles=profiles)
    timing = measure(tiny, runtime, repeats=1, validate_repeats=1)
    assert timing.size_bytes == len(tiny.data) and timing.entries == tiny.entries
    assert timing.loads_s > 0 and timing.loads_gc_off_s > 0 and timing.screen_s > 0
    assert timing.validate_s is not None and timing.validate_s > 0
    assert timing.screen_over_loads == pytest.approx(timing.screen_s / timing.loads_s)
    assert timing.validate_over_screen == pytest.approx(timing.validate_s / timing.screen_s)
    assert "| tiny |" in table([timing])
    assert "target <= 3x" in verdict(timing)
    with pytest.raises(ValueError):
        measure(tiny, runtime, repeats=0, validate_repeats=0)


def test_cds_prefetch_holds_the_childs_resources_as_searchsets(tiny: Case) -> None:
    bundle = orjson.loads(tiny.data)
    call = cds_request(bundle)
    patient_id = bundle["entry"][0]["resource"]["id"]
    assert call["hook"] == "patient-view" and call["context"]["patientId"] == patient_id
    prefetch = call["prefetch"]
    assert prefetch["patient"]["resourceType"] == "Patient"
    conditions = prefetch["conditions"]
    assert conditions["type"] == "searchset" and conditions["total"] == len(bundle["entry"]) - 1
    assert prefetch["observations"]["total"] == 0 and prefetch["orders"]["entry"] == []
