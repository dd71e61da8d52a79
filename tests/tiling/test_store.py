"""PatchStore: create and open, typed attributes, per-model and per-stage scores, old stores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from cytoscreen.errors import CacheMismatch
from cytoscreen.tiling import open_cache
from cytoscreen.tiling.obscured import ObscuredEstimate
from cytoscreen.tiling.store import FORMAT, PROB, PatchStore, StoreAttrs

N, PX, CHUNK = 10, 8, 4

ATTRS = StoreAttrs(
    format=FORMAT,
    slide_key="k" * 16,
    slide_name="a.tiff",
    backend="tiffslide",
    mpp=0.25,
    mpp_source="tiff",
    target_mpp=0.5,
    patch_size=PX,
    size_l0=16.0,
    stride_l0=16.0,
    n_patches=N,
    block_starts=(0, 6),
    config_hash="abc",
    config={"tiling": {"target_mpp": 0.5, "patch_size": PX}},
    versions={"cytoscreen": "0", "zarr": "3"},
    obscured=ObscuredEstimate(share=0.25, blood=0.2, thick=0.05, cell_pixels=400, mpp=8.0),
)


def _coords(n: int = N) -> np.ndarray:
    return np.arange(2 * n, dtype=np.int64).reshape(n, 2) * 16


def make(path: Path, attrs: StoreAttrs = ATTRS) -> PatchStore:
    n = attrs.n_patches
    store = PatchStore.create(
        path, attrs, _coords(n), np.linspace(0, 1, n, dtype=np.float32), chunk_patches=CHUNK
    )
    pixels = np.arange(n * PX * PX * 3, dtype=np.int64).reshape(n, PX, PX, 3) % 251
    valid = np.ones(n, dtype=bool)
    valid[3] = False
    store.write_patches(0, pixels.astype(np.uint8), valid, np.arange(n, dtype=np.int32))
    store.mark_complete(attrs.config_hash, n)
    return store


def test_create_then_open_round_trips_arrays_and_attrs(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make(path)
    store = open_cache(path)
    assert store.attrs == ATTRS
    assert len(store) == N and store.chunk_patches == CHUNK
    np.testing.assert_array_equal(store.coords, _coords())
    assert store.coords.dtype == np.int64 and store.nuclei.dtype == np.int32
    assert store.valid.tolist() == [i != 3 for i in range(N)]
    assert store.nuclei.tolist() == list(range(N))
    np.testing.assert_allclose(store.foreground, np.linspace(0, 1, N))
    assert store.images.shape == (N, PX, PX, 3) and int(store.images[1, 0, 0, 0]) == 192 % 251
    assert store.is_complete and store.has_complete_marker()
    assert store.patch_mpp() == 0.5
    assert store.is_set_up(N) and not store.is_set_up(N + 1)


def test_attrs_are_stored_as_the_tiler_always_wrote_them(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make(path)
    raw = json.loads((path / "zarr.json").read_text())["attributes"]["cytoscreen"]
    assert list(raw) == [
        "format", "slide_key", "slide_name", "backend", "mpp", "mpp_source", "target_mpp",
        "patch_size", "size_l0", "stride_l0", "n_patches", "block_starts", "config_hash",
        "config", "versions", "obscured",
    ]  # fmt: skip
    assert raw["block_starts"] == [0, 6] and raw["obscured"]["share"] == 0.25
    assert StoreAttrs.from_dict(raw) == ATTRS
    without = replace(ATTRS, backend=None, obscured=None)
    assert "backend" not in without.to_dict() and without.to_dict()["obscured"] is None
    assert StoreAttrs.from_dict(without.to_dict()) == without


def test_missing_or_malformed_attributes_are_named(tmp_path: Path) -> None:
    data = ATTRS.to_dict()
    del data["size_l0"]
    with pytest.raises(ValueError, match="'size_l0'"):
        StoreAttrs.from_dict(data)
    with pytest.raises(ValueError, match="malformed"):
        StoreAttrs.from_dict({**ATTRS.to_dict(), "n_patches": "many"})
    path = tmp_path / "s.zarr"
    make(path)
    group = zarr.open_group(path, mode="r+")
    group.attrs["cytoscreen"] = data
    with pytest.raises(CacheMismatch, match="'size_l0'"):
        PatchStore.open(path).attrs  # noqa: B018
    with pytest.raises(CacheMismatch, match="not a cytoscreen patch cache"):
        open_cache(path)


def test_open_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(CacheMismatch, match="no Zarr patch cache"):
        PatchStore.open(tmp_path / "absent.zarr")
    with pytest.raises(CacheMismatch, match="not a cytoscreen patch cache"):
        open_cache(tmp_path / "absent.zarr")
    zarr.open_group(tmp_path / "bare.zarr", mode="w")
    bare = PatchStore.open(tmp_path / "bare.zarr")
    with pytest.raises(CacheMismatch, match="no 'images' array"):
        bare.images  # noqa: B018
    assert not bare.is_complete and bare.patch_mpp() is None
    with pytest.raises(CacheMismatch, match="incomplete"):
        bare.require_tiled()


def test_a_store_written_the_old_way_opens(tmp_path: Path) -> None:
    """Built with raw zarr calls, as cytoscreen wrote stores before PatchStore existed."""
    path = tmp_path / "old.zarr"
    group = zarr.open_group(path, mode="w")
    keys: dict[str, object] = {"name": "default", "separator": "."}
    for name, shape, dtype, fill in (
        ("images", (N, PX, PX, 3), "uint8", 255),
        ("coords", (N, 2), "int64", 0),
        ("foreground", (N,), "float32", 0.0),
        ("valid", (N,), "bool", False),
        ("nuclei", (N,), "int32", 0),
        ("chunk_done", (3,), "uint8", 0),
    ):
        group.create_array(name, shape=shape, dtype=dtype, fill_value=fill, chunk_key_encoding=keys)
    group["coords"][:] = _coords()  # type: ignore[index]
    group["valid"][:] = True  # type: ignore[index]
    group["nuclei"][:] = 2  # type: ignore[index]
    old = {k: v for k, v in ATTRS.to_dict().items() if k not in ("backend", "obscured")}
    old["format"] = 1
    group.attrs["cytoscreen"] = old  # before the backend and obscured share were recorded
    (path / "COMPLETE").write_text(json.dumps({"config_hash": "abc", "n_patches": N}))
    scores = group.require_group("scores/m1")
    scores.create_array("prob", shape=(N,), dtype="float32", fill_value=np.nan)[:] = 0.5
    (path / "scores" / "m1" / "COMPLETE").write_text("m1\n")

    store = open_cache(path)
    assert store.attrs == replace(ATTRS, format=1, backend=None, obscured=None)
    assert store.is_complete and int(store.nuclei.sum()) == 2 * N
    np.testing.assert_array_equal(store.read_scores("m1"), np.full(N, 0.5, np.float32))


def test_patch_mpp_is_found_where_hand_made_stores_keep_it(tmp_path: Path) -> None:
    group = zarr.open_group(tmp_path / "h.zarr", mode="w")
    group.attrs["cytoscreen"] = {"tiling": {"target_mpp": 0.4}}
    assert PatchStore.open(tmp_path / "h.zarr").patch_mpp() == 0.4
    group.attrs["cytoscreen"] = {"config": {"tiling": {"target_mpp": 0.3}}}
    assert PatchStore.open(tmp_path / "h.zarr").patch_mpp() == 0.3


def test_scores_per_model_and_stage(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make(path)
    store = PatchStore.open(path, writable=True)
    assert store.scores("m1") is None
    with pytest.raises(CacheMismatch, match="no scores of model m1"):
        store.read_scores("m1")

    m1 = store.create_scores("m1", 3, {"model_id": "m1", "runtime": "torch"})
    m2 = store.create_scores("m2", 2, {"model_id": "m2"})
    assert m1.provenance == {"model_id": "m1", "runtime": "torch"}
    assert m1.stage().shape == (N,) and m1.classes.shape == (N, 3) and m2.classes.shape == (N, 2)
    assert m1.chunk_done.shape == (3,) and not np.asarray(m1.chunk_done[:]).any()
    assert np.isnan(store.read_scores("m1", complete_only=False)).all()
    with pytest.raises(CacheMismatch, match="'prob' scores of model m1 are incomplete"):
        store.read_scores("m1")

    m1.stage(PROB)[:] = np.arange(N, dtype=np.float32)
    m1.mark_complete()
    assert m1.is_complete() and not m2.is_complete()
    np.testing.assert_array_equal(store.read_scores("m1"), np.arange(N, dtype=np.float32))
    assert (path / "scores" / "m1" / "COMPLETE").is_file()  # the marker of every version

    # a further stage (the cascade's cheap first score) beside the full one
    with pytest.raises(CacheMismatch, match="no 'cheap' scores of model m1"):
        store.read_scores("m1", "cheap", complete_only=False)
    cheap = m1.add_stage("cheap", CHUNK)
    cheap[:] = 0.25
    assert not m1.is_complete("cheap") and m1.is_complete(PROB)
    with pytest.raises(CacheMismatch, match="'cheap' scores of model m1 are incomplete"):
        store.read_scores("m1", "cheap")
    m1.mark_complete("cheap")
    reopened = PatchStore.open(path)
    np.testing.assert_array_equal(reopened.read_scores("m1", "cheap"), np.full(N, 0.25))
    np.testing.assert_array_equal(reopened.read_scores("m1"), np.arange(N, dtype=np.float32))
    for bad in (PROB, "classes", "chunk_done", "../x"):
        with pytest.raises(ValueError):
            m1.add_stage(bad, CHUNK)

    store.drop_scores("m1")
    assert store.scores("m1") is None and store.scores("m2") is not None
    with pytest.raises(ValueError, match="read-only"):
        reopened.drop_scores("m2")


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    make(path)
    with pytest.raises(ValueError, match="read-only"):
        PatchStore.open(path).write_patches(0, np.zeros((1, PX, PX, 3), np.uint8))
