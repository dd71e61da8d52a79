from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

TINY_ARCH = "test_efficientnet"  # ~0.1 M parameters, bundled with timm for tests
PATCH = 32


def make_store(
    path: Path,
    n: int,
    *,
    patch: int = PATCH,
    chunk: int = 8,
    valid: np.ndarray | None = None,
    complete: bool = True,
    mpp: float = 0.5,
    seed: int = 0,
) -> Path:
    """A hand-made patch cache laid out like the tiler's."""
    rng = np.random.default_rng(seed)
    root = zarr.open_group(path, mode="w")
    images = root.create_array(
        "images", shape=(n, patch, patch, 3), chunks=(chunk, patch, patch, 3), dtype="uint8"
    )
    images[:] = rng.integers(0, 256, size=(n, patch, patch, 3), dtype=np.uint8)
    root.create_array("coords", shape=(n, 2), dtype="int64")[:] = np.arange(2 * n).reshape(n, 2)
    v = np.ones(n, dtype=bool) if valid is None else valid
    root.create_array("valid", shape=(n,), dtype="bool")[:] = v
    root.attrs["cytoscreen"] = {"tiling": {"target_mpp": mpp, "patch_size": patch}}
    if complete:
        (path / "COMPLETE").write_text("ok\n")
    return path


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    import torch

    from cytoscreen.scoring.checkpoint import save_checkpoint
    from cytoscreen.scoring.model import create_model, new_card

    torch.manual_seed(0)
    model = create_model(TINY_ARCH, 3).eval()
    card = new_card(model, TINY_ARCH, ["neg", "low", "high"], ["low", "high"], input_px=PATCH)
    out = tmp_path / "model"
    save_checkpoint(model, card, out)
    return out
