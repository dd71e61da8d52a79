"""The int8 OpenVINO graph shipped beside the bundled model: it runs only through OpenVINO,
only as shipped (checked against its record), by ``auto`` only where it is ready and proven,
and it still ranks real cells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cytoscreen.errors import BadCheckpoint, ConfigError
from cytoscreen.scoring import openvino_engine
from cytoscreen.scoring.card import BUNDLED_MODEL_DIR
from cytoscreen.scoring.checkpoint import read_card
from cytoscreen.scoring.engines import choose_runtime, openvino_precision
from cytoscreen.scoring.infer import Scorer
from cytoscreen.training.config import load_train_config
from cytoscreen.training.metrics import auc

SHIPPED = all((BUNDLED_MODEL_DIR / n).is_file() for n in openvino_engine.INT8_FILES)
needs_graph = pytest.mark.skipif(
    not (openvino_engine.installed() and SHIPPED),
    reason="openvino not installed, or no int8 graph shipped with the bundled model",
)


def test_int8_is_openvino_only_and_auto_only_where_ready(tmp_path: Path) -> None:
    card = read_card(BUNDLED_MODEL_DIR)
    with pytest.raises(ValueError, match="scoring.runtime: openvino"):
        Scorer.load(BUNDLED_MODEL_DIR, "cpu", "int8", runtime="torch")
    with pytest.raises(ConfigError, match="int8 is for scoring"):
        load_train_config(None, precision="int8")
    # auto takes int8 only where it is ready here (graph shipped, int8 instructions)
    assert openvino_precision("auto", card, bf16_native=True) in ("fp32", "bf16")
    unproven = card.model_copy(
        update={"validation": {k: v for k, v in card.validation.items() if "int8" not in k}}
    )
    assert openvino_precision("auto", unproven, int8_ready=True) == "fp32"
    assert not openvino_engine.int8_shipped(tmp_path)  # a folder without the graph
    assert openvino_precision("int8") == "int8"
    explicit = choose_runtime("openvino", card, "cpu", "int8", openvino_installed=True)
    assert explicit.precision == "int8"


@needs_graph
def test_shipped_int8_graph_scores_real_cells(tmp_path: Path) -> None:
    from cytoscreen.synth.kit import bundled_kit
    from cytoscreen.synth.patches import cell_patches

    card = read_card(BUNDLED_MODEL_DIR)
    cells = cell_patches(bundled_kit(), mpp=card.mpp, patch_px=card.preprocessing.input_size[1])
    int8 = Scorer.load(BUNDLED_MODEL_DIR, "cpu", "int8", runtime="openvino")
    assert int8.describe()["precision"] == "int8" and int8.runtime_used == "openvino"
    probs = int8.predict(cells.images, 32)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    score = probs[:, card.positive_indices()].sum(axis=1)
    # the bundled kit's real CRIC cells (some abnormal, most NILM): int8 still ranks them
    assert auc(cells.labels, score) > 0.85


@needs_graph
def test_an_altered_or_foreign_int8_graph_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL_DIR, model)
    bin_file = model / openvino_engine.INT8_FILES[1]
    data = bytearray(bin_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_file.write_bytes(bytes(data))
    with pytest.raises(BadCheckpoint, match="does not match"):
        Scorer.load(model, "cpu", "int8", runtime="openvino")
    shutil.copy2(BUNDLED_MODEL_DIR / bin_file.name, bin_file)
    record = model / openvino_engine.INT8_RECORD
    rec = json.loads(record.read_text())
    record.write_text(json.dumps({**rec, "weights_sha256": "0" * 64}))
    with pytest.raises(BadCheckpoint, match="other weights"):
        Scorer.load(model, "cpu", "int8", runtime="openvino")
    record.unlink()
    with pytest.raises(BadCheckpoint, match="no usable int8 graph"):
        Scorer.load(model, "cpu", "int8", runtime="openvino")
