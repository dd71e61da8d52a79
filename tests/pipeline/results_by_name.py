"""Test helper: screened results keyed by the slide file's stem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cytoscreen.slide_result import SlideResult


def by_name(results: Sequence[SlideResult | dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each result as its JSON object (records as written, results.json entries as read)."""
    objs = [r.to_json() if isinstance(r, SlideResult) else r for r in results]
    return {Path(r["path"]).stem: r for r in objs}
