"""Population screening as a Spark application: ``spark-submit`` this file.

    spark-submit --master yarn --deploy-mode client \\
        "$(python -c 'import service.population.spark_submit as m; print(m.__file__)')" \\
        /shared/export --out /shared/ipex-out --as-of 2025-09-01

The driver (client deploy mode) writes the four outputs to ``--out``; SOURCE must be
readable at the same path by the driver and every executor (a shared file system),
and ``ipex-screen`` (with its rules) must be installed in the executors' Python.
The session is the one spark-submit configures (master, executors, memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import load_settings
from .run import PopulationRequest, screen_export


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark-submit .../spark_submit.py",
                                     description="Screen a Bulk Data export on Spark.")
    parser.add_argument("source", type=Path, metavar="SOURCE")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--flagged-only", action="store_true")
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    existing = SparkSession.getActiveSession()
    session = existing or SparkSession.builder.appName("ipex-screen population").getOrCreate()
    try:
        summary = screen_export(args.source, PopulationRequest(
            out=args.out, as_of=args.as_of or dt.datetime.now(dt.UTC).date(), engine="spark",
            flagged_only=args.flagged_only), load_settings(), spark=session)
    finally:
        if existing is None:
            session.stop()
    patients = summary["patients"]
    print(f"screened {patients['screened']:,} of {patients['inExport']:,} patients: "
          f"{patients['flagged']:,} flagged; outputs in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
