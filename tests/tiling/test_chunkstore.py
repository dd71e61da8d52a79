"""Direct whole-chunk writes: the same files zarr itself writes, or zarr as the fallback."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

from cytoscreen.errors import WriteFailed
from cytoscreen.tiling.chunkstore import DirectChunks, ZarrChunks, chunk_writer

COMPRESSORS: dict[str, Any] = {
    "lz4": BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle"),
    "zstd": ZstdCodec(level=1),
    "none": None,
    "default": "auto",
}


def files(root: Path) -> dict[str, str]:
    """sha256 of every chunk file under an array folder (metadata left out)."""
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.name != "zarr.json"
    }


def make(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str, fill: Any,
         compressors: Any, separator: str = "/") -> zarr.Array:  # fmt: skip
    return zarr.create_array(
        path,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=fill,
        compressors=compressors,
        chunk_key_encoding={"name": "default", "separator": separator},
    )


def chunk_data(a: zarr.Array, index: int, rng: np.random.Generator) -> np.ndarray:
    n = a.chunks[0]
    rows = min(a.shape[0], (index + 1) * n) - index * n
    shape = (rows, *a.shape[1:])
    if np.dtype(a.dtype) == np.bool_:
        data = rng.random(shape) < 0.5
        data.flat[0] = True  # never all fill value (that case has its own test)
        return data
    return rng.integers(1, 200, shape).astype(a.dtype)


@pytest.mark.parametrize("separator", ["/", "."])  # "c/1/0/0/0" (zarr's default), "c.1.0.0.0"
@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
@pytest.mark.parametrize(
    ("shape", "chunks", "dtype", "fill", "write_empty"),
    [
        ((11, 6, 6, 3), (4, 6, 6, 3), "uint8", 255, True),  # images (last chunk partial)
        ((11,), (4,), "int32", 0, False),  # nuclei
        ((11,), (4,), "bool", False, False),  # valid
        ((3,), (1,), "uint8", 0, False),  # chunk_done
    ],
)
def test_direct_writes_equal_zarr_writes_byte_for_byte(
    tmp_path: Path,
    codec: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: str,
    fill: Any,
    write_empty: bool,
    separator: str,
) -> None:
    by_zarr = make(tmp_path / "zarr", shape, chunks, dtype, fill, COMPRESSORS[codec], separator)
    direct = make(tmp_path / "direct", shape, chunks, dtype, fill, COMPRESSORS[codec], separator)
    writer = chunk_writer(direct, tmp_path / "direct", write_empty=write_empty)
    assert isinstance(writer, DirectChunks)
    rng = np.random.default_rng(0)
    n_chunks = -(-shape[0] // chunks[0])
    for index in range(n_chunks):
        data = chunk_data(by_zarr, index, rng)
        lo = index * chunks[0]
        with zarr.config.set({"array.write_empty_chunks": write_empty}):
            by_zarr[lo : lo + len(data)] = data
        writer.write(index, data)
    assert files(tmp_path / "direct") == files(tmp_path / "zarr")
    assert len(files(tmp_path / "direct")) == n_chunks
    assert all(("/" in name) == (separator == "/") for name in files(tmp_path / "direct"))
    assert np.array_equal(direct[:], by_zarr[:])


@pytest.mark.parametrize("write_empty", [False, True])
def test_an_all_fill_chunk_is_stored_only_when_asked(tmp_path: Path, write_empty: bool) -> None:
    a = make(tmp_path / "a", (8,), (4,), "int32", 0, "auto")
    writer = chunk_writer(a, tmp_path / "a", write_empty=write_empty)
    writer.write(1, np.full(4, 7, np.int32))
    chunk = tmp_path / "a" / "c" / "1"
    assert chunk.is_file()
    writer.write(1, np.zeros(4, np.int32))  # back to the fill value
    assert chunk.is_file() is write_empty  # like zarr: an empty chunk is removed, not kept
    assert np.array_equal(zarr.open_array(tmp_path / "a")[:], np.zeros(8, np.int32))


def test_other_layouts_fall_back_to_zarr(tmp_path: Path) -> None:
    gzip = make(tmp_path / "gzip", (8, 2), (4, 2), "uint8", 0, GzipCodec())
    big = zarr.create_array(
        tmp_path / "big",
        shape=(8,),
        chunks=(4,),
        dtype="int32",
        serializer=BytesCodec(endian="big"),
    )
    split = make(tmp_path / "split", (8, 4), (4, 2), "uint8", 0, None)  # two chunks across
    nan = make(tmp_path / "nan", (8,), (4,), "float32", np.nan, None)
    for a, name in ((gzip, "gzip"), (big, "big"), (split, "split"), (nan, "nan")):
        writer = chunk_writer(a, tmp_path / name, write_empty=False)
        assert isinstance(writer, ZarrChunks), name
    writer = chunk_writer(gzip, tmp_path / "gzip", write_empty=False)
    writer.write(1, np.full((4, 2), 9, np.uint8))
    assert np.array_equal(gzip[4:], np.full((4, 2), 9, np.uint8)) and not gzip[:4].any()


def test_wrong_shape_is_refused(tmp_path: Path) -> None:
    a = make(tmp_path / "a", (10,), (4,), "int32", 0, None)
    writer = chunk_writer(a, tmp_path / "a", write_empty=False)
    with pytest.raises(ValueError, match="needs shape"):
        writer.write(2, np.ones(4, np.int32))  # the last chunk holds 2 rows


def test_a_failed_write_names_the_chunk_and_leaves_no_partial_file(tmp_path: Path) -> None:
    a = make(tmp_path / "a", (8,), (4,), "int32", 0, None)
    writer = chunk_writer(a, tmp_path / "a", write_empty=False)
    (tmp_path / "a" / "c").write_text("a file where the chunk folder should be")
    with pytest.raises(WriteFailed) as err:
        writer.write(0, np.ones(4, np.int32))
    assert str(tmp_path / "a" / "c") in str(err.value)
    assert not list((tmp_path / "a").glob("**/*.partial"))
