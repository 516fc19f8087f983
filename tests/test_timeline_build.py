"""The committed build of the timeline app is what its sources build to.

``service/timeline/static`` is committed so the service serves the app without Node; a
change to ``timeline/`` without ``scripts/build-timeline`` would ship stale code. This
builds the sources again (vite, from the locked node_modules) and compares every file.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "timeline"
BUILT = ROOT / "service" / "timeline" / "static"


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_committed_build_is_what_the_sources_build_to(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    assert npm, "npm is needed (scripts/test installs the timeline's node_modules)"
    out = tmp_path / "static"
    subprocess.run([npm, "run", "build", "--silent", "--", "--outDir", str(out)],
                   cwd=SOURCES, check=True, capture_output=True, timeout=180)
    fresh, committed = _files(out), _files(BUILT)
    assert sorted(fresh) == sorted(committed), "run scripts/build-timeline and commit"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale committed build ({stale}): run scripts/build-timeline"


def test_the_pages_load_only_their_own_assets() -> None:
    for page in ("index.html", "launch.html"):
        html = (BUILT / page).read_text(encoding="utf-8")
        assert "http://" not in html and "https://" not in html, f"{page}: no CDN, no remote"
        for asset in BUILT.joinpath("assets").iterdir():
            if f"./assets/{asset.name}" in html:
                assert asset.stat().st_size > 0


def test_the_readme_shows_the_classic_triad_timeline() -> None:
    image = ROOT / "docs" / "img" / "timeline-classic.png"
    assert image.read_bytes().startswith(b"\x89PNG"), "the screenshot the README shows"
    assert "docs/img/timeline-classic.png" in (ROOT / "README.md").read_text(encoding="utf-8")
