"""``ipex-screen``: serve the service (gunicorn) or screen Bundle files with no server."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .config import ConfigError, load_settings
from .edge.errors import operation_outcome
from .profiles import ProfilesError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("ipex_screen")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipex-screen",
        description="Screen FHIR records for IPEX syndrome and recommend FOXP3 testing.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the production server (gunicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes (default IPEX_WORKERS, else 2)")
    screen = sub.add_parser(
        "screen", help="screen FHIR Bundle files (or - for stdin)",
        description="Screen FHIR Bundle files. One file prints its RiskAssessment (a "
                    "collection Bundle of them when it holds several patients); several "
                    "files print one collection Bundle of every RiskAssessment, each "
                    "entry's fullUrl naming its file and patient (file:///path#Patient/x). "
                    "A scenario or published-case file of tests/data/ is screened as its "
                    "test screens it: its bundle, as of its asOf unless --as-of is given.")
    screen.add_argument("files", nargs="+", metavar="FILE")
    screen.add_argument("--as-of", type=_date, default=None,
                        help="screen as of this date (YYYY-MM-DD; default today)")
    screen.add_argument("--explain", action="store_true",
                        help="print the findings of every patient of every file (what "
                             "counted, what did not and why, what could not be read) instead "
                             "of the FHIR result: one object for one patient, else a list, "
                             "each naming its file")
    report = sub.add_parser(
        "feedback-report",
        help="write an HTML report of CDS card feedback from the state store (no patient data)")
    report.add_argument("--out", default="feedback-report.html",
                        help="the HTML file to write (default feedback-report.html)")
    report.add_argument("--since", type=_date, default=None,
                        help="only cards and answers from this date (YYYY-MM-DD)")
    _population_parser(sub)
    return parser


def _population_parser(sub: Any) -> None:
    population = sub.add_parser(
        "population", help="screen a FHIR Bulk Data export (NDJSON) into a worklist and report",
        description="Screen every patient of a Bulk Data export (a directory of NDJSON files, "
                    "or a manifest), or fetch the export first with --from.")
    population.add_argument("source", nargs="?", metavar="SOURCE",
                            help="directory of *.ndjson[.gz] files, one such file, or a "
                                 "Bulk Data manifest (JSON)")
    population.add_argument("--from", dest="from_url", metavar="FHIR_GROUP_OR_BASE_URL",
                            help="run a Bulk Data export on this FHIR server (Group/ID, "
                                 "Patient, or the base URL) and screen it")
    population.add_argument("--out", required=True, type=Path, metavar="DIR",
                            help="where RiskAssessment.ndjson, flagged.csv, summary.json and "
                                 "report.html are written")
    population.add_argument("--engine", choices=("local", "spark"), default="local",
                            help="local: this machine's cores (default); spark: a Spark "
                                 "session (pip install ipex-screen[spark])")
    population.add_argument("--as-of", type=_date, default=None,
                            help="screen as of this date (YYYY-MM-DD; default today, UTC)")
    population.add_argument("--flagged-only", action="store_true",
                            help="write RiskAssessments of flagged patients only")
    population.add_argument("--workers", type=int, default=None,
                            help="worker processes of the local engine (default "
                                 "IPEX_POPULATION_WORKERS, else every core)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    try:
        if args.command == "serve":
            from .observability.logs import configure_logging

            configure_logging(level=load_settings().log_level)  # JSON from the first line
            from .serving.paths import prepare_metrics

            prepare_metrics()  # before the app (and prometheus_client) is imported
            from .server import serve

            return serve(host=args.host, port=args.port, workers=args.workers)
        if args.command == "feedback-report":
            return _feedback_report(args.out, since=args.since)
        if args.command == "population":
            from .population.command import population

            return population(args, parser)
        return _screen(args.files, as_of=args.as_of, explain=args.explain)
    except (ConfigError, ProfilesError) as exc:
        print(f"ipex-screen: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as handle:
        return handle.read()


def _file_url(name: str) -> str:
    return "file:///dev/stdin" if name == "-" else Path(name).resolve().as_uri()


def _test_case(name: str, body: Any, as_of: dt.date | None) -> tuple[Any, dt.date | None]:
    """A scenario or published-case file of ``tests/data/`` (a FHIR Bundle under
    ``bundle``, its screening date under ``asOf``) is screened as the test screens it:
    its Bundle, as of its date unless ``--as-of`` says otherwise. Anything else is
    returned as it is."""
    if not (isinstance(body, dict) and "resourceType" not in body
            and isinstance(body.get("bundle"), dict)
            and body["bundle"].get("resourceType") == "Bundle"):
        return body, as_of
    day = as_of
    if day is None and isinstance(body.get("asOf"), str):
        try:
            day = dt.date.fromisoformat(body["asOf"])
        except ValueError:
            day = None
    print(f"ipex-screen: {name}: a test case file: screening its bundle as of "
          f"{day.isoformat() if day else 'today'}"
          f"{'' if as_of else ' (its asOf; --as-of to change)' if day else ''}",
          file=sys.stderr)
    return body["bundle"], day


def _screen(files: list[str], *, as_of: dt.date | None, explain: bool) -> int:
    from .edge.fhir_json import parse_json
    from .runtime import Runtime
    from .screening import ScreeningError, ScreeningResult
    from .screening.explain import explain_result

    runtime = Runtime.start(load_settings())
    screened: list[tuple[str, list[ScreeningResult]]] = []
    failed = False
    for name in files:
        try:
            body, day = _test_case(name, parse_json(_read(name)), as_of)
            results = runtime.screen(body, as_of=day)
        except OSError as exc:
            failed = True
            _fail(name, f"cannot read the file: {exc.strerror or exc}", "not-found")
            continue
        except orjson.JSONDecodeError as exc:
            failed = True
            _fail(name, f"not valid JSON: {exc}", "invalid")
            continue
        except ScreeningError as exc:
            failed = True
            _fail(name, exc.diagnostics, "invalid")
            continue
        screened.append((name, results))
    payload: Any = None
    if explain:
        accounts = [{"file": name, **explain_result(r)} for name, results in screened
                    for r in results]
        payload = accounts[0] if len(accounts) == 1 and len(files) == 1 else accounts
    elif len(files) == 1 and screened:
        payload = runtime.result_resource(screened[0][1])
    elif screened:
        bundle = runtime.collection([runtime.risk_assessment(r) for _, results in screened
                                     for r in results])
        urls = [f"{_file_url(name)}#{r.patient.reference}" for name, results in screened
                for r in results]
        for entry, url in zip(bundle["entry"], urls, strict=True):
            entry["fullUrl"] = url
        payload = bundle
    if payload is not None:
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_FAILED if failed else EXIT_OK


def _feedback_report(out: str, *, since: dt.date | None) -> int:
    from .runtime import utc_now
    from .state import StateUnavailable, open_store

    settings = load_settings()
    if not settings.state_url and not Path(settings.state_db).is_file():
        print(f"ipex-screen: no state store at {settings.state_db} (set IPEX_STATE_DB to the "
              "service's file, or IPEX_STATE_URL)", file=sys.stderr)
        return EXIT_FAILED
    from .reports.report import feedback_report
    store = open_store(settings)
    try:
        html = feedback_report(store, generated_at=utc_now(), since=since)
    except StateUnavailable as exc:
        print(f"ipex-screen: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    Path(out).write_text(html, encoding="utf-8")
    print(f"feedback report written to {out}")
    return EXIT_OK


def _fail(name: str, text: str, code: str) -> None:
    outcome = operation_outcome(f"{name}: {text}", code=code)
    sys.stderr.write(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
