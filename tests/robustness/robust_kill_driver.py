"""Run a screen in its own process, optionally slowed so a test can kill it with SIGKILL.

usage: python robust_kill_driver.py MODE INPUT OUT CONFIG MODEL   (MODE: plain|tiling|scoring)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import robust_crash_helper

import cytoscreen.pipeline as pipeline
import cytoscreen.stages as stages
from cytoscreen.config import load_config


def _slow_scoring(marks: Path) -> None:
    from cytoscreen.scoring.infer import Scorer

    original = Scorer.predict
    calls = iter(range(1_000_000))

    def predict(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        (marks / f"scored-{next(calls)}").touch()
        time.sleep(0.3)
        return out

    Scorer.predict = predict  # type: ignore[method-assign]


def main() -> None:
    mode, inputs, out, config, model = sys.argv[1:6]
    if mode == "tiling":
        stages.tile_slide = robust_crash_helper.tile_slowly
    elif mode == "scoring":
        _slow_scoring(Path(os.environ["ROBUST_MARKS"]))
    report = pipeline.screen([Path(inputs)], Path(out), load_config(config), model_dir=model)
    sys.exit(1 if report.n_failed else 0)


if __name__ == "__main__":
    main()
