"""What a running service holds: settings, the loaded rules, its clock, and one way to screen.

Both adapters (the FHIR operation and CDS Hooks) and the CLI screen through
:meth:`Runtime.screen`, so none re-implements a rule. Time and ids come in here, given
at construction (``today``, ``now``, ``new_id``): nothing below reads a clock, and a test
builds a runtime with a fixed one instead of patching a module.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings, default_profiles_dir
from .profiles import Profiles, load_profiles
from .screening import ScreeningResult, screen_bundle, unwrap_bundle
from .screening.facts import NotRead
from .screening.risk_assessment import risk_assessment
from .screening.strict import strict_problems


def utc_now() -> dt.datetime:
    """The system clock, in UTC: the default ``now`` of a runtime."""
    return dt.datetime.now(dt.UTC)


def utc_today() -> dt.date:
    """Today's date in UTC: the default ``today`` of a runtime."""
    return utc_now().date()


def new_uuid() -> str:
    """A random UUID: the default ``new_id`` of a runtime."""
    return str(uuid.uuid4())


def _date_of(now: Callable[[], dt.datetime]) -> Callable[[], dt.date]:
    def today() -> dt.date:
        return now().date()

    return today


@dataclass(slots=True)
class Runtime:
    settings: Settings
    profiles: Profiles
    today: Callable[[], dt.date] = utc_today
    now: Callable[[], dt.datetime] = utc_now
    new_id: Callable[[], str] = new_uuid

    @classmethod
    def start(
        cls,
        settings: Settings,
        *,
        today: Callable[[], dt.date] | None = None,
        now: Callable[[], dt.datetime] = utc_now,
        new_id: Callable[[], str] = new_uuid,
    ) -> Runtime:
        """Load the rules the settings name, with this clock (``today`` defaults to
        ``now``'s date) and id maker."""
        directory = Path(settings.profiles_dir) if settings.profiles_dir else default_profiles_dir()
        return cls(settings=settings, profiles=load_profiles(directory),
                   today=today or _date_of(now), now=now, new_id=new_id)

    def screen(self, body: Mapping[str, Any], *, as_of: dt.date | None = None
               ) -> list[ScreeningResult]:
        """Screen a Bundle as of a date (default: the runtime's today)."""
        day = as_of or self.today()
        return screen_bundle(
            body, self.profiles.rules, as_of=day, order_code=self.settings.order_coding
        )

    def strict_problems(self, body: Mapping[str, Any], *, as_of: dt.date | None = None
                        ) -> list[NotRead]:
        """Everything strict handling refuses a Bundle for (empty: screen it)."""
        return strict_problems(unwrap_bundle(body), self.profiles.rules,
                               as_of=as_of or self.today(),
                               order_code=self.settings.order_coding)

    def risk_assessment(self, result: ScreeningResult) -> dict[str, Any]:
        return risk_assessment(
            result,
            self.profiles.rules,
            computed_at=self.now(),
            resource_id=self.new_id(),
        )

    def result_resource(self, results: list[ScreeningResult]) -> dict[str, Any]:
        """One RiskAssessment, or a collection Bundle of them for several patients."""
        assessments = [self.risk_assessment(r) for r in results]
        if len(assessments) == 1:
            return assessments[0]
        return self.collection(assessments)

    def collection(self, resources: list[dict[str, Any]]) -> dict[str, Any]:
        """A collection Bundle of ``resources``, stamped with the runtime's clock."""
        return {
            "resourceType": "Bundle",
            "id": self.new_id(),
            "type": "collection",
            "timestamp": self.now().isoformat(timespec="seconds"),
            "entry": [
                {"fullUrl": f"urn:uuid:{r.get('id') or self.new_id()}", "resource": r}
                for r in resources
            ],
        }
