"""Real-shaped records: every Synthea bundle screens low, with its labs read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from service.profiles import Profiles
from service.screening import screen_bundle

from .conftest import load_json, synthea_files

FILES = synthea_files()
LAB_CODES_IN_SYNTHEA = ("2339-0", "4548-4", "1751-7")


@pytest.mark.skipif(not FILES, reason="../shared/data/synthea is not beside the project")
def test_every_synthea_bundle_screens_low_and_its_labs_are_read(profiles: Profiles) -> None:
    judged: dict[str, int] = dict.fromkeys(LAB_CODES_IN_SYNTHEA, 0)
    for path in FILES:
        for result in screen_bundle(load_json(path), profiles.rules, as_of=dt.date(2026, 11, 23)):
            assert result.tier == "low", f"{Path(path).name}: {result.findings.criteria}"
            assert not result.findings.criteria, Path(path).name
            for item in (*result.findings.not_counted, *result.findings.shown):
                text = item.what if hasattr(item, "what") else item.code_label
                for code in LAB_CODES_IN_SYNTHEA:
                    judged[code] += f"LOINC {code}" in text
    # Glucose and HbA1c were judged (against the ADA thresholds), albumin shown.
    assert all(judged.values()), judged
