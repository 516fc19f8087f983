"""The README's settings table names every ``IPEX_`` variable the service reads."""

from __future__ import annotations

import re
from pathlib import Path

from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _readme_settings() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(IPEX_[A-Z0-9_]+)` \| ([^|]+) \|", section, flags=re.M)
    return {name: default.strip() for name, default in rows}


def test_every_setting_the_service_reads_is_in_the_readme_table() -> None:
    source = (ROOT / "service" / "config.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"(IPEX_[A-Z0-9_]+)"', source))
    assert len(read) >= 13
    table = _readme_settings()
    assert sorted(read - set(table)) == []
    assert sorted(set(table) - read) == []


def test_the_readme_defaults_are_the_settings_defaults() -> None:
    table = _readme_settings()
    defaults = Settings()
    for name, default in table.items():
        field = name.removeprefix("IPEX_").lower()
        value = getattr(defaults, field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert default == f"`{value:g}`", name
        elif isinstance(value, str):
            assert default == f"`{value}`", name
        else:
            assert value in (None, ()), name
