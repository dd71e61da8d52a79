"""The installed package stays inside itself: library code builds no path to the repository
around it (``parents[N]`` of a module, ``../shared``, ``configs/``, ``data_manifests/``).
Package data is reached through ``importlib.resources``; the command line's defaults for a
source checkout live in ``cli.py`` alone, taken against the current directory."""

from __future__ import annotations

import re
from pathlib import Path

import cytoscreen

PACKAGE = Path(cytoscreen.__file__).parent
CLI_ONLY = {"cli.py"}
# a path built from a module's location up out of the package, or to the repository's folders
OUTSIDE = [
    re.compile(r"__file__\)?[^\n]*\.parents\["),
    re.compile(r"__file__\)?[^\n]*\.parent\.parent\.parent"),
    re.compile(r"\.parents\[\d\]\.parent"),
    re.compile(r"[\"']\.\./shared"),
    re.compile(r"[\"']shared[\"']\s*/"),
    re.compile(r"[\"']configs[\"']\s*/|Path\([\"']configs/"),
    re.compile(r"[\"']data_manifests[\"']\s*/|Path\([\"']data_manifests/"),
]
# Allowed, and why: the cell kit looks for the full CRIC set in $CYTOSCREEN_CRIC_DIR, then
# beside the *current directory* (documented in synth/kit.py and docs/usage.md; the scripts of
# a source checkout run from its root rely on it), never beside the package.
ALLOWED = {("synth/kit.py", 'candidates.append(Path.cwd().parent / "shared" / "data" / "cric")')}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines of code, docstrings and comments left out roughly (a line inside triple quotes or
    after ``#``)."""
    out, in_doc = [], False
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        quotes = line.count('"""') + line.count("'''")
        if in_doc or quotes:
            if quotes % 2:
                in_doc = not in_doc
            continue
        out.append((no, line.split("#", 1)[0]))
    return out


def test_library_code_builds_no_path_outside_the_package() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() in CLI_ONLY:
            continue
        for no, line in _code_lines(path):
            name = path.relative_to(PACKAGE).as_posix()
            if any(p.search(line) for p in OUTSIDE) and (name, line.strip()) not in ALLOWED:
                found.append(f"{path.relative_to(PACKAGE)}:{no}: {line.strip()}")
    assert not found, "\n".join(found)


def test_package_data_lies_inside_the_package() -> None:
    from cytoscreen.scoring.card import BUNDLED_MODEL_DIR
    from cytoscreen.synth.kit import BUNDLED_KIT

    for folder in (BUNDLED_KIT, BUNDLED_MODEL_DIR):
        assert folder.resolve().is_relative_to(PACKAGE.resolve()), folder
    assert (BUNDLED_KIT / "manifest.csv").is_file()


def test_the_pattern_catches_what_it_is_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        'REPO = Path(__file__).resolve().parents[2]\nX = REPO.parent / "shared" / "data"\n'
        'Y = Path("../shared/data/cric")\n',
        encoding="utf-8",
    )
    hits = [line for _, line in _code_lines(bad) if any(p.search(line) for p in OUTSIDE)]
    assert len(hits) == 3
