"""The patch store: the only module that knows the on-disk layout of a slide's patch cache.

One Zarr v3 group per slide, ``<cache_dir>/<slide_key>.zarr``::

    images      (N, P, P, 3) uint8, chunks (chunk_patches, P, P, 3), lz4 / zstd / none
    coords      (N, 2) int64   level-0 x, y of each patch's top-left corner
    foreground  (N,) float32   cell-bearing share of each patch
    valid       (N,) bool      False: the patch could not be read (never score it)
    nuclei      (N,) int32     nucleus-like objects counted in each patch (cellularity)
    chunk_done  (n_chunks,) uint8, chunks of 1: 1 once that images chunk is written
    attrs["cytoscreen"]        the store's record (``StoreAttrs``): format, slide key and name,
                               reader backend, mpp and its source, target mpp, patch size, patch
                               side and stride at level 0, block starts, tiling config and its
                               hash, package versions and the slide's obscured share
                               (``ObscuredEstimate.to_dict``; absent in stores made before it)
    COMPLETE                   JSON {config_hash, n_patches}, written last and atomically

    scores/<key>/                  one group per model and precision (``types.scores_key``:
                                   the model id for fp32, ``<model_id>.<precision>`` for another),
                                   so neither models nor precisions overwrite each other
        prob        (N,) float32   the default stage: summed probability of the card's positive
                                   classes (NaN = not scored)
        classes     (N, C) float32 softmax per class of the default stage
        chunk_done  (n_chunks,) bool   the default stage's resumability, one flag per chunk
        attrs["cytoscreen"]        provenance: the model card's identity and the runtime,
                                   precision and device that made the scores
        COMPLETE                   marker file of the default stage, written last
        <stage>     (N,) float32   any further stage's score (``add_stage``), e.g. a cheap
                                   first-stage score, NaN = not scored
        <stage>.COMPLETE           marker file of that stage

Chunk files are named ``c.<i>.0.0.0`` beside each tiler-written array's ``zarr.json`` (the
default chunk-key encoding with its ``.`` separator). Everyone else goes through ``PatchStore``
and ``ModelScores``; ``cytoscreen.tiling.cache`` writes the tiler's arrays through the chunk
writers ``PatchStore.writers`` describes.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import zarr
import zarr.errors
from zarr.codecs import BloscCodec, ZstdCodec

from cytoscreen.errors import CacheMismatch
from cytoscreen.fsutil import write_json_atomic
from cytoscreen.tiling.chunkstore import ChunkWriter, chunk_writer
from cytoscreen.tiling.obscured import ObscuredEstimate

FORMAT = 3  # 2: per-patch nuclei counts; 3: the stage-zero nucleus counter (issue 19). Bump it
# whenever what a store holds changes for the same config (a new counter, a new array), so old
# stores are rebuilt rather than reused
PROB = "prob"  # the default score stage: the full model's score
_ATTR_KEY = "cytoscreen"
_COMPLETE = "COMPLETE"
_SCORES = "scores"
_PER_PATCH = ("images", "coords", "foreground", "valid", "nuclei")
_ZARR_ERRORS = (OSError, KeyError, ValueError, TypeError, zarr.errors.BaseZarrError)
# Chunk files named "c.<i>.0.0.0" beside the array's zarr.json (the default encoding with its
# other permitted separator): zarr's "c/<i>/0/0/0" makes a chain of folders for every chunk.
_CHUNK_KEYS: dict[str, Any] = {"name": "default", "separator": "."}

Compression = Literal["lz4", "zstd", "none"]


@dataclass(frozen=True)
class StoreAttrs:
    """What a patch store records about its slide and how it was cut (``attrs["cytoscreen"]``).

    ``backend`` is None in stores made before it was recorded, ``obscured`` in stores made
    before the estimate existed (unknown, not 0).
    """

    format: int
    slide_key: str
    slide_name: str
    backend: str | None
    mpp: float  # of the slide's level 0
    mpp_source: str
    target_mpp: float  # of the patches
    patch_size: int  # pixels per side at target_mpp
    size_l0: float  # patch side in level-0 pixels
    stride_l0: float  # patch stride in level-0 pixels
    n_patches: int
    block_starts: tuple[int, ...]
    config_hash: str
    config: Mapping[str, Any] = field(default_factory=dict)  # the tiling sections as resolved
    versions: Mapping[str, str] = field(default_factory=dict)
    obscured: ObscuredEstimate | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored form, key for key as the tiler has always written it."""
        out: dict[str, Any] = {"format": self.format, "slide_key": self.slide_key}
        out["slide_name"] = self.slide_name
        if self.backend is not None:
            out["backend"] = self.backend
        out.update(
            mpp=self.mpp,
            mpp_source=self.mpp_source,
            target_mpp=self.target_mpp,
            patch_size=self.patch_size,
            size_l0=self.size_l0,
            stride_l0=self.stride_l0,
            n_patches=self.n_patches,
            block_starts=list(self.block_starts),
            config_hash=self.config_hash,
            config=dict(self.config),
            versions=dict(self.versions),
            obscured=self.obscured.to_dict() if self.obscured is not None else None,
        )
        return out

    @classmethod
    def from_dict(cls, data: object) -> StoreAttrs:
        """The record ``to_dict`` wrote; ``ValueError`` naming what is missing or malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f"no {_ATTR_KEY!r} attributes")
        try:
            backend = data.get("backend")
            return cls(
                format=int(data["format"]),
                slide_key=str(data["slide_key"]),
                slide_name=str(data["slide_name"]),
                backend=None if backend is None else str(backend),
                mpp=float(data["mpp"]),
                mpp_source=str(data["mpp_source"]),
                target_mpp=float(data["target_mpp"]),
                patch_size=int(data["patch_size"]),
                size_l0=float(data["size_l0"]),
                stride_l0=float(data["stride_l0"]),
                n_patches=int(data["n_patches"]),
                block_starts=tuple(int(v) for v in data["block_starts"]),
                config_hash=str(data["config_hash"]),
                config=dict(data.get("config") or {}),
                versions={str(k): str(v) for k, v in dict(data.get("versions") or {}).items()},
                obscured=ObscuredEstimate.from_dict(data.get("obscured")),
            )
        except KeyError as exc:
            raise ValueError(f"store attributes have no {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed store attributes ({exc})") from None


@dataclass(frozen=True)
class StoreWriters:
    """Whole-chunk writers for the per-patch arrays of one store (picklable: Dask ships it)."""

    images: ChunkWriter
    valid: ChunkWriter
    nuclei: ChunkWriter
    chunk_done: ChunkWriter


def store_path(cache_dir: str | Path, key: str) -> Path:
    """Where the store of the slide with key ``key`` lives under ``cache_dir``."""
    return Path(cache_dir) / f"{key}.zarr"


def discard_store(path: Path) -> None:
    """Remove a stale store; refuse to delete a folder that is not a Zarr store."""
    if not path.exists():
        return
    if not (path / "zarr.json").is_file():
        raise CacheMismatch(
            "the cache path exists but is not a Zarr patch store; refusing to overwrite it",
            subject=path,
        )
    shutil.rmtree(path)


def _codec(name: str, level: int) -> Any:
    if name == "lz4":
        return BloscCodec(cname="lz4", clevel=level, shuffle="noshuffle")
    if name == "zstd":
        return ZstdCodec(level=level)
    return None


def _node_array(group: zarr.Group, name: str, where: Path) -> zarr.Array:
    if name not in group:
        raise CacheMismatch(f"patch cache has no '{name}' array", subject=where)
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise CacheMismatch(f"'{name}' is not a Zarr array", subject=where)
    return node


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


@dataclass(frozen=True)
class ModelScores:
    """``scores/<model_id>``: one model's scores of a store's patches, stage by stage.

    The default stage ``PROB`` has per-class scores (``classes``) and chunk flags
    (``chunk_done``) beside it; a further stage is one (N,) float32 array with its own marker.
    """

    store: Path
    model_id: str
    group: zarr.Group

    @property
    def path(self) -> Path:
        return self.store / _SCORES / self.model_id

    @property
    def provenance(self) -> dict[str, Any] | None:
        """Model identity and the runtime, precision and device that made the scores; None
        when not recorded."""
        attrs = self.group.attrs.get(_ATTR_KEY)
        return dict(attrs) if isinstance(attrs, dict) else None

    def has_stage(self, stage: str = PROB) -> bool:
        return stage in self.group and isinstance(self.group[stage], zarr.Array)

    def stage(self, stage: str = PROB) -> zarr.Array:
        """The score array of ``stage``; ``CacheMismatch`` when it was never created."""
        if not self.has_stage(stage):
            raise CacheMismatch(
                f"no '{stage}' scores of model {self.model_id} in this cache",
                subject=self.store,
                hint="score the cache with this model (cytoscreen score)",
            )
        return _node_array(self.group, stage, self.store)

    @property
    def classes(self) -> zarr.Array:
        return _node_array(self.group, "classes", self.store)

    @property
    def chunk_done(self) -> zarr.Array:
        return _node_array(self.group, "chunk_done", self.store)

    def add_stage(self, stage: str, chunk: int) -> zarr.Array:
        """Create stage ``stage``'s (N,) float32 array, all NaN (not scored)."""
        if stage in (PROB, "classes", "chunk_done") or not stage.isidentifier():
            raise ValueError(f"{stage!r} cannot name a further score stage")
        n = int(self.stage(PROB).shape[0])
        return self.group.create_array(
            stage, shape=(n,), chunks=(chunk,), dtype="float32", fill_value=np.nan
        )

    def _marker(self, stage: str) -> Path:
        return self.path / (_COMPLETE if stage == PROB else f"{stage}.{_COMPLETE}")

    def is_complete(self, stage: str = PROB) -> bool:
        """Whether every valid patch has a ``stage`` score (its marker was written)."""
        return self._marker(stage).exists()

    def mark_complete(self, stage: str = PROB) -> None:
        self._marker(stage).write_text(self.model_id + "\n", encoding="utf-8")


class PatchStore:
    """A slide's patch store, opened read-only or for writing (``open``, ``create``).

    Arrays are read on first use; a missing array is a ``CacheMismatch`` naming it.
    """

    def __init__(self, path: Path, group: zarr.Group, *, writable: bool = False) -> None:
        self.path = path
        self._group = group
        self._writable = writable

    # ------------------------------------------------------------------ open and create

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False) -> PatchStore:
        """The store at ``path``; ``CacheMismatch`` when there is no Zarr group there."""
        p = Path(path)
        try:
            group = zarr.open_group(p, mode="r+" if writable else "r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise CacheMismatch("no Zarr patch cache here", subject=p) from None
        except _ZARR_ERRORS as exc:
            raise CacheMismatch(f"unreadable Zarr patch cache ({exc})", subject=p) from exc
        return cls(p, group, writable=writable)

    @classmethod
    def create(
        cls,
        path: str | Path,
        attrs: StoreAttrs,
        coords: npt.NDArray[np.int64],
        foreground: npt.NDArray[np.float32],
        *,
        chunk_patches: int,
        compression: Compression = "lz4",
        compression_level: int = 1,
    ) -> PatchStore:
        """Write a new store's arrays (patches white, none valid, no chunk done), its
        coordinates and foreground shares, and last its attributes."""
        p = Path(path)
        n, px, cp = attrs.n_patches, attrs.patch_size, chunk_patches
        compressors: Any = _codec(compression, compression_level)
        group = zarr.open_group(p, mode="w")

        def array(
            name: str,
            shape: tuple[int, ...],
            dtype: str,
            fill: Any,
            chunks: tuple[int, ...] | Literal["auto"] = "auto",
            codec: Any = "auto",
        ) -> zarr.Array:
            return group.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=dtype,
                compressors=codec,
                fill_value=fill,
                chunk_key_encoding=_CHUNK_KEYS,
            )

        array("images", (n, px, px, 3), "uint8", 255, (cp, px, px, 3), compressors)
        coords_arr = array("coords", (n, 2), "int64", 0)
        fg = array("foreground", (n,), "float32", 0.0)
        array("valid", (n,), "bool", False, (cp,))
        array("nuclei", (n,), "int32", 0, (cp,))
        array("chunk_done", (math.ceil(n / cp),), "uint8", 0, (1,))
        if n:
            coords_arr[:] = coords
            fg[:] = foreground
        group.attrs[_ATTR_KEY] = attrs.to_dict()
        return cls(p, group, writable=True)

    def check(self) -> PatchStore:
        """Read the attributes and every per-patch array now; ``CacheMismatch`` naming what is
        missing when this is not a cytoscreen patch cache."""
        try:
            self.attrs  # noqa: B018 - read (and keep) now, to fail here
            self.images  # noqa: B018
            for name in ("coords", "foreground", "valid", "nuclei"):
                getattr(self, name)
        except CacheMismatch as exc:
            raise CacheMismatch(
                f"not a cytoscreen patch cache ({exc.message})", subject=self.path
            ) from None
        except (*_ZARR_ERRORS,) as exc:
            raise CacheMismatch(f"not a cytoscreen patch cache ({exc})", subject=self.path) from exc
        return self

    # ------------------------------------------------------------------ attributes

    @cached_property
    def attrs(self) -> StoreAttrs:
        """The store's record; ``CacheMismatch`` when it is absent or malformed."""
        try:
            return StoreAttrs.from_dict(self._group.attrs.get(_ATTR_KEY))
        except ValueError as exc:
            raise CacheMismatch(str(exc), subject=self.path) from None

    def patch_mpp(self) -> float | None:
        """The patches' resolution (um/px) as the store records it; None when it does not.

        Read from the record's ``target_mpp``, else from a ``tiling`` section beside it or in
        its ``config`` (hand-made stores and benchmarks record only that)."""
        meta = self._group.attrs.get(_ATTR_KEY, {})
        if not isinstance(meta, dict):
            return None
        config = meta.get("config", {})
        nodes = (
            meta,
            meta.get("tiling", {}),
            config.get("tiling", {}) if isinstance(config, dict) else {},
        )
        for node in nodes:
            if isinstance(node, dict) and isinstance(node.get("target_mpp"), int | float):
                return float(node["target_mpp"])
        return None

    # ------------------------------------------------------------------ per-patch arrays

    def _array(self, name: str) -> zarr.Array:
        return _node_array(self._group, name, self.path)

    @cached_property
    def images(self) -> zarr.Array:
        """(N, P, P, 3) uint8 patches, read lazily."""
        return self._array("images")

    @property
    def chunk_patches(self) -> int:
        """Patches per ``images`` chunk (the unit of writing and of scoring)."""
        return int(self.images.chunks[0])

    @cached_property
    def coords(self) -> npt.NDArray[np.int64]:
        return np.asarray(self._array("coords")[:], dtype=np.int64)

    @cached_property
    def foreground(self) -> npt.NDArray[np.float32]:
        return np.asarray(self._array("foreground")[:], dtype=np.float32)

    @cached_property
    def valid(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self._array("valid")[:], dtype=np.bool_)

    @cached_property
    def nuclei(self) -> npt.NDArray[np.int32]:
        return np.asarray(self._array("nuclei")[:], dtype=np.int32)

    def chunk_done(self) -> npt.NDArray[np.uint8]:
        """Per ``images`` chunk, 1 once the tiler wrote it (read afresh on each call)."""
        return np.asarray(self._array("chunk_done")[:], dtype=np.uint8)

    def write_patches(
        self,
        start: int,
        images: npt.NDArray[np.uint8],
        valid: npt.NDArray[np.bool_] | None = None,
        nuclei: npt.NDArray[np.int32] | None = None,
    ) -> None:
        """Store patches ``[start, start + len(images))`` through zarr, valid unless ``valid``
        says otherwise (tests and benchmarks; the tiler writes whole chunks via ``writers``)."""
        if not self._writable:
            raise ValueError(f"{self.path} was opened read-only")
        stop = start + len(images)
        self.images[start:stop] = images
        ok = np.ones(len(images), dtype=np.bool_) if valid is None else valid
        self._array("valid")[start:stop] = ok
        if nuclei is not None:
            self._array("nuclei")[start:stop] = nuclei
        for name in ("valid", "nuclei"):
            self.__dict__.pop(name, None)  # read afresh next time

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def is_set_up(self, n_patches: int) -> bool:
        """Whether every per-patch array holds ``n_patches`` rows and the chunk flags exist."""
        try:
            return all(self._array(name).shape[0] == n_patches for name in _PER_PATCH) and (
                "chunk_done" in self._group
            )
        except (CacheMismatch, *_ZARR_ERRORS):
            return False

    def writers(self) -> StoreWriters:
        """How to write whole chunks of the tiler's arrays (``cytoscreen.tiling.chunkstore``).

        ``images`` chunks always hold real patches, so they are stored even when all white
        (this also skips zarr's all-fill-value scan); the other arrays follow zarr's default.
        """

        def writer(name: str, write_empty: bool) -> ChunkWriter:
            return chunk_writer(self._array(name), self.path / name, write_empty=write_empty)

        return StoreWriters(
            images=writer("images", True),
            valid=writer("valid", False),
            nuclei=writer("nuclei", False),
            chunk_done=writer("chunk_done", False),
        )

    # ------------------------------------------------------------------ completeness

    def complete_record(self) -> dict[str, Any] | None:
        """The tiler's completion record {config_hash, n_patches}; None when absent or torn."""
        return _read_record(self.path / _COMPLETE)

    def has_complete_marker(self) -> bool:
        """Whether the tiler's completion marker exists (whatever it holds)."""
        return (self.path / _COMPLETE).exists()

    @property
    def is_complete(self) -> bool:
        """Whether the tiler finished this store for the configuration its attributes name."""
        record = self.complete_record()
        attrs = self._group.attrs.get(_ATTR_KEY)
        if record is None or not isinstance(attrs, dict):
            return False
        return bool(
            record.get("config_hash") == attrs.get("config_hash")
            and record.get("n_patches") == attrs.get("n_patches")
        )

    def mark_complete(self, config_hash: str, n_patches: int) -> None:
        """Write the tiler's completion marker, atomically, once every chunk is stored."""
        write_json_atomic(
            self.path / _COMPLETE, {"config_hash": config_hash, "n_patches": n_patches}
        )

    def require_tiled(self) -> None:
        """``CacheMismatch`` unless the tiler's completion marker is there."""
        if not self.has_complete_marker():
            raise CacheMismatch(
                f"patch cache is incomplete (no {_COMPLETE} marker)",
                subject=self.path,
                hint="run the tiler on this slide again: it resumes where it stopped",
            )

    # ------------------------------------------------------------------ scores

    def scores(self, model_id: str) -> ModelScores | None:
        """Model ``model_id``'s scores; None when this store has none."""
        name = f"{_SCORES}/{model_id}"
        if name not in self._group:
            return None
        group = self._group[name]
        if not isinstance(group, zarr.Group):
            raise CacheMismatch(f"'{name}' is not a Zarr group", subject=self.path)
        return ModelScores(self.path, model_id, group)

    def create_scores(
        self, model_id: str, num_classes: int, provenance: Mapping[str, Any]
    ) -> ModelScores:
        """Empty (all NaN, no chunk done) default-stage scores of model ``model_id``, chunked
        like the patches, with their provenance."""
        n, chunk = int(self.images.shape[0]), self.chunk_patches
        group = self._group.require_group(f"{_SCORES}/{model_id}")
        n_chunks = -(-n // chunk)
        group.create_array(PROB, shape=(n,), chunks=(chunk,), dtype="float32", fill_value=np.nan)
        group.create_array(
            "classes",
            shape=(n, num_classes),
            chunks=(chunk, num_classes),
            dtype="float32",
            fill_value=np.nan,
        )
        group.create_array(
            "chunk_done",
            shape=(n_chunks,),
            chunks=(max(n_chunks, 1),),
            dtype="bool",
            fill_value=False,
        )
        group.attrs[_ATTR_KEY] = dict(provenance)
        return ModelScores(self.path, model_id, group)

    def drop_scores(self, model_id: str) -> None:
        """Delete model ``model_id``'s scores (all stages); the store is reopened."""
        if not self._writable:
            raise ValueError(f"{self.path} was opened read-only")
        shutil.rmtree(self.path / _SCORES / model_id, ignore_errors=True)
        self._group = zarr.open_group(self.path, mode="r+" if self._writable else "r")

    def read_scores(
        self, model_id: str, stage: str = PROB, *, complete_only: bool = True
    ) -> npt.NDArray[np.float32]:
        """Model ``model_id``'s (N,) ``stage`` scores, NaN where a patch was not scored.

        ``CacheMismatch`` when the store has no such scores, or (``complete_only``) when the
        scoring that writes them has not finished."""
        scores = self.scores(model_id)
        if scores is None:
            raise CacheMismatch(
                f"no scores of model {model_id} in this cache",
                subject=self.path,
                hint="score the cache with this model (cytoscreen score)",
            )
        array = scores.stage(stage)
        if complete_only and not scores.is_complete(stage):
            raise CacheMismatch(
                f"the '{stage}' scores of model {model_id} are incomplete",
                subject=self.path,
                hint="score the cache again: scoring resumes where it stopped",
            )
        return np.asarray(array[:], dtype=np.float32)
