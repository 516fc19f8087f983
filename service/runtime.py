"""What a running service holds: settings and the loaded rules, and one way to screen.

Both adapters (the FHIR operation and CDS Hooks) and the CLI screen through
:meth:`Runtime.screen`, so none re-implements a rule.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings, default_profiles_dir
from .profiles import Profiles, load_profiles
from .screening import ScreeningResult, screen_bundle
from .screening.risk_assessment import risk_assessment


@dataclass(slots=True)
class Runtime:
    settings: Settings
    profiles: Profiles

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        directory = Path(settings.profiles_dir) if settings.profiles_dir else default_profiles_dir()
        return cls(settings=settings, profiles=load_profiles(directory))

    def screen(self, body: Mapping[str, Any], *, as_of: dt.date | None = None
               ) -> list[ScreeningResult]:
        """Screen a Bundle as of a date (default: today, UTC)."""
        day = as_of or dt.datetime.now(dt.UTC).date()
        return screen_bundle(
            body, self.profiles.rules, as_of=day, order_code=self.settings.order_coding
        )

    def risk_assessment(self, result: ScreeningResult) -> dict[str, Any]:
        return risk_assessment(
            result,
            self.profiles.rules,
            computed_at=dt.datetime.now(dt.UTC),
            resource_id=str(uuid.uuid4()),
        )

    def result_resource(self, results: list[ScreeningResult]) -> dict[str, Any]:
        """One RiskAssessment, or a collection Bundle of them for several patients."""
        assessments = [self.risk_assessment(r) for r in results]
        if len(assessments) == 1:
            return assessments[0]
        return collection(assessments)


def collection(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "collection",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "entry": [
            {"fullUrl": f"urn:uuid:{r.get('id') or uuid.uuid4()}", "resource": r}
            for r in resources
        ],
    }
