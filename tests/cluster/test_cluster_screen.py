"""Issue 15: ``cytoscreen screen --scheduler`` on a real dask.distributed cluster (a ``dask
scheduler`` and two ``dask worker`` processes on 127.0.0.1). The results equal a local run's;
resume and the retry of failed slides work as locally; a worker killed mid-slide has its slide
screened again elsewhere, to the same result; a native reader crash fails that slide only; a
worker that cannot write the results folder fails its slides with an error naming the slide
and the worker; ``local:N`` starts a LocalCluster."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cytoscreen.config import load_config
from cytoscreen.pipeline import screen

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # cluster_helper: its plugins are pickled by reference
from cluster_helper import CrashNamedSlides, HoldMidSlide, models_loaded  # noqa: E402
from dask_procs import DaskCluster, dask_cluster  # noqa: E402

pytestmark = pytest.mark.slow

VOLATILE = ("timings", "started", "finished", "cache")  # when and where, not what
CRASH = "segfault.tiff"  # crashes the test workers' reader (CrashNamedSlides)


def _records(out: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for p in sorted((out / "slides").glob("*/result.json")):
        r = json.loads(p.read_text(encoding="utf-8"))
        found[Path(r["path"]).name] = r
    return found


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["path"]).name: r for r in csv.DictReader(fh)}


def _same(a: Any, b: Any, where: str = "") -> None:
    """Equal, floats to a relative 1e-6."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or a == b, (where, a, b)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), (where, sorted(a.keys() ^ b.keys()))
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _assert_equals_local(out: Path, local: Path, names: set[str]) -> None:
    ours, theirs = _records(out), _records(local)
    for name in names:
        a = {k: v for k, v in ours[name].items() if k not in VOLATILE}
        b = {k: v for k, v in theirs[name].items() if k not in VOLATILE}
        _same(a, b, name)
        assert set(ours[name]) == set(theirs[name]), name  # the same fields, volatile ones too
    rows, local_rows = _summary(out), _summary(local)
    for name in names:
        rows[name].pop("seconds"), local_rows[name].pop("seconds")
        assert rows[name] == local_rows[name], name


@pytest.fixture(scope="module")
def local_run(
    tmp_path_factory: pytest.TempPathFactory, slide_folder: Path, model_dir: Path, config_path: Path
) -> Path:
    out = tmp_path_factory.mktemp("local") / "results"
    screen([slide_folder], out, load_config(config_path), model_dir=model_dir)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    from distributed import Client

    with dask_cluster(tmp_path_factory.mktemp("cluster"), 2) as running:
        with Client(running.address, timeout=30) as client:
            client.register_plugin(CrashNamedSlides())
        yield running


def test_cluster_run_equals_local_run_and_resumes(
    cluster: DaskCluster, local_run: Path, slide_folder: Path, run_cli: Any, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    out = tmp_path / "results"
    run = run_cli([slide_folder], out, "--scheduler", cluster.address)
    assert run.returncode == 1, run.stdout + cluster.log_tail()  # broken.svs, segfault.tiff
    assert "summary.csv" in run.stdout and "slides" in run.stdout
    records = _records(out)
    assert set(records) == set(_records(local_run))
    # a native crash in a worker's slide reader fails that slide alone, naming it
    crashed = records[CRASH]
    assert crashed["status"] == "failed" and "SIGSEGV" in crashed["error"]
    assert str(slide_folder / CRASH) in crashed["error"]
    assert records["broken.svs"]["error"] == _records(local_run)["broken.svs"]["error"]
    ok = {"negative.tiff", "positive.tiff", "blank.tiff"}
    assert all(records[n]["status"] == "ok" for n in ok)
    _assert_equals_local(out, local_run, ok | {"broken.svs"})
    info = json.loads((out / "run.json").read_text())
    assert info["cluster"]["scheduler"] == cluster.address
    assert set(info["cluster"]["slides"]) == {r["id"] for r in records.values()}
    assert all(w.startswith("tcp://127.0.0.1:") for w in info["cluster"]["slides"].values())
    assert all(s["device"] == "cpu" for s in info["cluster"]["workers"].values())
    assert info["n_failed"] == 2
    print(f"cluster run: {time.monotonic() - t0:.1f} s")
    from distributed import Client

    with Client(cluster.address, timeout=30) as client:  # each worker loaded the model once
        loaded = client.run(models_loaded)
    assert set(loaded.values()) <= {0, 1} and sum(loaded.values()) >= 1, loaded

    # resume: finished slides are skipped, failed ones are tried again
    again = run_cli([slide_folder], out, "--scheduler", cluster.address)
    assert again.returncode == 1, again.stdout
    for name in ok:
        assert f"{name}: skipped (done before)" in again.stdout, again.stdout
    for name in ("broken.svs", CRASH):
        assert f"{name}: failed" in again.stdout
    assert _records(out)[CRASH]["finished"] >= crashed["finished"]
    _assert_equals_local(out, local_run, ok)


def test_worker_killed_mid_slide_is_screened_elsewhere_to_the_same_result(
    cluster: DaskCluster, local_run: Path, slide_folder: Path, run_cli: Any, tmp_path: Path
) -> None:
    from distributed import Client

    marks = tmp_path / "marks"
    marks.mkdir()
    killed: list[dict[str, Any]] = []
    stop = threading.Event()

    def kill_first_held() -> None:
        deadline = time.monotonic() + 240
        while not stop.is_set() and time.monotonic() < deadline:
            held = sorted(marks.glob("*.json"))
            if held:
                mark = json.loads(held[0].read_text())
                os.kill(mark["pid"], signal.SIGKILL)  # a worker process this test's cluster made
                killed.append(mark)
                return
            time.sleep(0.05)

    out = tmp_path / "results"
    with Client(cluster.address, timeout=30) as client:
        client.register_plugin(HoldMidSlide(str(marks), hold_s=3.0))
        try:
            watcher = threading.Thread(target=kill_first_held, daemon=True)
            watcher.start()
            run = run_cli([slide_folder], out, "--scheduler", cluster.address)
        finally:
            stop.set()
            client.unregister_worker_plugin(HoldMidSlide.name)
    assert killed, "no slide was held: nothing was killed"
    assert run.returncode == 1, run.stdout + cluster.log_tail()
    mark = killed[0]
    info = json.loads((out / "run.json").read_text())
    # the held slide was finished by another worker process (the restarted one has a new port)
    assert info["cluster"]["slides"][mark["slide"]] != mark["worker"]
    records = _records(out)
    ok = {"negative.tiff", "positive.tiff", "blank.tiff"}
    assert all(records[n]["status"] == "ok" for n in ok)
    assert mark["slide"] in {records[n]["id"] for n in ok}
    _assert_equals_local(out, local_run, ok | {"broken.svs"})


def test_local_cluster_of_two_workers(
    local_run: Path, slide_folder: Path, run_cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    names = ["negative.tiff", "positive.tiff"]
    run = run_cli([slide_folder / n for n in names], out, "--scheduler", "local:2")
    assert run.returncode == 0, run.stdout
    info = json.loads((out / "run.json").read_text())
    assert info["cluster"]["scheduler"] == "local:2" and len(info["cluster"]["slides"]) == 2
    _assert_equals_local(out, local_run, set(names))


@pytest.mark.filterwarnings("ignore:Mismatched versions found")  # its own python, see below
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="runs a worker as another user (needs root and setpriv)",
)
def test_worker_that_cannot_write_the_results_folder_names_slide_and_worker(
    slide_folder: Path, model_dir: Path, run_cli: Any
) -> None:
    from distributed import Client

    shared = Path(tempfile.mkdtemp(prefix="cytoscreen-cluster-"))
    try:
        shared.chmod(0o755)  # the slides are readable by the other user; the results are not
        slides = shared / "slides"
        slides.mkdir()
        for name in ("negative.tiff", "blank.tiff"):
            shutil.copy(slide_folder / name, slides / name)
        home = shared / "home"
        home.mkdir()
        home.chmod(0o777)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        # no nanny: where the interpreter lies in a folder the other user cannot read, it
        # cannot start the nanny's worker process (the check fails before any child process)
        with dask_cluster(
            shared / "cluster", 1, prefix=nobody, home=home, worker_args=["--no-nanny"]
        ) as running:
            with Client(running.address, timeout=30) as client:
                (worker,) = client.scheduler_info()["workers"]
            out = shared / "results"
            run = run_cli([slides], out, "--scheduler", running.address)
        assert run.returncode == 1, run.stdout
        records = _records(out)
        assert set(records) == {"negative.tiff", "blank.tiff"}
        for name, r in records.items():
            assert r["status"] == "failed"
            assert str(slides / name) in r["error"] and worker in r["error"], r["error"]
            assert "cannot write the results folder" in r["error"]
            assert "shared storage" in r["error"]
        assert {r["status"] for r in _summary(out).values()} == {"failed"}
    finally:
        shutil.rmtree(shared, ignore_errors=True)
