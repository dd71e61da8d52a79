"""Issue 7, case 15: a dask.distributed worker process killed (SIGKILL) while a slide is being
tiled. The scheduler retries the lost tasks on a restarted worker and the store completes with
exactly the arrays of a threaded run."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from cytoscreen.config import load_config
from cytoscreen.tiling import open_cache, tile_slide


@pytest.mark.slow
def test_killed_worker_is_retried_and_the_store_matches_a_threaded_run(
    tmp_path: Path, make_slide: Any, write_config: Any
) -> None:
    distributed = pytest.importorskip("distributed")
    slide = make_slide(tmp_path / "s.tiff", size=1536, seed=31)
    cfg = load_config(write_config(tmp_path / "c.yaml", cache={"chunk_patches": 8}))
    threaded = tile_slide(slide, cfg, cache_dir=tmp_path / "threaded")

    killed: list[int] = []
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = sorted(client.run(os.getpid).values())

        def progress(done: int, total: int) -> None:
            if not killed and 0 < done < total:
                os.kill(pids[0], signal.SIGKILL)  # mid-run: later chunks are still to come
                killed.append(pids[0])

        store = tile_slide(
            slide, cfg, cache_dir=tmp_path / "distributed", progress=progress, client=client
        )
    assert killed, "the run finished before a worker could be killed"
    assert open_cache(store).is_complete
    a, b = zarr.open_group(threaded, mode="r"), zarr.open_group(store, mode="r")
    for name in ("images", "valid", "nuclei"):
        assert np.array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]))  # type: ignore[index]
