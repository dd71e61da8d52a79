"""Test helper: screened results keyed by the slide file's stem."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(r["path"]).stem: r for r in results}
