"""Instructions spent screening the Synthea bundles, for callgrind on a noisy machine.

Wall-clock time on a shared 2-core machine moves by 2x between runs; instruction
counts do not. Run the same tree twice under callgrind, once to ``load`` (rules,
ValueSets and the parsed bundles) and once to ``screen`` (the same, then every bundle
screened once); the difference is what screening costs::

    valgrind --tool=callgrind .venv/bin/python -m bench.instructions load
    valgrind --tool=callgrind .venv/bin/python -m bench.instructions screen

To compare two versions, run both modes with ``PYTHONPATH`` pointing at each tree.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import orjson

from service.config import default_profiles_dir
from service.profiles import load_profiles
from service.screening import screen_bundle

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea"
AS_OF = dt.date(2026, 11, 30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["load", "screen"])
    parser.add_argument("--synthea", type=Path, default=SYNTHEA)
    args = parser.parse_args(argv)
    rules = load_profiles(default_profiles_dir()).rules
    bodies = [orjson.loads(p.read_bytes()) for p in sorted(args.synthea.glob("*.json"))]
    if args.mode == "screen":
        for body in bodies:
            screen_bundle(body, rules, as_of=AS_OF)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
