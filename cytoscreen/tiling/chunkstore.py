"""Whole-chunk writes to a local Zarr v3 array, encoded in the calling thread.

zarr-python sends every write through its asyncio loop thread and a codec thread pool. For the
tiler, which only ever writes whole chunks, those hand-offs (and the GIL contention they cause
with the decoding threads) cost more than compressing the pixels. ``DirectChunks`` encodes a
chunk exactly as zarr would -- ``bytes`` serializer, then blosc or zstd through numcodecs, the
library zarr itself calls -- and stores it the way zarr's ``LocalStore`` does: a temporary file
in the chunk's folder, then ``os.replace``. The bytes on disk are zarr's own (a test compares
them), so the store stays an ordinary Zarr array for every reader.

Only the layouts the tiler creates are handled directly: a regular chunk grid, the default
chunk-key encoding, no filters, the ``bytes`` serializer and at most one blosc or zstd
compressor. ``chunk_writer`` returns a ``ZarrChunks`` (plain zarr writes) for anything else.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numcodecs
import numpy as np
import numpy.typing as npt
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

from cytoscreen.errors import WriteFailed

_BLOSC_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


class ChunkWriter(Protocol):
    """Writes chunk ``index`` (along the first axis) of one array from a full-chunk array."""

    def write(self, index: int, data: npt.NDArray[Any]) -> None: ...


@dataclass(frozen=True)
class ZarrChunks:
    """Fallback: writes through zarr (any layout). Picklable: holds only the array's path."""

    path: str
    write_empty: bool

    def write(self, index: int, data: npt.NDArray[Any]) -> None:
        array = zarr.open_array(self.path, mode="r+")
        n = array.chunks[0]
        stop = min(array.shape[0], (index + 1) * n)
        with zarr.config.set({"array.write_empty_chunks": self.write_empty}):
            array[index * n : stop] = data[: stop - index * n]


@dataclass(frozen=True)
class DirectChunks:
    """One local array's chunk layout and codec, enough to write a whole chunk without zarr.

    ``codec`` is a numcodecs configuration (``numcodecs.get_codec``) or None (raw bytes).
    ``write_empty`` False follows zarr's default: a chunk that is all fill value is not stored
    (and an older file for it is removed), so a later read yields the fill value.
    """

    path: str  # the array's folder
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str  # numpy dtype string with byte order, e.g. "<i4", "|u1"
    fill_value: Any
    separator: str
    codec: dict[str, Any] | None
    write_empty: bool

    def key(self, index: int) -> Path:
        """The file of chunk ``index`` (zarr's default chunk-key encoding)."""
        coords = (index,) + (0,) * (len(self.chunks) - 1)
        name = self.separator.join(["c", *map(str, coords)])
        return Path(self.path, *name.split("/"))

    def encode(self, index: int, data: npt.NDArray[Any]) -> bytes | memoryview | None:
        """The stored bytes of chunk ``index`` holding ``data`` (its in-bounds rows); None when
        zarr would store nothing (all fill value and ``write_empty`` False)."""
        rows = min(self.shape[0], (index + 1) * self.chunks[0]) - index * self.chunks[0]
        if data.shape != (rows, *self.chunks[1:]):
            raise ValueError(f"chunk {index} of {self.path} needs shape {(rows, *self.chunks[1:])}")
        block = np.asarray(data, dtype=np.dtype(self.dtype))
        if rows < self.chunks[0]:  # the edge chunk: zarr stores it whole, padded with fill
            padded = np.full(self.chunks, self.fill_value, dtype=block.dtype)
            padded[:rows] = block
            block = padded
        if not self.write_empty and bool(np.all(block == self.fill_value)):
            return None
        raw = np.ascontiguousarray(block)
        if self.codec is None:
            return raw.reshape(-1).view(np.uint8).data
        return bytes(_numcodec(tuple(sorted(self.codec.items()))).encode(raw))

    def write(self, index: int, data: npt.NDArray[Any]) -> None:
        """Encode and store chunk ``index``; raises ``WriteFailed`` naming the file."""
        target = self.key(index)
        encoded = self.encode(index, data)
        tmp = f"{target}.{uuid.uuid4().hex}.partial"
        try:
            if encoded is None:
                target.unlink(missing_ok=True)
                return
            try:
                fd = os.open(tmp, _CREATE_FLAGS, 0o666)
            except FileNotFoundError:  # "/" keys: the chunk's folder is made on its first write
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, _CREATE_FLAGS, 0o666)
            try:
                _write_all(fd, encoded)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):  # nothing to remove, or the folder is gone
                os.unlink(tmp)
            raise WriteFailed(
                f"cannot write a patch-cache chunk ({exc.strerror or exc})", subject=target
            ) from exc


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte of ``data`` is written (a regular file may take less)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


@functools.lru_cache(maxsize=8)
def _numcodec(config: tuple[tuple[str, Any], ...]) -> Any:
    return numcodecs.get_codec(dict(config))


def _codec_config(array: zarr.Array) -> tuple[bool, dict[str, Any] | None]:
    """(supported, numcodecs config) of the array's compressor, mirroring zarr's own mapping."""
    compressors = tuple(array.compressors)
    if not compressors:
        return True, None
    if len(compressors) > 1:
        return False, None
    codec = compressors[0]
    if isinstance(codec, BloscCodec):
        if codec.typesize is None:
            return False, None
        return True, {
            "id": "blosc",
            "cname": codec.cname.value,
            "clevel": codec.clevel,
            "shuffle": _BLOSC_SHUFFLE[codec.shuffle.value],
            "blocksize": codec.blocksize,
            "typesize": codec.typesize,
        }
    if isinstance(codec, ZstdCodec):
        return True, {"id": "zstd", "level": codec.level, "checksum": codec.checksum}
    return False, None


def chunk_writer(array: zarr.Array, path: str | Path, *, write_empty: bool) -> ChunkWriter:
    """The fastest correct writer for whole chunks of ``array`` stored in folder ``path``."""
    meta = array.metadata
    encoding = getattr(meta, "chunk_key_encoding", None)
    dtype = np.dtype(array.dtype)
    fill = np.asarray(array.fill_value, dtype=dtype).item()
    ok, codec = _codec_config(array)
    direct = (
        ok
        and fill == fill  # not NaN: an empty chunk is found by comparing with the fill value
        and meta.zarr_format == 3
        and getattr(encoding, "name", None) == "default"
        and not tuple(array.filters)
        and isinstance(array.serializer, BytesCodec)
        and getattr(array.serializer.endian, "value", "little") == "little"
        and dtype.kind in "biuf"
        and (dtype.itemsize == 1 or dtype.byteorder in "<=")
        and np.little_endian
        and all(c == s for c, s in zip(array.chunks[1:], array.shape[1:], strict=True))
    )
    if not direct:
        return ZarrChunks(str(path), write_empty)
    return DirectChunks(
        path=str(path),
        shape=tuple(int(v) for v in array.shape),
        chunks=tuple(int(v) for v in array.chunks),
        dtype=dtype.newbyteorder("<").str if dtype.itemsize > 1 else dtype.str,
        fill_value=fill,
        separator=str(encoding.separator),  # type: ignore[union-attr]
        codec=codec,
        write_empty=write_empty,
    )
