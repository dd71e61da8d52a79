"""slide_key: content identity, not path; the mpp override is part of it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from cytoscreen.errors import InvalidMpp, UnreadableSlide
from cytoscreen.io import slide_key
from cytoscreen.io.identity import BLOCK_BYTES, EDGE_BYTES, N_BLOCKS, _sample_spans


def test_key_follows_content_not_path(cmu1_path: Path, tmp_path: Path) -> None:
    copy = shutil.copy(cmu1_path, tmp_path / "renamed.svs")
    key = slide_key(cmu1_path)
    assert len(key) == 32 and int(key, 16) >= 0
    assert slide_key(copy) == key
    data = bytearray(Path(copy).read_bytes())
    data[len(data) // 2] ^= 0xFF  # small file: hashed whole, any byte counts
    Path(copy).write_bytes(bytes(data))
    assert slide_key(copy) != key


def test_mpp_override_changes_key(cmu1_path: Path) -> None:
    keys = {slide_key(cmu1_path), slide_key(cmu1_path, mpp_override=0.5)}
    keys.add(slide_key(cmu1_path, mpp_override=0.25))
    assert len(keys) == 3
    assert slide_key(cmu1_path, mpp_override=0.5) == slide_key(cmu1_path, mpp_override=0.5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 50.0])
def test_invalid_override_refused(cmu1_path: Path, bad: float) -> None:
    with pytest.raises(InvalidMpp, match="CMU-1"):
        slide_key(cmu1_path, mpp_override=bad)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSlide, match="gone.svs"):
        slide_key(tmp_path / "gone.svs")


@pytest.mark.parametrize("size", [0, 10, 2 * EDGE_BYTES + N_BLOCKS * BLOCK_BYTES + 1, 5 * 2**30])
def test_sample_spans_stay_inside_and_bounded(size: int) -> None:
    spans = _sample_spans(size)
    assert all(off >= 0 and off + n <= size for off, n in spans)
    assert sum(n for _, n in spans) <= 2 * EDGE_BYTES + N_BLOCKS * BLOCK_BYTES
    assert spans[0][0] == 0 and spans[-1][0] + spans[-1][1] == size


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_large_file_sampling(tmp_path: Path) -> None:
    big = tmp_path / "big.svs"
    size = 2 * 2**30  # 2 GiB sparse file: cheap on disk, exercises the sampling
    with big.open("wb") as fh:
        fh.truncate(size)
    start = time.perf_counter()
    key = slide_key(big)
    assert time.perf_counter() - start < 2.0  # reads ~10 MiB, not 2 GiB
    middle = [off for off, n in _sample_spans(size) if n == BLOCK_BYTES]
    for offset in (0, size - 1, middle[len(middle) // 2] + 10):  # head, tail, a sampled block
        _flip(big, offset)
        assert slide_key(big) != key
        _flip(big, offset)
    assert slide_key(big) == key
    # the documented trade-off: a byte between sampled blocks is not seen
    _flip(big, middle[3] + BLOCK_BYTES + 1000)
    assert slide_key(big) == key
    with big.open("ab") as fh:  # a different size is a different slide
        fh.write(b"\0")
    assert slide_key(big) != key
