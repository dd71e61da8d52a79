"""Issue 7, fuzz: mutated TIFF bytes fed to ``open_slide`` and a patch read give only clean
errors (the documented ``CytoscreenError`` family, or the reader's ``ValueError``/``KeyError``
for bad arguments), in bounded time. Each case runs in a child process (``run_isolated``), so
a native crash would show up as ``ChildCrashed`` and fail the test instead of the run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytoscreen.batch import ChildCrashed, run_isolated
from cytoscreen.errors import CytoscreenError
from cytoscreen.synth.tiffwriter import write_array_tiff

BASE_SIZE = 300


@pytest.fixture(scope="module")
def seed_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (BASE_SIZE, BASE_SIZE, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("fuzz") / "seed.tif"
    write_array_tiff(path, image, mpp=0.5, tile=128)
    return path.read_bytes()


def open_and_read(path: str) -> str:
    """Open a slide and read one patch from its middle (runs in the child)."""
    from cytoscreen.io import open_slide

    try:
        with open_slide(path) as reader:
            w, h = reader.meta.dimensions
            patch = reader.read_region((w // 3, h // 3), 0, (64, 64))
            assert patch.shape == (64, 64, 3)
    except (CytoscreenError, ValueError, KeyError):
        return "clean error"
    return "read"


mutation = st.tuples(
    st.sampled_from(["flip", "zero", "cut", "ff"]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    st.integers(min_value=1, max_value=64),
)


def _mutate(data: bytes, ops: list[tuple[str, float, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, n in ops:
        if not buf:
            break
        at = int(where * (len(buf) - 1))
        if op == "cut":
            del buf[at:]
        elif op == "flip":
            for i in range(at, min(at + n, len(buf))):
                buf[i] ^= 0x5A
        else:
            fill = 0 if op == "zero" else 0xFF
            buf[at : at + n] = bytes([fill]) * len(buf[at : at + n])
    return bytes(buf)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_tiff_gives_only_clean_errors(
    seed_bytes: bytes, tmp_path: Path, ops: list[tuple[str, float, int]]
) -> None:
    path = tmp_path / "mutant.tif"
    path.write_bytes(_mutate(seed_bytes, ops))
    t0 = time.monotonic()
    try:
        outcome = run_isolated(open_and_read, str(path), slide=str(path))
    except ChildCrashed as err:  # a native crash: contained, but still a finding
        pytest.fail(f"reader crashed natively on mutation {ops}: {err}")
    except CytoscreenError as err:  # an unexpected exception type from the reader
        pytest.fail(f"unclean error on mutation {ops}: {err}")
    assert outcome in ("read", "clean error")
    assert time.monotonic() - t0 < 10.0
