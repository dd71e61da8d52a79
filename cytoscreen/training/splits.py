"""Fixed train / val / test splits of the CRIC development cells, by ``cric_cell_id``.

The split file (``data_manifests/cric_splits.json``) is made once, deterministically from a seed,
and committed: training uses ``train``, model selection ``val``; ``test`` is held out for QA
(generated test slides draw only from it). Strata are (Bethesda class, near-empty), so every
split holds every class and its share of near-empty crops (which are background).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cytoscreen.errors import BadManifest
from cytoscreen.synth.slideset import largest_remainder
from cytoscreen.training.data import CricCell

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
DEFAULT_SPLITS_PATH = Path(__file__).resolve().parents[2] / "data_manifests" / "cric_splits.json"


@dataclass(frozen=True)
class CellSplits:
    """Which split each cric_cell_id belongs to."""

    seed: int
    fractions: tuple[float, float, float]
    ids: Mapping[str, frozenset[int]]  # split name -> cric_cell_ids

    def split_of(self, cell_id: int | str) -> str | None:
        cid = int(cell_id)
        return next((s for s in SPLITS if cid in self.ids[s]), None)

    def to_json(self, cells: Sequence[CricCell] = ()) -> str:
        """JSON text: ids per split (sorted) plus, when ``cells`` are given, counts per stratum."""
        doc: dict[str, object] = {
            "description": "CRIC development cells split by cric_cell_id, stratified by "
            "(Bethesda class, near_empty); near-empty crops are background in every split",
            "seed": self.seed,
            "fractions": dict(zip(SPLITS, self.fractions, strict=True)),
            "splits": {s: sorted(self.ids[s]) for s in SPLITS},
        }
        if cells:
            doc["counts"] = {
                s: dict(sorted(Counter(c.category for c in cells if int(c.cell_id) in ids).items()))
                for s, ids in self.ids.items()
            }
        return json.dumps(doc, indent=1) + "\n"


def make_cell_splits(
    cells: Sequence[CricCell],
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> CellSplits:
    """Partition the cells' ids into train/val/test, stratified by (Bethesda, near_empty)."""
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions}")
    strata: dict[tuple[str, bool], list[int]] = {}
    for c in cells:
        strata.setdefault((c.bethesda, c.near_empty), []).append(int(c.cell_id))
    rng = np.random.default_rng(seed)
    out: dict[str, set[int]] = {s: set() for s in SPLITS}
    for key in sorted(strata):
        ids = np.array(sorted(set(strata[key])), dtype=np.int64)
        ids = ids[rng.permutation(ids.size)]
        start = 0
        for name, k in zip(SPLITS, largest_remainder(ids.size, fractions), strict=True):
            out[name].update(int(i) for i in ids[start : start + k])
            start += k
    f = tuple(float(x) for x in fractions)
    return CellSplits(seed, (f[0], f[1], f[2]), {s: frozenset(v) for s, v in out.items()})


def load_cell_splits(path: str | Path = DEFAULT_SPLITS_PATH) -> CellSplits:
    """Read a split file written by ``CellSplits.to_json``; a cell in two splits is an error."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        ids = {s: frozenset(int(i) for i in doc["splits"][s]) for s in SPLITS}
        fr = doc["fractions"]
        fractions = (float(fr["train"]), float(fr["val"]), float(fr["test"]))
        seed = int(doc["seed"])
    except FileNotFoundError:
        raise BadManifest(
            "split file not found",
            slide=path,
            hint="write it with: python scripts/train_default_model.py --write-splits",
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadManifest(f"unreadable split file: {exc!r}", slide=path) from None
    shared = (ids["train"] & ids["val"]) | (ids["train"] & ids["test"]) | (ids["val"] & ids["test"])
    if shared:
        raise BadManifest(f"{len(shared)} cells are in two splits, e.g. {min(shared)}", slide=path)
    return CellSplits(seed, fractions, ids)


def apply_splits(
    cells: Sequence[CricCell], splits: CellSplits, *, source: str | Path = "cric manifest"
) -> dict[str, list[CricCell]]:
    """Cells grouped by split; a cell the split file does not know is an error."""
    out: dict[str, list[CricCell]] = {s: [] for s in SPLITS}
    unknown = []
    for c in cells:
        s = splits.split_of(c.cell_id)
        if s is None:
            unknown.append(c.cell_id)
        else:
            out[s].append(c)
    if unknown:
        raise BadManifest(
            f"{len(unknown)} cells are in no split (e.g. cric_cell_id {unknown[0]})",
            slide=source,
            hint="the manifest changed since the split file was written: write a new split file",
        )
    return out
