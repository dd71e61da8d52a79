"""Batched inference over a slide's Zarr patch cache; scores are written beside the patches.

Each model's scores go to their own place in the slide's store (``PatchStore.scores``, one
group per model, so models never overwrite each other): the summed probability of the card's
positive classes (the default stage ``PROB``), the softmax per class, one done flag per patch
chunk for resuming, and a completion marker written last (layout: ``cytoscreen.tiling.store``).

Patches with ``valid == False`` are not scored: their rows stay NaN, which therefore means
"no score", never a score; a non-finite model output is an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.errors import BadCheckpoint, CacheMismatch, WriteFailed
from cytoscreen.scoring.card import ModelCard
from cytoscreen.scoring.scorer import Scorer as Scorer  # re-exported: callers import it here
from cytoscreen.tiling.store import PROB, ModelScores, PatchStore
from cytoscreen.types import mpp_differs, scores_key, scoring_kind


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


def _check_store(store: PatchStore, card: ModelCard) -> None:
    store.require_tiled()
    images = store.images
    store.valid  # noqa: B018 - a store without validity flags is refused before scoring
    _, h, w = card.preprocessing.input_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (h, w, 3):
        raise CacheMismatch(
            f"patches are {tuple(images.shape[1:])}, the model expects ({h}, {w}, 3)",
            subject=store.path,
            hint="tile the slide with the patch size on the model card",
        )
    mpp = store.patch_mpp()
    if mpp is not None and mpp_differs(mpp, card.mpp):
        raise CacheMismatch(
            f"patches are at {mpp} um/px, the model was trained at {card.mpp} um/px",
            subject=store.path,
            hint=f"tile the slide again with tiling.target_mpp={card.mpp}",
        )


def _made_otherwise(scores: ModelScores, how: dict[str, str]) -> bool:
    """Whether stored scores were made with another runtime or precision than ``how`` (or
    by a version that did not record them: their provenance is unknown)."""
    return scoring_kind(scores.provenance) != scoring_kind(how)


def _open_scores(store: PatchStore, card: ModelCard, n: int, how: dict[str, str]) -> ModelScores:
    key = scores_key(card.model_id, how)  # each precision beside the others
    scores = store.scores(key)
    if scores is not None and _made_otherwise(scores, how):
        # scores of the same model and precision from another runtime: the run's record would
        # not describe them, so they are replaced rather than resumed or reused
        store.drop_scores(key)
        scores = None
    if scores is not None:
        prob = scores.stage(PROB)
        if prob.shape != (n,) or scores.classes.shape != (n, card.num_classes):
            raise CacheMismatch(
                f"existing scores of {card.model_id} do not match this cache "
                f"({prob.shape[0]} rows, {n} patches)",
                subject=store.path,
                hint=f"delete {scores.path} and score again",
            )
        return scores
    provenance = {
        "model_id": card.model_id,
        "arch": card.arch,
        "classes": card.classes,
        "positive_classes": card.positive_classes,
        "mpp": card.mpp,
        "code_version": card.code_version,
        "weights_sha256": card.weights_sha256,
        **how,  # runtime, precision and device of the run that created the scores
    }
    return store.create_scores(key, card.num_classes, provenance)


def _valid_per_chunk(
    valid: npt.NDArray[np.bool_], chunk: int, n_chunks: int
) -> npt.NDArray[np.int64]:
    """Valid patches in each chunk of ``chunk`` patches."""
    padded = np.zeros(n_chunks * chunk, dtype=bool)
    padded[: len(valid)] = valid
    return np.asarray(padded.reshape(n_chunks, chunk).sum(axis=1), dtype=np.int64)


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
    patches = PatchStore.open(store, writable=True)
    _check_store(patches, card)
    images = patches.images
    n = int(images.shape[0])
    chunk = patches.chunk_patches
    valid = patches.valid
    scores = _open_scores(patches, card, n, scorer.describe())
    skipped = int((~valid).sum())
    if scores.is_complete(PROB):
        return ScoreRun(
            store, card.model_id, n, 0, skipped, 0, 0.0, prec, str(dev), scorer.runtime_used
        )
    done_flags, prob_arr, class_arr = scores.chunk_done, scores.stage(PROB), scores.classes
    done = np.asarray(done_flags[:], dtype=bool)
    n_valid = _valid_per_chunk(valid, chunk, len(done))
    todo = [i for i in range(len(done)) if not done[i] and n_valid[i] > 0]
    for empty in np.flatnonzero(~done & (n_valid == 0)):  # nothing valid: done, unread
        done_flags[int(empty)] = True

    def read(i: int) -> npt.NDArray[np.uint8]:
        return np.asarray(images[i * chunk : min((i + 1) * chunk, n)], dtype=np.uint8)

    def write(i: int, classes: npt.NDArray[np.float32], prob: npt.NDArray[np.float32]) -> None:
        lo = i * chunk
        try:
            class_arr[lo : lo + len(prob)] = classes
            prob_arr[lo : lo + len(prob)] = prob
            done_flags[i] = True  # last: a chunk marked done always has its scores
        except OSError as exc:
            raise WriteFailed(
                f"cannot write the scores of patch chunk {i} ({exc.strerror or exc})",
                subject=store,
            ) from exc

    scored = 0
    total = int(n_valid[todo].sum()) if todo else 0
    if progress is not None:
        progress(0, total)
    # one thread reads the next chunk and one writes the last, while the model scores this one
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="cytoscreen-prefetch") as reader,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="cytoscreen-write") as writer,
    ):
        nxt: Future[npt.NDArray[np.uint8]] | None = reader.submit(read, todo[0]) if todo else None
        writes: list[Future[None]] = []
        for k, i in enumerate(todo):
            assert nxt is not None
            pixels = nxt.result()
            nxt = reader.submit(read, todo[k + 1]) if k + 1 < len(todo) else None
            lo = i * chunk
            keep = valid[lo : lo + len(pixels)]
            every = bool(keep.all())
            probs = scorer.predict(pixels if every else pixels[keep], batch_size)
            if not np.isfinite(probs).all():
                bad = int((~np.isfinite(probs).all(axis=1)).sum())
                raise BadCheckpoint(
                    f"model {card.model_id} gave non-finite scores for {bad} patches "
                    f"of chunk {i} (runtime {scorer.runtime_used}, precision {prec})",
                    subject=store,
                    hint="score again with --precision fp32 (and scoring.runtime=torch); if it "
                    "persists the checkpoint is broken",
                )
            positive = probs[:, card.positive_indices()].sum(axis=1)
            if every:
                classes, prob = probs.astype(np.float32), positive.astype(np.float32)
            else:
                classes = np.full((len(pixels), card.num_classes), np.nan, dtype=np.float32)
                classes[keep] = probs
                prob = np.full(len(pixels), np.nan, dtype=np.float32)
                prob[keep] = positive
            writes = [w for w in writes if not w.done() or w.result()]  # raises a failed write
            writes.append(writer.submit(write, i, classes, prob))
            scored += int(keep.sum())
            if progress is not None:
                progress(scored, total)
        for w in writes:
            w.result()
    scores.mark_complete(PROB)
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
