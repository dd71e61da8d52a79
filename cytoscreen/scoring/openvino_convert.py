"""PyTorch -> OpenVINO: convert the model once, with its reference outputs, into the cache.

``torch.export`` of the pixels-in, probabilities-out graph (``portable.ProbabilityModel``), then
``openvino.convert_model`` (a few seconds). The PyTorch fp32 probabilities on the engine's check
patches are stored with the graph, so later runs can check the cached graph without torch
(``openvino_engine.OpenVinoEngine.from_cache``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from cytoscreen.scoring.card import ModelCard
from cytoscreen.scoring.openvino_engine import (
    OpenVinoEngine,
    cache_key,
    check_pixels,
    default_cache_root,
    read_cached,
    write_cached,
)
from cytoscreen.scoring.openvino_import import import_openvino
from cytoscreen.scoring.portable import ProbabilityModel, example_pixels
from cytoscreen.types import Precision


def state_key(model: torch.nn.Module, card: ModelCard) -> str:
    """Cache key of a model held in memory: sha256 of its weights (names, shapes, dtypes,
    bytes), whatever file they came from."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return cache_key(card, f"state{h.hexdigest()[:16]}")


def convert(model: torch.nn.Module, card: ModelCard) -> Any:
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


def reference_probs(model: torch.nn.Module, card: ModelCard) -> npt.NDArray[np.float32]:
    """PyTorch fp32 probabilities on the engine's check patches."""
    wrapped = ProbabilityModel(model.float().eval(), card.preprocessing).eval()
    with torch.inference_mode():
        out = wrapped(torch.from_numpy(check_pixels(card))).float().numpy()
    return np.asarray(out, dtype=np.float32)


def build_engine(
    model: torch.nn.Module,
    card: ModelCard,
    precision: Precision,
    *,
    key: str | None = None,
    threads: int | None = None,
    cache_root: str | Path | None = None,
) -> OpenVinoEngine:
    """The engine of ``model``: from the cache entry ``key`` (default: keyed by the model's
    weights in memory) when valid, else converted, cached with its reference, and checked.

    The reference is always recomputed from ``model`` here (torch is loaded anyway), so an
    entry whose stored reference disagrees with these weights is refused."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    entry = root / (key or state_key(model, card))
    reference = reference_probs(model, card)
    cached = read_cached(entry)
    if cached is not None and np.allclose(cached[1], reference, atol=1e-5, rtol=0):
        return OpenVinoEngine.compile(
            cached[0], card, precision, reference, source=f"cache {entry}", threads=threads
        )
    ov_model = convert(model, card)
    write_cached(ov_model, reference, root, entry)
    return OpenVinoEngine.compile(
        ov_model, card, precision, reference, source="converted", threads=threads
    )
