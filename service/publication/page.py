"""The source-attributes page: the same facts as the rule set's Library, for people.

Rendered with Jinja (autoescaped) from the rule set; no script, one style block whose
hash the page's Content-Security-Policy allows.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from jinja2 import Environment, PackageLoader, select_autoescape

from ..screening import RuleSet
from .attributes import source_attributes

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;margin:0;background:#fff}"
    "main{max-width:72rem;margin:0 auto;padding:1rem 1.5rem}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{border:1px solid #8c8c8c;padding:.4rem .6rem;text-align:left;vertical-align:top}"
    "thead th{background:#e8edf5}caption{text-align:left;font-weight:600;padding:.4rem 0}"
    "a{color:#0b4f9c}.supports{color:#3d3d3d}.use{white-space:nowrap}"
)


def style_hash() -> str:
    """The CSP source allowing the page's one style block."""
    digest = hashlib.sha256(STYLE.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@cache
def _environment() -> Environment:
    return Environment(loader=PackageLoader("service.publication", "templates"),
                       autoescape=select_autoescape(["html"]))


def source_attributes_page(rules: RuleSet, *, library_path: str) -> str:
    """The HTML page of the rule set's source attributes."""
    publication = rules.publication
    elements = {e.element: e for e in publication.data_elements}
    return _environment().get_template("source-attributes.html").render(
        rules=rules, publication=publication, attributes=source_attributes(rules),
        sex=elements["sex"], birth=elements["date of birth"], style=STYLE,
        library_path=library_path)
