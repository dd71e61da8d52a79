"""Batched inference over a slide's Zarr patch cache; scores are written beside the patches.

Layout written under the slide's store (one group per model, so models never overwrite each
other)::

    scores/<model_id>/prob      (N,) float32   summed probability of the card's positive classes
    scores/<model_id>/classes   (N, C) float32 softmax per class (names in attrs)
    scores/<model_id>/chunk_done (n_chunks,) bool   resumability, one flag per patch chunk
    scores/<model_id>/COMPLETE  marker file, written last

Patches with ``valid == False`` are not scored: their rows stay NaN, which therefore means
"no score", never a score; a non-finite model output is an error.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import zarr

from cytoscreen.errors import BadCheckpoint, CacheMismatch
from cytoscreen.scoring import openvino_engine
from cytoscreen.scoring.card import ModelCard, Precision, checked_weights, read_card
from cytoscreen.scoring.device import device_type
from cytoscreen.scoring.engines import choose_runtime, openvino_precision
from cytoscreen.types import scoring_kind

if TYPE_CHECKING:  # torch is imported only when a PyTorch model is actually needed
    import torch

    from cytoscreen.scoring.torch_engine import TorchEngine

MARKER = "COMPLETE"
MPP_TOLERANCE = 0.02


@dataclass(frozen=True)
class ScoreRun:
    store: Path
    model_id: str
    n_patches: int
    n_scored: int  # patches scored in this call (0 when everything was already done)
    n_skipped: int  # valid == False patches (left NaN)
    chunks_run: int
    seconds: float
    precision: str
    device: str
    runtime: str = "torch"

    @property
    def patches_per_s(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else 0.0


def _array(group: zarr.Group, name: str) -> zarr.Array:
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise CacheMismatch(f"'{name}' is not a Zarr array", slide=str(group.store_path))
    return node


def _store_mpp(attrs: dict[str, Any]) -> float | None:
    meta = attrs.get("cytoscreen", {})
    if not isinstance(meta, dict):
        return None
    for node in (meta, meta.get("tiling", {}), meta.get("config", {}).get("tiling", {})):
        if isinstance(node, dict) and isinstance(node.get("target_mpp"), int | float):
            return float(node["target_mpp"])
    return None


def _check_store(store: Path, root: zarr.Group, card: ModelCard) -> None:
    if not (store / MARKER).exists():
        raise CacheMismatch(
            "patch cache is incomplete (no COMPLETE marker)",
            slide=store,
            hint="run the tiler on this slide again: it resumes where it stopped",
        )
    for name in ("images", "valid"):
        if name not in root:
            raise CacheMismatch(f"patch cache has no '{name}' array", slide=store)
    images = _array(root, "images")
    _, h, w = card.preprocessing.input_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (h, w, 3):
        raise CacheMismatch(
            f"patches are {tuple(images.shape[1:])}, the model expects ({h}, {w}, 3)",
            slide=store,
            hint="tile the slide with the patch size on the model card",
        )
    mpp = _store_mpp(dict(root.attrs))
    if mpp is not None and abs(mpp - card.mpp) > MPP_TOLERANCE * card.mpp:
        raise CacheMismatch(
            f"patches are at {mpp} um/px, the model was trained at {card.mpp} um/px",
            slide=store,
            hint=f"tile the slide again with tiling.target_mpp={card.mpp}",
        )


def _made_otherwise(group: object, how: dict[str, str]) -> bool:
    """Whether stored scores were made with another runtime or precision than ``how`` (or
    by a version that did not record them: their provenance is unknown)."""
    return scoring_kind(getattr(group, "attrs", {}).get("cytoscreen")) != scoring_kind(how)


def _open_scores(
    root: zarr.Group, store: Path, card: ModelCard, n: int, chunk: int, how: dict[str, str]
) -> zarr.Group:
    path = f"scores/{card.model_id}"
    if path in root and _made_otherwise(root[path], how):
        # scores of the same model from another runtime or precision: the run's record would
        # not describe them, so they are replaced rather than resumed or reused
        shutil.rmtree(store / path)
        root = zarr.open_group(store, mode="r+")
    if path in root:
        group = root[path]
        assert isinstance(group, zarr.Group)
        prob = _array(group, "prob")
        if prob.shape != (n,) or _array(group, "classes").shape != (n, card.num_classes):
            raise CacheMismatch(
                f"existing {path} does not match this cache ({prob.shape[0]} rows, {n} patches)",
                slide=store,
                hint=f"delete {store / path} and score again",
            )
        return group
    group = root.require_group(path)
    n_chunks = -(-n // chunk)
    group.create_array("prob", shape=(n,), chunks=(chunk,), dtype="float32", fill_value=np.nan)
    group.create_array(
        "classes",
        shape=(n, card.num_classes),
        chunks=(chunk, card.num_classes),
        dtype="float32",
        fill_value=np.nan,
    )
    group.create_array(
        "chunk_done", shape=(n_chunks,), chunks=(max(n_chunks, 1),), dtype="bool", fill_value=False
    )
    group.attrs["cytoscreen"] = {
        "model_id": card.model_id,
        "arch": card.arch,
        "classes": card.classes,
        "positive_classes": card.positive_classes,
        "mpp": card.mpp,
        "code_version": card.code_version,
        "weights_sha256": card.weights_sha256,
        **how,  # runtime, precision and device of the run that created the scores
    }
    return group


@dataclass
class Scorer:
    """A model made ready once (runtime, device, precision, memory layout) and reused for many
    slides.

    ``Scorer.load(model_dir, ...)`` reads a checkpoint; ``Scorer(model, card, ...)`` wraps a
    pair already in memory. Pass it to ``score_cache`` in place of the model directory.
    ``runtime`` is ``torch`` (default), ``openvino`` or ``auto`` (see ``scoring.engines``);
    ``runtime_used`` and ``runtime_note`` say what was chosen and why. A checkpoint loaded from
    disk whose OpenVINO graph is already cached is scored without importing torch at all.
    """

    model: torch.nn.Module | None
    card: ModelCard
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    runtime: str = "torch"
    runtime_cache: str | Path | None = None  # OpenVINO IR cache; None = the user cache folder
    threads: int | None = None  # OpenVINO CPU threads; None = one per physical core
    model_dir: Path | None = None  # with model None: where the weights are read if needed

    def __post_init__(self) -> None:
        if self.model is None and self.model_dir is None:
            raise ValueError("a Scorer needs a model or the directory of its checkpoint")
        choice = choose_runtime(
            self.runtime,
            self.card,
            device_type(self.device),
            self.precision,
            openvino_installed=openvino_engine.installed(),
        )
        self.runtime_note = choice.note
        ov: openvino_engine.OpenVinoEngine | None = None
        if choice.runtime == "openvino":
            try:
                ov = self._openvino(openvino_precision(self.precision))
            except Exception as exc:  # noqa: BLE001 - 'auto' falls back, explicit re-raises
                if self.runtime == "openvino":
                    raise
                self.runtime_note = f"auto: PyTorch, because OpenVINO failed to build: {exc}"
        self.engine: openvino_engine.OpenVinoEngine | TorchEngine
        if ov is not None:
            self.engine, self.prec, self.device_name = ov, ov.precision, "cpu"
            self.runtime_used = "openvino"
            self.runtime_note += f"; OpenVINO {ov.version}, graph {ov.source}"
        else:
            from cytoscreen.scoring.torch_engine import TorchEngine

            engine = TorchEngine.build(
                self.torch_model(), self.card, self.device, self.precision, self.channels_last
            )
            self.engine, self.prec, self.device_name = engine, engine.precision, str(engine.dev)
            self.runtime_used = "torch"
        self.device_type = self.device_name.split(":")[0]

    def torch_model(self) -> torch.nn.Module:
        """The PyTorch model, read from ``model_dir`` on first need."""
        if self.model is None:
            from cytoscreen.scoring.checkpoint import load_checkpoint

            assert self.model_dir is not None
            self.model, _ = load_checkpoint(self.model_dir)
        return self.model

    def _openvino(self, precision: Precision) -> openvino_engine.OpenVinoEngine:
        if self.model is None:  # a checkpoint on disk: a cached graph needs no torch
            engine = openvino_engine.OpenVinoEngine.from_cache(
                self.card, precision, threads=self.threads, cache_root=self.runtime_cache
            )
            if engine is not None:
                return engine
        from cytoscreen.scoring.openvino_convert import build_engine

        return build_engine(
            self.torch_model(),
            self.card,
            precision,
            key=openvino_engine.file_key(self.card) if self.model_dir is not None else None,
            threads=self.threads,
            cache_root=self.runtime_cache,
        )

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        precision: str = "auto",
        *,
        channels_last: bool = True,
        runtime: str = "torch",
        runtime_cache: str | Path | None = None,
        threads: int | None = None,
    ) -> Scorer:
        """The scorer of a checkpoint directory: the card is read and the weights file checked
        against the card's sha256 here; the weights themselves are loaded only if needed."""
        card = read_card(model_dir)
        checked_weights(model_dir, card)
        return cls(
            None,
            card,
            device,
            precision,
            channels_last,
            runtime,
            runtime_cache,
            threads,
            model_dir=Path(model_dir),
        )

    def describe(self) -> dict[str, str]:
        """Runtime, precision and device actually used, and why (for provenance records)."""
        return {
            "runtime": self.runtime_used,
            "precision": self.prec,
            "device": self.device_name,
            "runtime_note": self.runtime_note,
        }

    def predict(
        self, pixels: npt.NDArray[np.uint8], batch_size: int = 64
    ) -> npt.NDArray[np.float32]:
        """Softmax per class for uint8 (N, H, W, 3) patches."""
        return self.engine.predict(pixels, batch_size)


def score_cache(
    store_path: str | Path,
    model_dir: str | Path | Scorer,
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "auto",
    *,
    threads: int | None = None,
    channels_last: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreRun:
    """Score every valid patch of one slide cache; resumes chunk by chunk after interruption.

    ``model_dir`` is a checkpoint directory or a ``Scorer`` made once for a batch of slides;
    with a Scorer, its own device, precision and layout apply (the arguments here are ignored).
    ``progress(done, total)`` is called after each chunk with the valid patches scored in this
    call so far and those this call has to score.
    """
    store = Path(store_path)
    scorer = (
        model_dir
        if isinstance(model_dir, Scorer)
        else Scorer.load(model_dir, device, precision, channels_last=channels_last, threads=threads)
    )
    if threads is not None and scorer.runtime_used == "torch":
        import torch

        torch.set_num_threads(threads)
    card, dev, prec = scorer.card, scorer.device_name, scorer.prec
    t0 = time.perf_counter()
    try:
        root = zarr.open_group(store, mode="r+")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise CacheMismatch("no Zarr patch cache here", slide=store) from None
    _check_store(store, root, card)
    images = _array(root, "images")
    n = int(images.shape[0])
    chunk = int(images.chunks[0])
    valid = np.asarray(_array(root, "valid")[:], dtype=bool)
    group = _open_scores(root, store, card, n, chunk, scorer.describe())
    marker = store / "scores" / card.model_id / MARKER
    skipped = int((~valid).sum())
    if marker.exists():
        return ScoreRun(
            store, card.model_id, n, 0, skipped, 0, 0.0, prec, str(dev), scorer.runtime_used
        )
    done = np.asarray(_array(group, "chunk_done")[:], dtype=bool)
    todo = [i for i in range(len(done)) if not done[i] and valid[i * chunk : (i + 1) * chunk].any()]
    done_flags, prob_arr, class_arr = (_array(group, k) for k in ("chunk_done", "prob", "classes"))
    for i in range(len(done)):  # chunks with nothing valid are done without reading pixels
        if not done[i] and i not in todo:
            done_flags[i] = True

    def read(i: int) -> npt.NDArray[np.uint8]:
        return np.asarray(images[i * chunk : min((i + 1) * chunk, n)], dtype=np.uint8)

    scored = 0
    total = int(sum(valid[i * chunk : (i + 1) * chunk].sum() for i in todo))
    if progress is not None:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cytoscreen-prefetch") as pool:
        nxt: Future[npt.NDArray[np.uint8]] | None = pool.submit(read, todo[0]) if todo else None
        for k, i in enumerate(todo):
            assert nxt is not None
            pixels = nxt.result()
            nxt = pool.submit(read, todo[k + 1]) if k + 1 < len(todo) else None
            lo = i * chunk
            keep = valid[lo : lo + len(pixels)]
            probs = scorer.predict(pixels[keep], batch_size)
            if not np.isfinite(probs).all():
                bad = int((~np.isfinite(probs).all(axis=1)).sum())
                raise BadCheckpoint(
                    f"model {card.model_id} gave non-finite scores for {bad} patches "
                    f"of chunk {i} (runtime {scorer.runtime_used}, precision {prec})",
                    slide=store,
                    hint="score again with --precision fp32 (and scoring.runtime=torch); if it "
                    "persists the checkpoint is broken",
                )
            classes = np.full((len(pixels), card.num_classes), np.nan, dtype=np.float32)
            classes[keep] = probs
            prob = np.full(len(pixels), np.nan, dtype=np.float32)
            prob[keep] = probs[:, card.positive_indices()].sum(axis=1)
            class_arr[lo : lo + len(pixels)] = classes
            prob_arr[lo : lo + len(pixels)] = prob
            done_flags[i] = True
            scored += int(keep.sum())
            if progress is not None:
                progress(scored, total)
    marker.write_text(card.model_id + "\n", encoding="utf-8")
    return ScoreRun(
        store,
        card.model_id,
        n,
        scored,
        skipped,
        len(todo),
        time.perf_counter() - t0,
        prec,
        str(dev),
        scorer.runtime_used,
    )
