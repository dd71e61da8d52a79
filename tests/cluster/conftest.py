"""Fixtures of the cluster tests: a folder of tiny slides, and ``cytoscreen screen`` run in a
child process with a timeout (the dask processes themselves: ``dask_procs``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide

sys.path.insert(0, str(Path(__file__).parent))
from dask_procs import SCREEN_TIMEOUT_S, stop_processes, worker_env  # noqa: E402


@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """negative, positive, blank, a junk .svs and a copy of the negative whose name asks the
    test workers' reader to crash natively."""
    root = tmp_path_factory.mktemp("cluster-slides")
    kit = bundled_kit()
    spec: dict[str, Any] = {"density": 3000.0}
    generate_slide(root / "negative.tiff", SlideSpec(512, label="negative", seed=1, **spec), kit)
    generate_slide(
        root / "positive.tiff",
        SlideSpec(512, label="positive", seed=2, n_abnormal=3, **spec),
        kit,
    )
    generate_slide(root / "blank.tiff", SlideSpec(size=384, label="blank", seed=3), kit)
    (root / "broken.svs").write_bytes(b"not a slide at all" * 64)
    shutil.copy(root / "negative.tiff", root / "segfault.tiff")
    return root


@pytest.fixture(scope="module")
def run_cli(model_dir: Path, config_path: Path) -> Any:
    """``run_cli(inputs, out, *extra) -> CompletedProcess``: ``cytoscreen screen`` in a child
    process (timeout ``SCREEN_TIMEOUT_S``)."""

    def run(
        inputs: Sequence[Path], out: Path, *extra: str, timeout: float = SCREEN_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        args = ["screen", *map(str, inputs), "--out", str(out), "--model", str(model_dir)]
        args += ["--config", str(config_path), *extra]
        cmd = ["nice", "-n", "19", sys.executable, "-c", "from cytoscreen.cli import app; app()"]
        proc = subprocess.Popen(
            cmd + args,
            env={**worker_env(), "COLUMNS": "250"},  # one line per slide
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=out.parent,
            start_new_session=True,  # a local:N run's workers are stopped with it
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        finally:
            stop_processes([proc])
        return subprocess.CompletedProcess(proc.args, proc.returncode, output, "")

    return run
