from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from cytoscreen.errors import BadCheckpoint, CacheMismatch, WriteFailed
from cytoscreen.scoring.checkpoint import load_checkpoint
from cytoscreen.scoring.infer import score_cache
from cytoscreen.scoring.torch_engine import TorchEngine

from .conftest import make_store


def _read(store: Path, path: str) -> np.ndarray:
    return np.asarray(zarr.open_array(store, path=path, mode="r")[...])


def _reference(model_dir: Path, store: Path) -> np.ndarray:
    """Class probabilities computed the plain way, patch by patch, in fp32."""
    model, card = load_checkpoint(model_dir)
    pix = _read(store, "images")
    x = torch.from_numpy(pix).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(card.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(card.preprocessing.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model((x - mean) / std).softmax(1).numpy()


def test_scores_match_reference_and_skip_invalid(tmp_path: Path, tiny_model_dir: Path) -> None:
    valid = np.ones(20, dtype=bool)
    valid[[3, 17]] = False
    valid[8:16] = False  # a whole chunk with nothing valid
    store = make_store(tmp_path / "s.zarr", 20, valid=valid)
    run = score_cache(store, tiny_model_dir, batch_size=3, device="cpu", precision="fp32")
    assert run.n_scored == int(valid.sum()) and run.n_skipped == 10
    prob = _read(store, f"scores/{run.model_id}/prob")
    classes = _read(store, f"scores/{run.model_id}/classes")
    ref = _reference(tiny_model_dir, store)
    np.testing.assert_allclose(classes[valid], ref[valid], atol=1e-5)
    np.testing.assert_allclose(prob[valid], ref[valid][:, 1:].sum(1), atol=1e-5)
    assert np.isnan(prob[~valid]).all() and prob.dtype == np.float32
    assert _read(store, f"scores/{run.model_id}/chunk_done").all()
    assert (store / "scores" / run.model_id / "COMPLETE").exists()


def test_resume_scores_only_missing_chunks(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s.zarr", 24)
    real = TorchEngine.predict
    calls = {"n": 0}

    def crash_on_second(*args: object, **kw: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(TorchEngine, "predict", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        score_cache(store, tiny_model_dir, device="cpu", precision="fp32")
    model_id = load_checkpoint(tiny_model_dir)[1].model_id
    assert _read(store, f"scores/{model_id}/chunk_done").tolist() == [True, False, False]
    assert not (store / "scores" / model_id / "COMPLETE").exists()
    monkeypatch.setattr(TorchEngine, "predict", real)
    run = score_cache(store, tiny_model_dir, device="cpu", precision="fp32")
    assert run.chunks_run == 2 and run.n_scored == 16
    ref = _reference(tiny_model_dir, store)
    np.testing.assert_allclose(
        _read(store, f"scores/{model_id}/prob"), ref[:, 1:].sum(1), atol=1e-5
    )
    again = score_cache(store, tiny_model_dir, device="cpu", precision="fp32")
    assert again.n_scored == 0 and again.chunks_run == 0


def test_a_failed_score_write_stops_the_run_and_leaves_its_chunk_to_do(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scores are written on a thread of their own: a write that fails (a full disk) stops the
    run with an error that names the store and says what to do, the chunks written before it
    stay done, its own is not marked done,
    and the next run scores only what is missing."""
    from cytoscreen.tiling.store import ModelScores

    store = make_store(tmp_path / "s.zarr", 24)  # 3 chunks of 8
    real_stage = ModelScores.stage

    class FailsFromRow8:
        def __init__(self, array: zarr.Array) -> None:
            self.array = array

        def __setitem__(self, key: slice, value: np.ndarray) -> None:
            if key.start >= 8:
                raise OSError(28, "No space left on device")
            self.array[key] = value

    monkeypatch.setattr(
        ModelScores, "stage", lambda self, name: FailsFromRow8(real_stage(self, name))
    )
    with pytest.raises(WriteFailed, match="scores of patch chunk 1 .No space left"):
        score_cache(store, tiny_model_dir, batch_size=8, device="cpu", precision="fp32")
    model_id = load_checkpoint(tiny_model_dir)[1].model_id
    done = _read(store, f"scores/{model_id}/chunk_done").tolist()
    assert done[0] and not done[1]  # the failed chunk was never marked done
    assert not (store / "scores" / model_id / "COMPLETE").exists()
    monkeypatch.setattr(ModelScores, "stage", real_stage)
    run = score_cache(store, tiny_model_dir, batch_size=8, device="cpu", precision="fp32")
    assert run.chunks_run == 3 - sum(done) and run.n_scored == 8 * run.chunks_run
    ref = _reference(tiny_model_dir, store)
    np.testing.assert_allclose(
        _read(store, f"scores/{model_id}/prob"), ref[:, 1:].sum(1), atol=1e-5
    )


def test_bf16_channels_last_close_to_fp32(tmp_path: Path, tiny_model_dir: Path) -> None:
    store = make_store(tmp_path / "s.zarr", 16)
    run = score_cache(store, tiny_model_dir, device="cpu", precision="bf16")
    prob = _read(store, f"scores/{run.model_id}.bf16/prob")  # beside the fp32 scores
    ref = _reference(tiny_model_dir, store)[:, 1:].sum(1)
    assert run.precision == "bf16"
    np.testing.assert_allclose(prob, ref, atol=0.05)


def test_each_precision_keeps_its_own_scores(tmp_path: Path, tiny_model_dir: Path) -> None:
    from cytoscreen.types import scores_key

    store = make_store(tmp_path / "s.zarr", 16)
    first = score_cache(store, tiny_model_dir, device="cpu", precision="bf16")
    group = zarr.open_group(store, mode="r")
    assert group[f"scores/{first.model_id}.bf16"].attrs["cytoscreen"]["precision"] == "bf16"
    assert f"scores/{first.model_id}" not in group
    # fp32 now: scored into its own group; the bf16 scores stay and are reused after it
    second = score_cache(store, tiny_model_dir, device="cpu", precision="fp32")
    assert second.n_scored == 16 and second.precision == "fp32"
    attrs = zarr.open_group(store, mode="r")[f"scores/{first.model_id}"].attrs["cytoscreen"]
    assert attrs["precision"] == "fp32"
    ref = _reference(tiny_model_dir, store)[:, 1:].sum(1)
    np.testing.assert_allclose(_read(store, f"scores/{first.model_id}/prob"), ref, atol=1e-5)
    assert score_cache(store, tiny_model_dir, device="cpu", precision="bf16").n_scored == 0
    assert score_cache(store, tiny_model_dir, device="cpu", precision="fp32").n_scored == 0
    # readers find each by the record of how it was made
    assert scores_key(first.model_id, {"precision": "bf16"}) == f"{first.model_id}.bf16"
    assert scores_key(first.model_id, {"precision": "fp32"}) == first.model_id
    assert scores_key(first.model_id, None) == first.model_id
    # scores whose runtime and precision were never recorded are not trusted: scored again
    group = zarr.open_group(store, mode="r+")[f"scores/{first.model_id}"]
    group.attrs["cytoscreen"] = {
        k: v for k, v in attrs.items() if k not in ("runtime", "precision")
    }
    assert score_cache(store, tiny_model_dir, device="cpu", precision="fp32").n_scored == 16


def test_scores_of_another_runtime_at_the_same_precision_are_replaced(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    store = make_store(tmp_path / "s.zarr", 16)
    run = score_cache(store, tiny_model_dir, device="cpu", precision="fp32")
    group = zarr.open_group(store, mode="r+")[f"scores/{run.model_id}"]
    group.attrs["cytoscreen"] = {**group.attrs["cytoscreen"], "runtime": "elsewhere"}
    again = score_cache(store, tiny_model_dir, device="cpu", precision="fp32")
    assert again.n_scored == 16  # its record would not describe them: replaced
    attrs = zarr.open_group(store, mode="r")[f"scores/{run.model_id}"].attrs["cytoscreen"]
    assert attrs["runtime"] == "torch"


def test_non_finite_output_raises(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path / "s.zarr", 8)

    def nan_predict(*args: object, **kw: object) -> np.ndarray:
        out = np.full((8, 3), 1 / 3, dtype=np.float32)
        out[2, 0] = np.nan
        return out

    monkeypatch.setattr(TorchEngine, "predict", nan_predict)
    with pytest.raises(BadCheckpoint, match="non-finite"):
        score_cache(store, tiny_model_dir, device="cpu", precision="fp32")


def test_incomplete_cache_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    store = make_store(tmp_path / "s.zarr", 8, complete=False)
    with pytest.raises(CacheMismatch, match="COMPLETE"):
        score_cache(store, tiny_model_dir, device="cpu")


def test_wrong_resolution_or_size_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(CacheMismatch, match="um/px"):
        score_cache(make_store(tmp_path / "a.zarr", 8, mpp=0.25), tiny_model_dir, device="cpu")
    with pytest.raises(CacheMismatch, match="expects"):
        score_cache(make_store(tmp_path / "b.zarr", 8, patch=40), tiny_model_dir, device="cpu")


def test_progress_counts_the_valid_patches_scored(tmp_path: Path, tiny_model_dir: Path) -> None:
    valid = np.ones(20, dtype=bool)
    valid[[1, 2]] = False
    store = make_store(tmp_path / "s.zarr", 20, valid=valid)  # chunks of 8: 6, 8 and 4 valid
    calls: list[tuple[int, int]] = []
    score_cache(
        store,
        tiny_model_dir,
        device="cpu",
        precision="fp32",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(0, 18), (6, 18), (14, 18), (18, 18)]
