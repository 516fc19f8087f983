"""``GET /source-attributes``: the rule set's source attributes as a page (HTML).

The Flask adapter over :mod:`service.publication`, which stays free of the web (the
rule profiles build their Library with it at start)."""

from __future__ import annotations

from flask import Blueprint, Response

from .edge.running import runtime
from .publication.page import source_attributes_page, style_hash

bp = Blueprint("publication", __name__)

PAGE_PATH = "/source-attributes"


@bp.get(PAGE_PATH)
def source_attributes() -> Response:
    rules = runtime().profiles.rules
    library_id = rules.publication.library.rsplit("/", 1)[-1]
    html = source_attributes_page(rules, library_path=f"fhir/Library/{library_id}")
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src {style_hash()}; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'")
    response.headers["Cache-Control"] = "no-cache"
    return response
