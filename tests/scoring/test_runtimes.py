"""The OpenVINO runtime behind the Scorer: when ``auto`` takes it, that it scores as PyTorch
fp32 does, that its conversion cache is keyed and checked, and that the NaN guard and the
PyTorch fallback still hold."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from cytoscreen.config import load_config
from cytoscreen.errors import BadCheckpoint, ConfigError
from cytoscreen.scoring import openvino_convert, openvino_engine
from cytoscreen.scoring.card import Metric, ModelCard
from cytoscreen.scoring.checkpoint import load_checkpoint, read_card
from cytoscreen.scoring.engines import MAX_AUC_CHANGE, auc_key, choose_runtime
from cytoscreen.scoring.infer import Scorer, score_cache

from .conftest import PATCH, make_store

needs_openvino = pytest.mark.skipif(
    not openvino_engine.installed(), reason="openvino is not installed (optional extra)"
)
REPO = Path(__file__).resolve().parents[2]
CRIC = REPO.parent / "shared" / "data" / "cric" / "manifest.csv"


def _auc(value: float, n: int = 289) -> Metric:
    return Metric(value=value, ci_low=value - 0.05, ci_high=value + 0.05, n=n)


def proven(
    card: ModelCard, ov_auc: float = 0.791, fp32_auc: float = 0.792, bf16_auc: float | None = None
) -> ModelCard:
    """The card with the validation entries ``auto`` asks for (OpenVINO bf16 too when given)."""
    validation = {"patch_auc_fp32": _auc(fp32_auc), auc_key("openvino", "fp32"): _auc(ov_auc)}
    if bf16_auc is not None:
        validation[auc_key("openvino", "bf16")] = _auc(bf16_auc)
    return card.model_copy(update={"validation": {**card.validation, **validation}})


# ------------------------------------------------------------------ choice (no openvino needed)


def test_auto_takes_openvino_only_with_proof(tiny_model_dir: Path) -> None:
    card = load_checkpoint(tiny_model_dir)[1]
    ok = choose_runtime("auto", proven(card), "cpu", "auto", openvino_installed=True)
    assert ok.runtime == "openvino"
    unproven = choose_runtime("auto", card, "cpu", "auto", openvino_installed=True)
    assert unproven.runtime == "torch" and "patch_auc_openvino_fp32" in unproven.note
    too_far = proven(card, ov_auc=0.792 - 2 * MAX_AUC_CHANGE)
    far = choose_runtime("auto", too_far, "cpu", "auto", openvino_installed=True)
    assert far.runtime == "torch" and "differs" in far.note
    absent = choose_runtime("auto", proven(card), "cpu", "auto", openvino_installed=False)
    assert absent.runtime == "torch" and "not installed" in absent.note
    gpu = choose_runtime("auto", proven(card), "cuda", "auto", openvino_installed=True)
    assert gpu.runtime == "torch" and "cuda" in gpu.note
    # bf16 through OpenVINO was not measured on this card: auto keeps PyTorch for it
    assert choose_runtime("auto", proven(card), "cpu", "bf16", openvino_installed=True).runtime == (
        "torch"
    )


def test_auto_runs_bf16_only_where_proven_and_native(tiny_model_dir: Path) -> None:
    card = load_checkpoint(tiny_model_dir)[1]
    both = proven(card, bf16_auc=0.790)

    def pick(c: ModelCard, native: bool, precision: str = "auto") -> tuple[str, str | None]:
        got = choose_runtime(
            "auto", c, "cpu", precision, openvino_installed=True, bf16_native=native
        )
        return got.runtime, got.precision

    assert pick(both, native=True) == ("openvino", "bf16")
    note = choose_runtime("auto", both, "cpu", "auto", openvino_installed=True, bf16_native=True)
    assert "bf16 natively" in note.note
    assert pick(both, native=False) == ("openvino", "fp32")  # the CPU would emulate or run f32
    assert pick(proven(card), native=True) == ("openvino", "fp32")  # bf16 not measured
    drifted = proven(card, bf16_auc=0.792 - 2 * MAX_AUC_CHANGE)
    assert pick(drifted, native=True) == ("openvino", "fp32")  # bf16 measured, too far
    assert pick(both, native=True, precision="fp32") == ("openvino", "fp32")  # as asked
    # an explicit runtime takes the same resolved precision
    explicit = choose_runtime(
        "openvino", both, "cpu", "auto", openvino_installed=True, bf16_native=True
    )
    assert explicit.precision == "bf16"
    assert choose_runtime("torch", both, "cpu", "auto", openvino_installed=True).precision is None


def test_auto_runs_int8_only_where_ready_and_proven(tiny_model_dir: Path) -> None:
    card = load_checkpoint(tiny_model_dir)[1]
    int8 = {auc_key("openvino", "int8"): _auc(0.789)}
    both = proven(card, bf16_auc=0.790)
    all3 = both.model_copy(update={"validation": {**both.validation, **int8}})

    def pick(c: ModelCard, ready: bool, precision: str = "auto") -> str | None:
        got = choose_runtime(
            "auto",
            c,
            "cpu",
            precision,
            openvino_installed=True,
            bf16_native=True,
            int8_ready=ready,
        )
        return got.precision

    assert pick(all3, ready=True) == "int8"
    note = choose_runtime(
        "auto", all3, "cpu", "auto", openvino_installed=True, bf16_native=True, int8_ready=True
    )
    assert "int8 dot-product" in note.note
    assert pick(all3, ready=False) == "bf16"  # no graph or no int8 instructions: bf16
    assert pick(both, ready=True) == "bf16"  # int8 not measured on the card
    drifted = {auc_key("openvino", "int8"): _auc(0.792 - 2 * MAX_AUC_CHANGE)}
    far = both.model_copy(update={"validation": {**both.validation, **drifted}})
    assert pick(far, ready=True) == "bf16"  # measured, too far from fp32
    assert pick(all3, ready=True, precision="bf16") == "bf16"  # as asked


@needs_openvino
def test_engine_reports_the_precision_it_runs(tiny_model_dir: Path, tmp_path: Path) -> None:
    # the compiled model's own precision, not the hint: a CPU without bf16 runs a bf16 hint in
    # f32, and its slides must then be decided by the fp32 calibration
    card = proven(load_checkpoint(tiny_model_dir)[1], bf16_auc=0.790)
    for asked in ("fp32", "bf16"):
        scorer = Scorer.build(
            load_checkpoint(tiny_model_dir)[0],
            card,
            "cpu",
            asked,
            runtime="openvino",
            runtime_cache=tmp_path / "ov",
        )
        runs = asked if asked == "fp32" or openvino_engine.bf16_native() else "fp32"
        assert scorer.describe()["precision"] == runs
    auto = Scorer.build(
        load_checkpoint(tiny_model_dir)[0], card, "cpu", "auto", runtime="auto",
        runtime_cache=tmp_path / "ov",
    )  # fmt: skip
    assert auto.runtime_used == "openvino"
    assert auto.prec == ("bf16" if openvino_engine.bf16_native() else "fp32"), auto.runtime_note


def test_explicit_openvino_that_cannot_run_says_what_to_do(tiny_model_dir: Path) -> None:
    card = load_checkpoint(tiny_model_dir)[1]
    with pytest.raises(ValueError, match="pip install 'cytoscreen\\[openvino\\]'"):
        choose_runtime("openvino", card, "cpu", "auto", openvino_installed=False)
    with pytest.raises(ValueError, match="scoring.device=cpu"):
        choose_runtime("openvino", card, "cuda", "auto", openvino_installed=True)
    with pytest.raises(ValueError, match="fp16"):
        choose_runtime("openvino", card, "cpu", "fp16", openvino_installed=True)
    with pytest.raises(ValueError, match="unknown scoring runtime"):
        choose_runtime("tensorrt", card, "cpu", "auto", openvino_installed=True)


def test_config_validates_the_runtime() -> None:
    assert load_config(None, {"scoring.runtime": "torch"}).scoring.runtime == "torch"
    with pytest.raises(ConfigError, match="scoring.runtime"):
        load_config(None, {"scoring.runtime": "tensorrt"})


def test_falls_back_to_torch_when_openvino_is_absent(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openvino_engine, "installed", lambda: False)
    model, card = load_checkpoint(tiny_model_dir)
    scorer = Scorer.build(model, proven(card), "cpu", "fp32", runtime="auto")
    assert scorer.runtime_used == "torch" and "not installed" in scorer.runtime_note
    assert scorer.describe()["runtime"] == "torch"
    with pytest.raises(ValueError, match="not installed"):
        Scorer.build(model, card, "cpu", "fp32", runtime="openvino")


def test_auto_falls_back_when_the_engine_fails_to_build(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(openvino_engine, "installed", lambda: True)
    monkeypatch.setattr(openvino_convert, "build_engine", broken)
    model, card = load_checkpoint(tiny_model_dir)
    scorer = Scorer.build(model, proven(card), "cpu", "auto", runtime="auto")
    assert scorer.runtime_used == "torch" and "conversion failed" in scorer.runtime_note
    with pytest.raises(RuntimeError, match="conversion failed"):
        Scorer.build(model, proven(card), "cpu", "auto", runtime="openvino")


# ------------------------------------------------------------------ OpenVINO itself


@needs_openvino
def test_openvino_scores_a_cache_as_torch_fp32_does(tmp_path: Path, tiny_model_dir: Path) -> None:
    ref_store = make_store(tmp_path / "ref.zarr", 20, seed=3)
    ov_store = make_store(tmp_path / "ov.zarr", 20, seed=3)
    ref = score_cache(ref_store, tiny_model_dir, 8, "cpu", "fp32")
    scorer = Scorer.load(
        tiny_model_dir, "cpu", "auto", runtime="openvino", runtime_cache=tmp_path / "ov"
    )
    run = score_cache(ov_store, scorer, batch_size=7)  # batches of another size: dynamic axis
    assert run.runtime == "openvino" and run.precision == "fp32" and run.n_scored == 20
    group = f"scores/{ref.model_id}"
    want = np.asarray(zarr.open_array(ref_store, path=f"{group}/classes", mode="r")[...])
    got = np.asarray(zarr.open_array(ov_store, path=f"{group}/classes", mode="r")[...])
    np.testing.assert_allclose(got, want, atol=1e-4)
    attrs = zarr.open_group(ov_store, mode="r")[group].attrs["cytoscreen"]
    assert attrs["runtime"] == "openvino" and attrs["precision"] == "fp32"


@needs_openvino
def test_conversion_is_cached_checked_and_rebuilt(tmp_path: Path, tiny_model_dir: Path) -> None:
    cache = tmp_path / "ov-cache"
    first = Scorer.load(tiny_model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=cache)
    assert first.engine is not None and first.engine.source == "converted"
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert json.loads((entry / "digest.json").read_text())["model.bin"]
    second = Scorer.load(tiny_model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=cache)
    assert second.engine is not None and second.engine.source == f"cache {entry}"
    blob = bytearray((entry / "model.bin").read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # a damaged cache entry is not trusted
    (entry / "model.bin").write_bytes(bytes(blob))
    third = Scorer.load(tiny_model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=cache)
    assert third.engine is not None and third.engine.source == "converted"
    pix = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(third.predict(pix), first.predict(pix), atol=1e-6)
    # a checkpoint on disk is keyed by its weights file's digest (known without torch); a
    # model in memory by its weights: other weights, other entry
    model, card = load_checkpoint(tiny_model_dir)
    assert openvino_engine.file_key(card) == entry.name
    before = openvino_convert.state_key(model, card)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    assert openvino_convert.state_key(model, card) != before


@needs_openvino
def test_a_cached_graph_scores_without_torch(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Once converted, a checkpoint scores through OpenVINO in a process that never imports
    torch, and gives the same probabilities."""
    cache = tmp_path / "ov-cache"
    first = Scorer.load(tiny_model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=cache)
    pix = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "pix.npy", pix)
    code = (
        "import sys, numpy as np\n"
        "from cytoscreen.scoring.infer import Scorer\n"
        f"s = Scorer.load({str(tiny_model_dir)!r}, 'auto', 'fp32', runtime='openvino', "
        f"runtime_cache={str(cache)!r})\n"
        f"pix = np.load({str(tmp_path / 'pix.npy')!r})\n"
        f"np.save({str(tmp_path / 'got.npy')!r}, s.predict(pix))\n"
        "print(s.engine.source.split()[0], 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    assert out == ["cache", "False"]
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), first.predict(pix), atol=1e-6)


@needs_openvino
def test_the_stored_reference_is_what_a_cached_graph_is_checked_against(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A cache entry whose stored PyTorch reference disagrees with its graph (digests made to
    match, as a stale or tampered entry would) is refused when loaded without torch."""
    cache = tmp_path / "ov-cache"
    Scorer.load(tiny_model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=cache)
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    ref = np.load(entry / "reference.npy")
    np.save(entry / "reference.npy", ref[:, ::-1].copy())  # classes swapped
    digests = json.loads((entry / "digest.json").read_text())
    digests["reference.npy"] = hashlib.sha256((entry / "reference.npy").read_bytes()).hexdigest()
    (entry / "digest.json").write_text(json.dumps(digests))
    with pytest.raises(BadCheckpoint, match="differs from PyTorch fp32"):
        Scorer.load(tiny_model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=cache)


@needs_openvino
def test_openvino_telemetry_is_declined(tmp_path: Path) -> None:
    """Importing openvino the engine's way leaves no telemetry client id in a fresh home;
    a bare ``import openvino`` does make one (so this test can tell the two apart)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    code = {
        "engine": "from cytoscreen.scoring.openvino_import import import_openvino as i; i()",
        "bare": "import openvino",
    }
    made = {}
    for name, line in code.items():
        home = tmp_path / name
        home.mkdir()
        subprocess.run([sys.executable, "-c", line], env={**env, "HOME": str(home)}, check=True)
        made[name] = (home / "intel" / "openvino_ga_cid").exists()
    assert made == {"engine": False, "bare": True}


class _NanOnDark(torch.nn.Module):
    """A tiny classifier whose logits are NaN for dark patches (pale ones score normally)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.conv(x).mean(dim=(2, 3)))
        dark = x.mean(dim=(1, 2, 3), keepdim=False) < -1.5
        return torch.where(dark[:, None], torch.full_like(logits, float("nan")), logits)


@needs_openvino
def test_nan_guard_applies_to_openvino_scores(tmp_path: Path, tiny_model_dir: Path) -> None:
    card = load_checkpoint(tiny_model_dir)[1].model_copy(
        update={"classes": ["neg", "abn"], "positive_classes": ["abn"]}
    )
    scorer = Scorer.build(
        _NanOnDark().eval(), card, "cpu", "fp32", runtime="openvino", runtime_cache=tmp_path
    )
    assert scorer.runtime_used == "openvino"  # pale self-check patches passed
    store = make_store(tmp_path / "s.zarr", 16)
    images = zarr.open_array(store, path="images", mode="r+")
    images[8:16] = 0  # the second chunk is black: NaN logits
    with pytest.raises(BadCheckpoint, match="non-finite scores for 8 patches of chunk 1"):
        score_cache(store, scorer, batch_size=8)
    prob = zarr.open_array(store, path=f"scores/{card.model_id}/prob", mode="r")
    assert np.isfinite(prob[:8]).all() and np.isnan(prob[8:]).all()  # nothing NaN was stored


@needs_openvino
@pytest.mark.parametrize("requests", [1, 3])
def test_requests_in_flight_keep_each_patch_in_its_place(
    tmp_path: Path, tiny_model_dir: Path, requests: int
) -> None:
    """Several requests in flight (OpenVINO's streams) give every patch its own row, as
    scoring the patches one at a time does, whatever the batch and request counts."""
    scorer = Scorer.load(
        tiny_model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=tmp_path / "ov"
    )
    engine = scorer.engine
    assert isinstance(engine, openvino_engine.OpenVinoEngine) and engine.requests >= 1
    engine = replace(engine, requests=requests)
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(23, PATCH, PATCH, 3), dtype=np.uint8)
    alone = np.concatenate([engine.predict(pixels[i : i + 1], 1) for i in range(len(pixels))])
    for batch in (1, 4, 64):
        got = engine.predict(pixels, batch)
        np.testing.assert_allclose(got, alone, atol=1e-6)
    assert engine.predict(pixels[:0], 8).shape == (0, alone.shape[1])


@needs_openvino
@pytest.mark.realdata
@pytest.mark.skipif(not CRIC.exists(), reason="needs ../shared/data/cric")
def test_bundled_model_on_rendered_patches_matches_torch_fp32(tmp_path: Path) -> None:
    from cytoscreen.synth.kit import bundled_kit
    from cytoscreen.synth.patches import cell_patches

    card = read_card(REPO / "cytoscreen/models/default")
    cells = cell_patches(bundled_kit(), mpp=card.mpp, patch_px=card.preprocessing.input_size[1])
    images = cells.images[:: max(1, len(cells.images) // 6)][:6]
    model_dir = REPO / "cytoscreen/models/default"
    torch_fp32 = Scorer.load(model_dir, "cpu", "fp32", channels_last=False)
    ov = Scorer.load(model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=tmp_path)
    np.testing.assert_allclose(ov.predict(images, 4), torch_fp32.predict(images, 4), atol=1e-4)
