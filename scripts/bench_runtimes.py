"""Inference runtimes for the bundled model: speed and validation AUC in one run.

    flock /tmp/cytoscreen-bench.lock .venv/bin/python scripts/bench_runtimes.py --batches 32 64

Rows: PyTorch fp32 and bf16 + channels_last (the project's Scorer), PyTorch int8 (FX static),
ONNX Runtime fp32 and int8 (static, QDQ and QOperator), OpenVINO fp32, bf16 (precision hint)
and int8 (NNCF post-training quantisation, fast and full bias correction), and the integrated
path ``Scorer.load(..., runtime="openvino")``. A row whose package is not installed, or whose
conversion fails, is printed with the reason instead of figures. ``--record`` writes the integrated
path's AUC into the model card, which is what ``scoring.runtime: auto`` checks.

Every row scores the same validation patches (the val fields of data_manifests/cric_splits.json:
their cells and virtual-slide windows, ``training.run.validation_set``, as the card reports)
and its AUC is printed with the bootstrap 95% CI, on all patches and on the cells alone.
int8 calibration uses windows of virtual slides of the ``train`` fields only, never ``val``.

Speed: rounds interleave the rows (each row times ``--reps`` batches per round) and the median
round is reported, so load from other jobs on the machine falls on every row alike; read the
ratios, not the absolute figures. The load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from cytoscreen.fsutil import write_text_atomic
from cytoscreen.scoring import openvino_engine
from cytoscreen.scoring.card import Metric, ModelCard
from cytoscreen.scoring.checkpoint import CARD_NAME, load_checkpoint, read_card
from cytoscreen.scoring.engines import FP32_KEY, auc_key, card_verdict
from cytoscreen.scoring.infer import Scorer
from cytoscreen.scoring.openvino_import import decline_telemetry, import_openvino
from cytoscreen.scoring.portable import ProbabilityModel, example_pixels
from cytoscreen.scoring.runtime import Normaliser
from cytoscreen.training.config import load_train_config
from cytoscreen.training.evaluate import CELLS
from cytoscreen.training.metrics import auc_with_ci
from cytoscreen.training.quantize import calibration_windows
from cytoscreen.training.run import split_kits, validation_set

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPLITS_PATH = REPO / "data_manifests" / "cric_splits.json"
Pixels = npt.NDArray[np.uint8]
Predict = Callable[[Pixels], npt.NDArray[np.float32]]


@dataclass
class Row:
    name: str
    predict: Predict | None = None
    prep_s: float = 0.0
    error: str = ""
    rates: dict[int, list[float]] = field(default_factory=dict)  # batch -> patches/s per round
    scores: npt.NDArray[np.float32] | None = None


@dataclass
class Data:
    val: Pixels
    labels: npt.NDArray[np.int64]
    cells: npt.NDArray[np.bool_]  # the cells part of the validation set
    calib: Pixels


def load_data(manifest: Path, n_calib: int, seed: int) -> Data:
    cfg = load_train_config(REPO / "configs/train/default.yaml")
    kits, _ = split_kits(manifest, DEFAULT_SPLITS_PATH, REPO)
    val = validation_set(cfg, kits["val"])
    calib, _ = calibration_windows(kits["train"], cfg, n_calib, seed)
    return Data(val.images, val.labels, val.part(CELLS), calib)


def auc_value(labels: npt.NDArray[np.int64], scores: npt.NDArray[np.float32] | None) -> float:
    """The AUC alone (no bootstrap); NaN where it cannot be computed."""
    value = auc_with_ci(labels, scores, n_boot=0).value if scores is not None else None
    return float("nan") if value is None else value


def cells_only_auc(data: Data, scores: npt.NDArray[np.float32]) -> Metric:
    return auc_with_ci(data.labels[data.cells], scores[data.cells], seed=0)


# --- PyTorch ----------------------------------------------------------------------------------


def torch_row(name: str, model_dir: Path, precision: str, channels_last: bool) -> Row:
    t = time.perf_counter()
    scorer = Scorer.load(model_dir, "cpu", precision, channels_last=channels_last)
    return Row(name, lambda x: scorer.predict(x, len(x)), time.perf_counter() - t)


def torch_int8_row(model_dir: Path, data: Data) -> Row:
    """FX graph-mode static int8 (x86 backend) of the network, calibrated on training patches;
    normalisation stays outside in fp32 as in the Scorer."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    t = time.perf_counter()
    model, card = load_checkpoint(model_dir)
    norm = Normaliser(card.preprocessing, torch.device("cpu"), channels_last=False)
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (norm(data.calib[:2]),))
    with torch.inference_mode():
        for i in range(0, len(data.calib), 32):
            prepared(norm(data.calib[i : i + 32]))
    qmodel = convert_fx(prepared)

    def predict(x: Pixels) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            return torch.softmax(qmodel(norm(x)).float(), dim=1).numpy()

    return Row("PyTorch int8 (FX static, x86)", predict, time.perf_counter() - t)


def scorer_openvino_row(model_dir: Path, cache: Path) -> Row:
    """The integrated path: Scorer.load(runtime='openvino'), conversion cached under ``cache``."""
    t = time.perf_counter()
    scorer = Scorer.load(model_dir, "cpu", "fp32", runtime="openvino", runtime_cache=cache)
    return Row(
        "Scorer runtime=openvino (fp32)",
        lambda x: scorer.predict(x, len(x)),
        time.perf_counter() - t,
    )


# --- ONNX Runtime -----------------------------------------------------------------------------


def onnx_then(model_dir: Path, path: Path, threads: int) -> Row:
    """Export the ONNX file, then the ONNX Runtime fp32 row on it."""
    export_onnx(model_dir, path)
    return ort_fp32_row(path, threads)


def export_onnx(model_dir: Path, path: Path) -> None:
    """One self-contained ONNX file (pixels in, probabilities out) with a dynamic batch axis."""
    model, card = load_checkpoint(model_dir)
    torch.onnx.export(
        ProbabilityModel(model, card.preprocessing).eval(),
        (example_pixels(card),),
        str(path),
        input_names=["pixels"],
        output_names=["probs"],
        dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def ort_session(path: Path, threads: int) -> Predict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: np.asarray(sess.run(None, {name: x})[0], dtype=np.float32)


def ort_fp32_row(onnx_path: Path, threads: int) -> Row:
    t = time.perf_counter()
    return Row("ONNX Runtime fp32", ort_session(onnx_path, threads), time.perf_counter() - t)


def ort_int8_row(onnx_path: Path, data: Data, work: Path, threads: int, fmt: str) -> Row:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([data.calib[i : i + 16] for i in range(0, len(data.calib), 16)])

        def get_next(self) -> dict[str, Pixels] | None:
            b = next(self.batches, None)
            return None if b is None else {"pixels": b}

    t = time.perf_counter()
    pre = work / "pre.onnx"
    if not pre.exists():
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    out = work / f"int8-{fmt}.onnx"
    quantize_static(
        str(pre),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    name = f"ONNX Runtime int8 ({'QDQ' if fmt == 'qdq' else 'QOperator'})"
    return Row(name, ort_session(out, threads), time.perf_counter() - t)


# --- OpenVINO ---------------------------------------------------------------------------------


def ov_model(model_dir: Path) -> object:
    ov = import_openvino()

    model, card = load_checkpoint(model_dir)
    wrapped = ProbabilityModel(model, card.preprocessing).eval()
    _, h, w = card.preprocessing.input_size
    example = torch.zeros(2, h, w, 3, dtype=torch.uint8)
    return ov.convert_model(
        wrapped, example_input=example, input=[(ov.PartialShape([-1, h, w, 3]), ov.Type.u8)]
    )


def ov_compile(model: object, threads: int, hint: str) -> Predict:
    ov = import_openvino()

    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": hint,
        },
    )
    request = compiled.create_infer_request()

    def predict(x: Pixels) -> npt.NDArray[np.float32]:
        request.infer({0: x})
        return np.asarray(request.get_output_tensor(0).data, dtype=np.float32).copy()

    return predict


@functools.cache
def ov_converted(model_dir: Path) -> tuple[object, float]:
    """The converted OpenVINO model (made once per run) and the seconds it took."""
    t = time.perf_counter()
    return ov_model(model_dir), time.perf_counter() - t


def ov_rows(model_dir: Path, threads: int) -> list[Row]:
    model, convert_s = ov_converted(model_dir)
    rows = []
    for name, hint in (("OpenVINO fp32", "f32"), ("OpenVINO bf16 hint", "bf16")):
        t = time.perf_counter()
        rows.append(
            Row(name, ov_compile(model, threads, hint), convert_s + time.perf_counter() - t)
        )
    return rows


def ov_int8_rows(model_dir: Path, data: Data, threads: int) -> list[Row]:
    import nncf

    model, convert_s = ov_converted(model_dir)
    calib = nncf.Dataset([data.calib[i : i + 1] for i in range(len(data.calib))])
    rows = []
    for label, fast_bc in (("NNCF", True), ("NNCF, full bias correction", False)):
        t = time.perf_counter()
        qmodel = nncf.quantize(
            model, calib, subset_size=len(data.calib), fast_bias_correction=fast_bc
        )
        q_s = convert_s + time.perf_counter() - t
        rows.append(Row(f"OpenVINO int8 ({label})", ov_compile(qmodel, threads, "f32"), q_s))
    return rows


# --- measuring --------------------------------------------------------------------------------


def guarded(name: str, make: Callable[[], Row | list[Row]]) -> list[Row]:
    try:
        out = make()
    except ImportError as exc:
        return [Row(name, error=f"not installed ({exc.name})")]
    except Exception as exc:  # noqa: BLE001 - a failed row is reported, not fatal
        traceback.print_exc(limit=3)
        return [Row(name, error=f"{type(exc).__name__}: {exc}"[:120])]
    return out if isinstance(out, list) else [out]


def score_all(row: Row, data: Data, card: ModelCard, batch: int) -> None:
    assert row.predict is not None
    probs = np.concatenate(
        [row.predict(data.val[i : i + batch]) for i in range(0, len(data.val), batch)]
    )
    row.scores = probs[:, card.positive_indices()].sum(axis=1).astype(np.float32)


def time_rows(rows: list[Row], data: Data, batches: list[int], rounds: int, reps: int) -> None:
    live = [r for r in rows if r.predict is not None]
    for b in batches:
        pix = np.ascontiguousarray(np.resize(data.val, (b, *data.val.shape[1:])))
        for r in live:
            assert r.predict is not None
            r.predict(pix)  # warm-up (first-call allocations, kernel selection)
        for _ in range(rounds):
            for r in live:
                assert r.predict is not None
                t = time.perf_counter()
                for _ in range(reps):
                    r.predict(pix)
                r.rates.setdefault(b, []).append(reps * b / (time.perf_counter() - t))


def fmt_auc(labels: npt.NDArray[np.int64], scores: npt.NDArray[np.float32]) -> str:
    m = auc_with_ci(labels, scores, seed=0)
    return f"{m.value:.4f} ({m.ci_low:.3f}-{m.ci_high:.3f})"


def report(rows: list[Row], data: Data, batches: list[int]) -> None:
    base = next(r for r in rows if r.name == "PyTorch fp32")
    fast = next((r for r in rows if r.name.startswith("PyTorch bf16")), base)
    assert base.scores is not None
    base_auc = auc_value(data.labels, base.scores)
    head = "| runtime | prep s |"
    for b in batches:
        head += f" b{b} patches/s | vs fp32 | vs bf16+CL |"
    head += " AUC all (95% CI) | dAUC vs fp32 | AUC cells only (95% CI) | max abs score diff |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        if r.predict is None or r.scores is None:
            print(f"| {r.name} | - |" + " - | - | - |" * len(batches) + f" {r.error} | | | |")
            continue
        line = f"| {r.name} | {r.prep_s:.0f} |"
        for b in batches:
            v = statistics.median(r.rates[b])
            line += (
                f" {v:.1f} | {v / statistics.median(base.rates[b]):.2f}x |"
                f" {v / statistics.median(fast.rates[b]):.2f}x |"
            )
        cells = cells_only_auc(data, r.scores)
        d_auc = auc_value(data.labels, r.scores) - base_auc
        line += (
            f" {fmt_auc(data.labels, r.scores)} | {d_auc:+.4f} |"
            f" {cells.value:.4f} ({cells.ci_low:.3f}-{cells.ci_high:.3f}) |"
            if cells
            else " - |"
        )
        line += f" {np.abs(r.scores - base.scores).max():.4f} |"
        print(line)


def record(model_dir: Path, rows: list[Row], data: Data) -> None:
    """Write the integrated OpenVINO path's AUC into the card (what ``auto`` checks)."""
    ov = next((r for r in rows if r.name.startswith("Scorer runtime=openvino")), None)
    fp32 = next((r for r in rows if r.name == "PyTorch fp32"), None)
    if ov is None or ov.scores is None or fp32 is None or fp32.scores is None:
        raise SystemExit("--record needs the PyTorch fp32 and Scorer runtime=openvino rows")
    card = read_card(model_dir)
    ref = card.validation.get(FP32_KEY)
    now = auc_with_ci(data.labels, fp32.scores, seed=0)
    differs = (
        ref is None
        or ref.value is None
        or now.value is None
        or abs(ref.value - now.value) > 1e-6
        or ref.n != now.n
    )
    if differs:
        raise SystemExit(
            f"the card's {FP32_KEY} ({ref}) is not the PyTorch fp32 AUC measured here "
            f"({now.value:.6f}, n={now.n}): the validation set differs; not recording"
        )
    method = f"bootstrap; OpenVINO {openvino_engine.version()} fp32 through the Scorer"
    m = auc_with_ci(data.labels, ov.scores, seed=0).model_copy(update={"method": method})
    validation = {**card.validation, auc_key("openvino", "fp32"): m}
    cells = cells_only_auc(data, ov.scores)
    if cells is not None:
        validation["patch_auc_cells_openvino_fp32"] = cells.model_copy(update={"method": method})
    card = card.model_copy(update={"validation": validation})
    write_text_atomic(model_dir / CARD_NAME, card.model_dump_json(indent=2))
    verdict = card_verdict(card, "openvino", "fp32")
    print(f"recorded {auc_key('openvino', 'fp32')} = {m.value:.4f} in {model_dir / CARD_NAME}")
    print("auto will use OpenVINO" if verdict is None else f"auto will keep PyTorch: {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "cytoscreen/models/default")
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2, help="batches timed per row per round")
    ap.add_argument("--calib", type=int, default=300, help="training patches for int8")
    ap.add_argument("--skip", nargs="*", default=[], help="row name prefixes to leave out")
    ap.add_argument(
        "--record",
        action="store_true",
        help="write the OpenVINO fp32 AUC into the model's card.json (what runtime=auto checks)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decline_telemetry()  # before openvino or nncf is imported
    print(f"load average at start: {Path('/proc/loadavg').read_text().strip()}")
    print(f"cpu count {os.cpu_count()}, threads {args.threads}, torch {torch.__version__}")
    data = load_data(args.manifest, args.calib, seed=0)
    card = load_checkpoint(args.model)[1]
    print(
        f"val patches {len(data.val)} ({int(data.labels.sum())} abnormal), "
        f"calibration patches {len(data.calib)} from train cells"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx_path = work / "model.onnx"
        makers: list[tuple[str, Callable[[], Row | list[Row]]]] = [
            ("PyTorch fp32", lambda: torch_row("PyTorch fp32", args.model, "fp32", False)),
            (
                "PyTorch bf16+CL",
                lambda: torch_row("PyTorch bf16+CL", args.model, "bf16", True),
            ),
            ("PyTorch int8", lambda: torch_int8_row(args.model, data)),
            (
                "ONNX Runtime fp32",
                lambda: onnx_then(args.model, onnx_path, args.threads),
            ),
            (
                "ONNX Runtime int8 (QDQ)",
                lambda: ort_int8_row(onnx_path, data, work, args.threads, "qdq"),
            ),
            (
                "ONNX Runtime int8 (QOperator)",
                lambda: ort_int8_row(onnx_path, data, work, args.threads, "qop"),
            ),
            ("OpenVINO", lambda: ov_rows(args.model, args.threads)),
            ("OpenVINO int8", lambda: ov_int8_rows(args.model, data, args.threads)),
            ("Scorer runtime=openvino", lambda: scorer_openvino_row(args.model, work / "ov")),
        ]
        rows: list[Row] = []
        for name, make in makers:
            if any(name.startswith(s) for s in args.skip):
                continue
            print(f"preparing {name} ...", flush=True)
            rows += guarded(name, make)
        for r in rows:
            if r.predict is not None:
                try:
                    score_all(r, data, card, max(args.batches))
                except Exception as exc:  # noqa: BLE001
                    r.predict, r.error = None, f"scoring failed: {type(exc).__name__}: {exc}"[:120]
        time_rows(rows, data, args.batches, args.rounds, args.reps)
    print(f"load average at end: {Path('/proc/loadavg').read_text().strip()}")
    report(rows, data, args.batches)
    if args.record:
        record(args.model, rows, data)


if __name__ == "__main__":
    main()
