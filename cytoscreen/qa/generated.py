"""The generated slides of a results folder with their ground truth and the patch scores the
run made: what the analysis scripts measure (``scripts/measure_*.py``).

Only slides screened with a patch cache and a model, whose truth (``<slide>.cells.json``
beside the slide) can be read, and whose cache holds scores made as the run made them
(``types.scores_key``: model and precision).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.slide_result import SlideResult, load_results
from cytoscreen.synth.slide import SlideTruth, load_truth
from cytoscreen.tiling.store import PatchStore
from cytoscreen.types import scores_key

ADEQUATE = 5000  # labelled cells of an adequate generated slide (the triage minimum)


@dataclass(frozen=True)
class ScoredSlide:
    result: SlideResult
    truth: SlideTruth
    store: PatchStore
    p: npt.NDArray[np.float64]  # per cached patch; NaN where none was scored

    @property
    def adequate_negative(self) -> bool:
        return self.truth.label == "negative" and len(self.truth.cells) >= ADEQUATE


def scored_slides(results: str | Path) -> Iterator[ScoredSlide]:
    """Each scored generated slide of ``results`` (see the module doc), in the folder's order."""
    for r in load_results(results):
        if r.path is None or r.cache is None or r.model_id is None:
            continue
        truth_path = Path(r.path).with_suffix(".cells.json")
        if not truth_path.is_file():  # not a generated slide (or its truth was not copied)
            continue
        truth = load_truth(truth_path)
        store = PatchStore.open(r.cache)
        scores = store.scores(scores_key(r.model_id, r.scoring))
        if scores is None:
            continue
        yield ScoredSlide(r, truth, store, np.asarray(scores.stage()[:], float))
