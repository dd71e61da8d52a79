"""Training examples: CRIC cell crops rendered as patches, and any list of labelled patches
(pathologist reviews arrive that way). Splits are by cell (cric_cell_id), never by patch."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

from cytoscreen.errors import BadManifest
from cytoscreen.training.render import Sprite, cell_sprite, debris_sprite, render_patch

BETHESDA = ("NILM", "ASC-US", "LSIL", "ASC-H", "HSIL", "SCC")
BACKGROUND = "background"  # category of near-empty crops (their label describes a missing cell)
CRIC_COLUMNS = {"path", "bethesda", "abnormal", "cric_cell_id", "near_empty"}


@dataclass(frozen=True)
class CricCell:
    path: Path
    bethesda: str
    abnormal: bool
    cell_id: str
    near_empty: bool

    @property
    def label(self) -> int:
        """0 = negative (NILM or background), 1 = abnormal (ASC-US or worse, cell present)."""
        return int(self.abnormal and not self.near_empty)

    @property
    def category(self) -> str:
        return BACKGROUND if self.near_empty else self.bethesda

    @property
    def group(self) -> str:
        return f"cric:{self.cell_id}"


@dataclass(frozen=True)
class LabelledPatch:
    """A patch already at the model's resolution (RGB uint8, patch_px square) with its label."""

    image: npt.NDArray[np.uint8]
    label: int
    group: str  # split unit: cell / field / review id
    category: str = ""
    source: str = "review"


Example = CricCell | LabelledPatch


def read_cric_manifest(manifest: str | Path) -> list[CricCell]:
    """Rows of the CRIC manifest; problems are reported together, by row."""
    manifest = Path(manifest)
    root = manifest.parent
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = CRIC_COLUMNS - set(reader.fieldnames or [])
            if missing:
                raise BadManifest(f"missing columns {sorted(missing)}", slide=manifest)
            rows = list(reader)
    except FileNotFoundError:
        raise BadManifest("manifest not found", slide=manifest) from None
    cells, problems = [], []
    for i, row in enumerate(rows, start=2):
        path = root / row["path"]
        if row["bethesda"] not in BETHESDA:
            problems.append(f"row {i}: unknown Bethesda category {row['bethesda']!r}")
        elif row["abnormal"] not in ("0", "1") or row["near_empty"] not in ("0", "1"):
            problems.append(f"row {i}: abnormal and near_empty must be 0 or 1")
        elif (row["abnormal"] == "1") != (row["bethesda"] != "NILM"):
            problems.append(f"row {i}: abnormal={row['abnormal']} contradicts {row['bethesda']}")
        elif not path.is_file():
            problems.append(f"row {i}: no file {path}")
        else:
            cells.append(
                CricCell(
                    path,
                    row["bethesda"],
                    row["abnormal"] == "1",
                    row["cric_cell_id"],
                    row["near_empty"] == "1",
                )
            )
    if problems:
        raise BadManifest("; ".join(problems[:10]), slide=manifest)
    return cells


def label_of(ex: Example) -> int:
    return ex.label


def split_by_group(
    examples: Sequence[Example], val_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold out ~val_fraction of the groups, label-stratified; no group is on both sides."""
    n_splits = max(2, round(1.0 / val_fraction))
    labels = np.array([label_of(e) for e in examples])
    groups = np.array([e.group for e in examples])
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(examples)), labels, groups))
    return [examples[i] for i in train_idx], [examples[i] for i in val_idx]


def class_counts(examples: Sequence[Example], classes: Sequence[str]) -> dict[str, int]:
    counts = Counter(label_of(e) for e in examples)
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def category_counts(examples: Sequence[Example]) -> dict[str, int]:
    return dict(sorted(Counter(e.category for e in examples).items()))


class PatchDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Examples as uint8 HWC patches -> augmented -> uint8 CHW tensors (normalised on device).

    A CRIC cell is drawn as a slide patch (``render.render_patch``): its own sprite off-centre
    plus 0-3 NILM neighbours taken from this dataset's own NILM cells (so no cell crosses
    splits), on procedural background. A near-empty crop becomes debris texture, or with
    probability ``empty_p`` an empty background patch; both are negatives. Training draws a
    fresh layout every call; evaluation draws item ``i`` identically every time.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        *,
        patch_px: int,
        crop_mpp: float,
        mpp: float,
        transform: Callable[..., dict[str, Any]] | None = None,
        train: bool,
        seed: int = 0,
        neighbour_p: Sequence[float] = (0.4, 0.25, 0.2, 0.15),
        empty_p: float = 0.3,
    ) -> None:
        self.examples = list(examples)
        self.patch_px = patch_px
        self.crop_mpp = crop_mpp
        self.mpp = mpp
        self.transform = transform
        self.train = train
        self.seed = seed
        self.neighbour_p = np.asarray(neighbour_p, float) / float(sum(neighbour_p))
        self.empty_p = empty_p
        self._nilm = [
            i
            for i, e in enumerate(self.examples)
            if isinstance(e, CricCell) and e.bethesda == "NILM" and not e.near_empty
        ]
        self._sprites: dict[int, Sprite] = {}
        self._eval_cache: dict[int, npt.NDArray[np.uint8]] = {}  # eval patches never change
        self._calls = 0

    def __len__(self) -> int:
        return len(self.examples)

    def sprite(self, i: int) -> Sprite:
        """Sprite of CRIC example ``i`` at the patch resolution (made once, then cached)."""
        sp = self._sprites.get(i)
        if sp is None:
            ex = self.examples[i]
            assert isinstance(ex, CricCell)
            crop = np.asarray(Image.open(ex.path).convert("RGB"))
            make = debris_sprite if ex.near_empty else cell_sprite
            sp = self._sprites[i] = make(crop, self.crop_mpp, self.mpp)
        return sp

    def patch(self, i: int) -> npt.NDArray[np.uint8]:
        ex = self.examples[i]
        if isinstance(ex, LabelledPatch):
            if ex.image.shape != (self.patch_px, self.patch_px, 3):
                raise BadManifest(
                    f"patch is {ex.image.shape}, expected ({self.patch_px}, {self.patch_px}, 3)",
                    slide=ex.group,
                )
            return ex.image
        if not self.train and i in self._eval_cache:
            return self._eval_cache[i]
        if self.train:
            self._calls += 1
            rng = np.random.default_rng([self.seed, i, self._calls])
        else:
            rng = np.random.default_rng([self.seed, i])
        k = int(rng.choice(len(self.neighbour_p), p=self.neighbour_p))
        pool = [j for j in self._nilm if j != i]
        picks = rng.choice(len(pool), size=min(k, len(pool)), replace=False) if pool else ()
        neighbours = [self.sprite(pool[int(j)]) for j in picks]
        main: Sprite | None = self.sprite(i)
        if ex.near_empty and rng.random() < self.empty_p:
            main = None
        img = render_patch(main, neighbours, patch_px=self.patch_px, rng=rng, mpp=self.mpp)
        if not self.train:
            self._eval_cache[i] = img
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.patch(i)
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return tensor, label_of(self.examples[i])
