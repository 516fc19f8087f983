"""``ipex-screen``: serve the service (gunicorn) or screen Bundle files with no server."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from .config import ConfigError, load_settings
from .edge.errors import operation_outcome
from .profiles import ProfilesError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("ipex_screen")


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
    screen = sub.add_parser("screen", help="screen FHIR Bundle files (or - for stdin)")
    screen.add_argument("files", nargs="+", metavar="FILE")
    screen.add_argument("--as-of", type=dt.date.fromisoformat, default=None,
                        help="screen as of this date (YYYY-MM-DD; default today)")
    screen.add_argument("--explain", action="store_true",
                        help="print the findings (what counted, what did not and why) "
                             "instead of the FHIR result")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    try:
        if args.command == "serve":
            from .observability.multiproc import prepare_multiproc_dir

            prepare_multiproc_dir()  # before the app (and prometheus_client) is imported
            from .server import serve

            return serve(host=args.host, port=args.port, workers=args.workers)
        return _screen(args.files, as_of=args.as_of, explain=args.explain)
    except (ConfigError, ProfilesError) as exc:
        print(f"ipex-screen: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as handle:
        return handle.read()


def _screen(files: list[str], *, as_of: dt.date | None, explain: bool) -> int:
    from .edge.fhir_json import parse_json
    from .runtime import Runtime
    from .screening import ScreeningError
    from .screening.explain import explain_result

    runtime = Runtime.start(load_settings())
    outputs: list[dict[str, Any]] = []
    failed = False
    for name in files:
        try:
            body = parse_json(_read(name))
            results = runtime.screen(body, as_of=as_of)
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
        if explain:
            outputs.extend(explain_result(r) for r in results)
        else:
            outputs.append(runtime.result_resource(results))
    if outputs:
        payload: Any = outputs[0] if len(files) == 1 else (
            outputs if explain else runtime.collection(outputs))
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_FAILED if failed else EXIT_OK


def _fail(name: str, text: str, code: str) -> None:
    outcome = operation_outcome(f"{name}: {text}", code=code)
    sys.stderr.write(orjson.dumps(outcome, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
