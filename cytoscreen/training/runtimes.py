"""A checkpoint measured on its validation set in every way it may score: PyTorch fp32,
PyTorch bf16 + channels_last, and (when installed) OpenVINO fp32, bf16 and the shipped int8
graph, each with its AUC (bootstrap CI) and patches/s; then the card's validation block from
those scores.

Used at the end of ``train_model`` and by ``scripts/revalidate_card.py`` (a shipped model
measured again on today's validation set). What the card records here is what
``scoring.engines`` checks before ``auto`` runs OpenVINO at a precision: an AUC through that
runtime within ``MAX_AUC_CHANGE`` of PyTorch fp32 on the same patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.scoring.card import Metric
from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.scoring.engines import FP32_KEY, auc_key
from cytoscreen.scoring.infer import Scorer
from cytoscreen.training.card import BF16_TOLERANCE, THRESHOLD
from cytoscreen.training.evaluate import CELLS, EvalSet, positive_scores, throughput
from cytoscreen.training.metrics import auc_with_ci, category_report, sens_spec

BF16_CL_KEY = "patch_auc_bf16_channels_last"
Scores = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RuntimeFigures:
    """Scores, AUCs and patches/s of one checkpoint on one validation set, per way of scoring
    (``fp32``, ``bf16``: PyTorch; ``openvino_fp32``, ``openvino_bf16``, ``openvino_int8``)."""

    scores: dict[str, Scores]
    aucs: dict[str, Metric]  # card keys: patch_auc_fp32, patch_auc_bf16_channels_last, ...
    pps: dict[str, float]
    openvino_version: str = ""

    @property
    def chosen(self) -> str:
        """PyTorch's inference precision for the card: bf16 (+ channels_last) when its AUC is
        within ``BF16_TOLERANCE`` of fp32, else fp32."""
        bf16, fp32 = self.aucs[BF16_CL_KEY].value, self.aucs[FP32_KEY].value
        close = bf16 is not None and fp32 is not None and abs(bf16 - fp32) <= BF16_TOLERANCE
        return "bf16" if close else "fp32"


def measure_runtimes(model_dir: Path, val: EvalSet, seed: int) -> RuntimeFigures:
    """Score ``val`` with the checkpoint in ``model_dir`` in every way (see the module doc).
    OpenVINO bf16 is measured only where the CPU runs bf16 natively (elsewhere the hint runs
    fp32, and recording that as bf16 would prove nothing), int8 only where its quantised graph
    lies in ``model_dir`` and the CPU runs int8 natively."""
    from cytoscreen.scoring import openvino_engine

    scores: dict[str, Scores] = {}
    pps: dict[str, float] = {}
    model, card = load_checkpoint(model_dir)
    for key, prec, cl in (("fp32", "fp32", False), ("bf16", "bf16", True)):
        scorer = Scorer.build(model, card, "cpu", prec, channels_last=cl)
        scores[key], pps[key] = positive_scores(scorer, val.images), throughput(scorer)
    version = ""
    if openvino_engine.installed():
        version = openvino_engine.version()
        precisions = ["fp32", "bf16"] if openvino_engine.bf16_native() else ["fp32"]
        if openvino_engine.int8_ready(model_dir):
            precisions.append("int8")  # the quantised graph shipped beside these weights
        for prec in precisions:
            scorer = Scorer.load(model_dir, "cpu", prec, runtime="openvino")
            if scorer.prec != prec:  # the plugin ran another precision: nothing to record
                continue
            scores[f"openvino_{prec}"] = positive_scores(scorer, val.images)
            pps[f"openvino_{prec}"] = throughput(scorer)
    aucs: dict[str, Metric] = {}
    for key, s in scores.items():
        m = auc_with_ci(val.labels, s, seed=seed)
        if key.startswith("openvino_"):
            prec = key.removeprefix("openvino_")
            method = f"bootstrap; OpenVINO {version} {prec} through the Scorer"
            aucs[auc_key("openvino", prec)] = m.model_copy(update={"method": method})
        else:
            aucs[FP32_KEY if key == "fp32" else BF16_CL_KEY] = m
    return RuntimeFigures(scores, aucs, pps, version)


def part_aucs(val: EvalSet, scores: npt.NDArray[np.floating], seed: int) -> dict[str, Metric]:
    """AUC with its bootstrap CI for the whole set and each of its parts."""
    out = {"patch_auc": auc_with_ci(val.labels, scores, seed=seed)}
    for name in sorted(set(val.parts)):
        m = val.part(name)
        if len(set(val.labels[m].tolist())) == 2:
            out[f"patch_auc_{name}"] = auc_with_ci(val.labels[m], scores[m], seed=seed)
    return out


def validation_block(
    val: EvalSet, figures: RuntimeFigures, seed: int
) -> tuple[dict[str, Metric], dict[str, dict[str, float | int]]]:
    """The card's ``validation`` and ``validation_by_category`` from ``figures``: AUCs of the
    whole set and its parts, sensitivity and specificity on the cells at ``THRESHOLD``, all with
    the chosen PyTorch precision's scores, and every runtime's AUC."""
    s = figures.scores[figures.chosen]
    validation = part_aucs(val, s, seed)
    validation.update(figures.aucs)
    cells = val.part(CELLS)
    validation.update(sens_spec(val.labels[cells], s[cells], THRESHOLD))
    by_category = category_report(val.labels, list(val.categories), s, THRESHOLD, seed=seed)
    return validation, by_category
