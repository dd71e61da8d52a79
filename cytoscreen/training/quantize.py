"""The int8 OpenVINO graph of a trained model, quantised once and shipped beside its weights.

NNCF post-training quantisation of the same graph the OpenVINO engine runs (uint8 NHWC patches
in, probabilities out: ``scoring.openvino_convert.convert``), calibrated on patches of the
*train* fields only. Written as ``openvino_int8.xml``/``.bin`` with a record
(``openvino_int8.json``: sha256 of both files, the weights it was made from, the OpenVINO and
NNCF versions and the calibration data) that the engine checks before it runs the graph
(``scoring.openvino_engine.OpenVinoEngine.from_int8``). Quantising needs torch and NNCF (the
dev set-up); running the shipped graph needs only OpenVINO. Its scores differ from fp32 patch by
patch (up to ~0.8 on the bundled model), so a model screens in int8 only with a calibration made
on int8 scores (``calibration.int8.json``); otherwise no slide is called negative.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cytoscreen.fsutil import file_sha256
from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.scoring.openvino_engine import INT8_FILES, INT8_RECORD, version
from cytoscreen.scoring.openvino_import import import_openvino
from cytoscreen.synth.kit import CellKit
from cytoscreen.synth.patches import VirtualSlides
from cytoscreen.training.config import TrainConfig
from cytoscreen.training.evaluate import slide_windows


def calibration_windows(
    train_kit: CellKit, cfg: TrainConfig, n: int, seed: int = 0
) -> tuple[npt.NDArray[np.uint8], str]:
    """``n`` windows of 8 virtual slides of the *train* fields (4 negative, 4 positive) at the
    model's resolution: what int8 is calibrated on (``scripts/quantize_int8.py``, and
    ``scripts/bench_runtimes.py`` for its int8 rows), and a line saying so for the record."""
    slides = VirtualSlides(
        train_kit, n_negative=4, n_positive=4, mpp=cfg.mpp, patch_px=cfg.patch_px, seed=seed
    )
    windows, _ = slide_windows(slides, n, seed)
    return windows, (
        f"windows of 8 virtual slides of the train fields (4 negative, 4 positive; seed {seed})"
    )


def quantize_int8(
    model_dir: Path,
    calibration: npt.NDArray[np.uint8],
    *,
    source: str,
    full_bias_correction: bool = True,
) -> Path:
    """Quantise the checkpoint in ``model_dir`` on ``calibration`` patches (uint8 NHWC, train
    fields only: ``source`` says which) and write the graph and its record there (replacing
    any earlier one in one step per file). Returns the record's path."""
    import nncf

    from cytoscreen.scoring.openvino_convert import convert

    ov = import_openvino()
    model, card = load_checkpoint(model_dir)
    graph = convert(model, card)
    data = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    quantised = nncf.quantize(
        graph,
        data,
        subset_size=len(calibration),
        fast_bias_correction=not full_bias_correction,
    )
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        staged = Path(tmp) / INT8_FILES[0]
        ov.save_model(quantised, str(staged), compress_to_fp16=False)
        record = {
            "format": 1,
            "sha256": {n: file_sha256(Path(tmp) / n) for n in INT8_FILES},
            "weights_sha256": card.weights_sha256,
            "model_id": card.model_id,
            "openvino": version(),
            "nncf": nncf.__version__,
            "calibration": f"{len(calibration)} patches: {source}",
            "bias_correction": "full" if full_bias_correction else "fast",
        }
        for name in INT8_FILES:
            (Path(tmp) / name).replace(model_dir / name)
    out = model_dir / INT8_RECORD
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out
