"""Training examples: windows of virtual slides of the CRIC train fields (a cell among its real
neighbours, hard negatives among thousands of NILM cells), plus any list of labelled patches
(pathologist reviews, patches cut from written slides). CRIC fields are split by image, reviewed
patches by field (their ``group``), never by patch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.model_selection import StratifiedGroupKFold

from cytoscreen.errors import BadManifest
from cytoscreen.synth.patches import VirtualSlides
from cytoscreen.types import LabelledPatch as LabelledPatch  # re-exported

CONTEXT = "context"  # source kind of virtual-slide windows


def label_of(ex: LabelledPatch) -> int:
    return ex.label


def split_by_group(
    examples: Sequence[LabelledPatch], val_fraction: float, seed: int
) -> tuple[list[LabelledPatch], list[LabelledPatch]]:
    """Hold out ~val_fraction of the groups, label-stratified; no group is on both sides."""
    n_splits = max(2, round(1.0 / val_fraction))
    labels = np.array([label_of(e) for e in examples])
    groups = np.array([e.group for e in examples])
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(examples)), labels, groups))
    return [examples[i] for i in train_idx], [examples[i] for i in val_idx]


def class_counts(labels: Sequence[int], classes: Sequence[str]) -> dict[str, int]:
    counts = Counter(int(v) for v in labels)
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def category_counts(examples: Sequence[LabelledPatch]) -> dict[str, int]:
    return dict(sorted(Counter(e.category for e in examples).items()))


def mix_shares(
    kinds: Sequence[str], mix: Mapping[str, float] | None, *, context: bool = True
) -> dict[str, float]:
    """Share of each epoch's draws per source kind present; the context windows get the rest.
    A kind missing from ``mix`` is not drawn; ``mix`` None gives each kind present a quarter
    (at most three quarters together). Without context windows the shares of the kinds present
    are scaled to sum to 1."""
    present = sorted(set(kinds))
    if mix is None:  # each other source present gets a quarter of the draws (at most 3/4)
        mix = {k: 0.75 / max(len(present), 3) for k in present}
    shares = {k: float(mix.get(k, 0.0)) for k in present}
    total = sum(shares.values())
    if context and total >= 1.0:
        raise ValueError(f"mix {dict(mix or {})} leaves nothing for the context windows")
    if not context:
        if total <= 0:
            raise ValueError(f"mix {dict(mix or {})} draws from none of {present}")
        shares = {k: v / total for k, v in shares.items()}
    return {k: v for k, v in shares.items() if v > 0}


class TrainPatches(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """``epoch_size`` fresh draws per epoch: context windows (``positive_share`` of them holding
    an abnormal nucleus) and, by ``mix``, labelled patches of other sources (label-balanced
    within each kind; with ``slides`` None only those). uint8 HWC -> augmented -> uint8 CHW
    tensors (normalised on the device). Every draw is seeded by (seed, item, call), so a run
    is reproducible."""

    def __init__(
        self,
        slides: VirtualSlides | None,
        extra: Sequence[LabelledPatch] = (),
        *,
        epoch_size: int,
        positive_share: float = 0.5,
        mix: Mapping[str, float] | None = None,
        transform: Callable[..., dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.slides = slides
        self.extra = list(extra)
        self.epoch_size = epoch_size
        self.positive_share = positive_share
        self.transform = transform
        self.seed = seed
        self._calls = 0
        shares = mix_shares([e.kind for e in self.extra], mix, context=slides is not None)
        self._kinds = list(shares)
        self._cum = np.cumsum([shares[k] for k in self._kinds])
        self._pools: dict[tuple[str, int], list[int]] = {}
        for i, e in enumerate(self.extra):
            self._pools.setdefault((e.kind, e.label), []).append(i)
        px = slides.patch_px if slides is not None else int(self.extra[0].image.shape[0])
        for e in self.extra:
            if e.image.shape != (px, px, 3):
                raise BadManifest(
                    f"patch is {e.image.shape}, expected ({px}, {px}, 3)", subject=e.group
                )

    def __len__(self) -> int:
        return self.epoch_size

    def draw(self, rng: np.random.Generator) -> tuple[npt.NDArray[np.uint8], int]:
        """One example: (patch, label)."""
        u = rng.random()
        k = int(np.searchsorted(self._cum, u, side="right"))
        if k < len(self._kinds):
            kind = self._kinds[k]
            labels = [lab for (kd, lab) in self._pools if kd == kind]
            lab = labels[int(rng.integers(len(labels)))]
            pool = self._pools[(kind, lab)]
            e = self.extra[pool[int(rng.integers(len(pool)))]]
            return e.image, e.label
        vs = self.slides
        assert vs is not None  # the shares sum to 1 without context windows
        if vs.positive and rng.random() < self.positive_share:
            return vs.render(*vs.positive_window(rng)), 1
        window = vs.negative_window(rng)
        if window is None:  # every try landed near an abnormal cell: take a positive one
            return vs.render(*vs.positive_window(rng)), 1
        return vs.render(*window), 0

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self._calls += 1
        rng = np.random.default_rng([self.seed, i, self._calls])
        img, label = self.draw(rng)
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return tensor, label
