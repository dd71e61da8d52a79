"""OpenVINO on the CPU behind the Scorer: the shipped PyTorch weights converted at load time.

The conversion (``torch.export`` -> ``openvino.convert_model``, a few seconds) is cached as an
OpenVINO IR pair (``model.xml`` + ``model.bin``, fp32 weights) under a user cache folder, keyed
by the weights' digest, the preprocessing and the OpenVINO version, so a new model, new
weights or a new OpenVINO never reuse a stale graph. A ``digest.json`` beside the pair is
checked on every load; a damaged entry is rebuilt. Nothing is ever downloaded, and OpenVINO's
usage telemetry (on by default) is declined before openvino is first imported.

Every engine is checked against the PyTorch fp32 model on a few fixed patches when it is
built: an fp32 engine that disagrees by more than ``SELF_CHECK_ATOL`` is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cytoscreen.errors import BadCheckpoint
from cytoscreen.scoring.model import ModelCard, Precision
from cytoscreen.scoring.openvino_import import import_openvino
from cytoscreen.scoring.openvino_import import installed as installed  # re-exported
from cytoscreen.scoring.portable import ProbabilityModel, example_pixels

CACHE_ENV = "CYTOSCREEN_RUNTIME_CACHE"
CACHE_FORMAT = 1  # bump when the exported graph changes meaning
SELF_CHECK_ATOL = 1e-3  # probabilities; fp32 OpenVINO agrees with PyTorch to ~1e-5
HINTS: Mapping[str, str] = {"fp32": "f32", "bf16": "bf16"}


def version() -> str:
    return str(import_openvino().__version__)


def default_cache_root() -> Path:
    """$CYTOSCREEN_RUNTIME_CACHE, else $XDG_CACHE_HOME/cytoscreen/openvino (~/.cache/...)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cytoscreen" / "openvino"


def model_digest(model: torch.nn.Module, card: ModelCard) -> str:
    """sha256 of the weights (names, shapes, dtypes, bytes) and the preprocessing."""
    h = hashlib.sha256()
    h.update(card.arch.encode())
    h.update(card.preprocessing.model_dump_json().encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(model: torch.nn.Module, card: ModelCard) -> str:
    """One folder name: architecture, weights digest, OpenVINO version, cache format."""
    key = f"{card.arch}-{model_digest(model, card)[:16]}-ov{version()}-f{CACHE_FORMAT}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)  # the version holds '/' (release branch)


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _convert(model: torch.nn.Module, card: ModelCard) -> Any:
    ov = import_openvino()

    wrapped = ProbabilityModel(model.float().eval(), card.preprocessing).eval()
    exported = torch.export.export(
        wrapped,
        (example_pixels(card),),
        dynamic_shapes={"pixels": {0: torch.export.Dim("batch")}},
    )
    ov_model = ov.convert_model(exported)
    _, h, w = card.preprocessing.input_size
    ov_model.reshape({0: ov.PartialShape([-1, h, w, 3])})
    return ov_model


def _read_cached(entry: Path) -> Any | None:
    """The cached IR, or None when absent or its files do not match digest.json."""
    ov = import_openvino()

    try:
        digests = json.loads((entry / "digest.json").read_text(encoding="utf-8"))
        for name in ("model.xml", "model.bin"):
            if _file_sha(entry / name) != digests[name]:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ov.Core().read_model(str(entry / "model.xml"))


def _write_cached(ov_model: Any, root: Path, entry: Path) -> None:
    """Write the IR into a temporary folder, then move it into place in one rename."""
    ov = import_openvino()

    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
        digests = {n: _file_sha(tmp / n) for n in ("model.xml", "model.bin")}
        (tmp / "digest.json").write_text(json.dumps(digests, indent=2), encoding="utf-8")
        if entry.exists():  # damaged entry, or another process got there first
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a cache that cannot be written is no error


def load_or_convert(
    model: torch.nn.Module, card: ModelCard, cache_root: str | Path | None
) -> tuple[Any, str]:
    """The OpenVINO model and where it came from ('cache <path>' or 'converted')."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    entry = root / cache_key(model, card)
    cached = _read_cached(entry)
    if cached is not None:
        return cached, f"cache {entry}"
    ov_model = _convert(model, card)
    _write_cached(ov_model, root, entry)
    return ov_model, "converted"


def check_pixels(card: ModelCard, n: int = 4) -> npt.NDArray[np.uint8]:
    """Fixed, patch-like pixels (pale background with darker blobs) for the self-check."""
    _, h, w = card.preprocessing.input_size
    rng = np.random.default_rng(20261122)
    pix = rng.integers(170, 250, size=(n, h, w, 3), dtype=np.uint8)
    pix[:, h // 4 : h // 2, w // 4 : w // 2] //= 2
    return pix


@dataclass
class OpenVinoEngine:
    """A compiled OpenVINO CPU model: uint8 NHWC patches in, softmax per class out."""

    compiled: Any
    n_classes: int
    precision: Precision
    threads: int
    source: str  # 'converted' or 'cache <path>'
    version: str

    @classmethod
    def build(
        cls,
        model: torch.nn.Module,
        card: ModelCard,
        precision: Precision,
        *,
        threads: int | None = None,
        cache_root: str | Path | None = None,
    ) -> OpenVinoEngine:
        ov = import_openvino()

        if precision not in HINTS:
            raise ValueError(f"OpenVINO runs fp32 or bf16 on the CPU, not {precision}")
        ov_model, source = load_or_convert(model, card, cache_root)
        n_threads = threads or torch.get_num_threads()
        compiled = ov.Core().compile_model(
            ov_model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": n_threads,
                "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": HINTS[precision],
            },
        )
        engine = cls(compiled, card.num_classes, precision, n_threads, source, version())
        engine.self_check(model, card)
        return engine

    def predict(self, pixels: npt.NDArray[np.uint8], batch_size: int) -> npt.NDArray[np.float32]:
        request = self.compiled.create_infer_request()
        out = []
        for start in range(0, len(pixels), batch_size):
            batch = np.ascontiguousarray(pixels[start : start + batch_size], dtype=np.uint8)
            request.infer({0: batch})
            out.append(np.array(request.get_output_tensor(0).data, dtype=np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.n_classes), np.float32)

    def self_check(self, model: torch.nn.Module, card: ModelCard) -> None:
        """fp32 must agree with the PyTorch fp32 model; any precision must give finite output."""
        pix = check_pixels(card)
        got = self.predict(pix, len(pix))
        if not np.isfinite(got).all():
            raise BadCheckpoint(
                f"OpenVINO ({self.precision}) gave non-finite scores on the self-check patches",
                slide=card.model_id,
                hint="set scoring.runtime=torch",
            )
        if self.precision != "fp32":
            return
        wrapped = ProbabilityModel(model, card.preprocessing).eval()
        with torch.inference_mode():
            want = wrapped(torch.from_numpy(pix)).float().numpy()
        worst = float(np.abs(got - want).max())
        if worst > SELF_CHECK_ATOL:
            raise BadCheckpoint(
                f"OpenVINO fp32 differs from PyTorch fp32 by {worst:.2g} on the self-check "
                f"patches (allowed {SELF_CHECK_ATOL})",
                slide=card.model_id,
                hint=f"delete {default_cache_root()} and retry, or set scoring.runtime=torch",
            )
