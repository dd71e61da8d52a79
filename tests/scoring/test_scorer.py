from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoscreen.scoring import checkpoint
from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.scoring.infer import Scorer, score_cache
from cytoscreen.tiling import PatchStore

from .conftest import make_store


def _prob(store: Path, model_id: str) -> np.ndarray:
    return PatchStore.open(store).read_scores(model_id, complete_only=False)


def test_scorer_loads_once_and_matches_directory_scoring(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = [make_store(tmp_path / f"s{i}.zarr", 12, seed=i) for i in range(3)]
    ref = score_cache(stores[0], tiny_model_dir, 4, "cpu", "fp32")
    expected = _prob(stores[0], ref.model_id)

    loads = {"n": 0}
    real = checkpoint.load_checkpoint

    def counting(path: str | Path) -> object:
        loads["n"] += 1
        return real(path)

    monkeypatch.setattr(checkpoint, "load_checkpoint", counting)
    scorer = Scorer.load(tiny_model_dir, "cpu", "fp32")
    again = make_store(tmp_path / "again.zarr", 12, seed=0)  # same pixels as stores[0]
    runs = [score_cache(s, scorer, batch_size=5) for s in (*stores[1:], again)]
    assert loads["n"] == 1
    assert all(r.n_scored == 12 and r.precision == "fp32" for r in runs)
    np.testing.assert_allclose(_prob(again, runs[-1].model_id), expected, atol=1e-5)
    # different pixels give different scores: the scorer really ran on each store
    assert not np.allclose(_prob(stores[1], runs[0].model_id), expected)


def test_scorer_wraps_a_model_already_in_memory(tmp_path: Path, tiny_model_dir: Path) -> None:
    model, card = load_checkpoint(tiny_model_dir)
    scorer = Scorer.build(model, card, device="cpu", precision="bf16")
    store = make_store(tmp_path / "s.zarr", 8)
    run = score_cache(store, scorer)
    assert run.precision == "bf16" and run.n_scored == 8
    probs = scorer.predict(np.zeros((3, 32, 32, 3), np.uint8))
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-2)
