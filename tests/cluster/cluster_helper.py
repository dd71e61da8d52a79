"""Importable (by name) on the test cluster's workers, whose PYTHONPATH holds this folder and
tests/robustness: worker plugins that change what a worker does, for one test.

- ``CrashNamedSlides``: the tiling step crashes natively (SIGSEGV in the tiling child) for
  slides whose file name says ``segfault``, as a broken native decoder would;
- ``HoldMidSlide``: after a slide's field files are written (its record not yet), the worker
  leaves a mark naming its process and address, then pauses, so a test can kill it mid-slide.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class CrashNamedSlides(WorkerPlugin):
    name = "test-crash-named-slides"

    def setup(self, worker: Any) -> None:
        import robust_crash_helper  # tests/robustness, on the workers' PYTHONPATH

        import cytoscreen.stages as stages

        stages.tile_slide = robust_crash_helper.tile_or_crash  # type: ignore[assignment]


class HoldMidSlide(WorkerPlugin):
    name = "test-hold-mid-slide"

    def __init__(self, marks: str, hold_s: float) -> None:
        self.marks, self.hold_s = marks, hold_s

    def setup(self, worker: Any) -> None:
        import cytoscreen.stages as stages

        original = getattr(stages.write_fields, "__wrapped__", stages.write_fields)
        marks, hold_s, address = Path(self.marks), self.hold_s, worker.address

        def write_fields(out: Path, slide_id: str, *args: Any, **kwargs: Any) -> Any:
            rows = original(out, slide_id, *args, **kwargs)
            mark = {"pid": os.getpid(), "worker": address, "slide": slide_id}
            (marks / f"{slide_id}-{os.getpid()}.json").write_text(json.dumps(mark))
            time.sleep(hold_s)
            return rows

        write_fields.__wrapped__ = original  # type: ignore[attr-defined]
        stages.write_fields = write_fields  # type: ignore[assignment]
        self._original = original

    def teardown(self, worker: Any) -> None:
        import cytoscreen.stages as stages

        stages.write_fields = self._original  # type: ignore[assignment]


def models_loaded(dask_worker: Any) -> int:
    """How many times this worker loaded a model for cytoscreen (run by ``Client.run``)."""
    plugin = dask_worker.plugins.get("cytoscreen-scorer")
    return int(getattr(plugin, "loads", 0))
