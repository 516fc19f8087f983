"""``ipex-screen population``: check the arguments, fetch when asked, screen, say what was done."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from ..config import load_settings
from .run import PopulationRequest, screen_export
from .source import SourceError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def population(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if (args.source is None) == (args.from_url is None):
        print("ipex-screen population: give either SOURCE or --from URL (not both)",
              file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings()
    workers = args.workers or settings.population_workers or os.cpu_count() or 1
    if workers < 1:
        print("ipex-screen population: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    request = PopulationRequest(
        out=args.out,
        as_of=args.as_of or dt.datetime.now(dt.UTC).date(),
        engine=args.engine,
        flagged_only=args.flagged_only,
        workers=workers,
    )
    export = None
    try:
        if args.from_url is not None:
            from .bulk.fetch import BulkError, fetch_export

            try:
                fetched = fetch_export(args.from_url, args.out / "export", settings)
            except BulkError as exc:
                print(f"ipex-screen population: {exc}", file=sys.stderr)
                return EXIT_FAILED
            source, export = fetched.manifest_path, fetched.summary()
        else:
            source = Path(args.source)
        summary = screen_export(source, request, settings, export=export)
    except SourceError as exc:
        print(f"ipex-screen population: {exc}", file=sys.stderr)
        return EXIT_FAILED
    patients = summary["patients"]
    print(f"screened {patients['screened']:,} of {patients['inExport']:,} patients as of "
          f"{summary['asOf']}: {patients['flagged']:,} flagged, "
          f"{summary['unusable']['total']:,} unusable lines or patients; outputs in {args.out}",
          file=sys.stderr)
    return EXIT_OK
