"""Every log record of the process, as the service's JSON lines (fixture: ``json_log``)."""

from __future__ import annotations

import io
import json
from typing import Any


class JsonLog:
    """Every record the process logs at DEBUG and above, as the service's JSON lines."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def raw_lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw_lines()]

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "ipex_screen.request"]
