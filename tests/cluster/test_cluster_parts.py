"""The parts of a cluster run that need no cluster: the address forms, the checks a worker
makes before a slide, the texts of slides whose task came back without a result, and the job
that travels to the workers (the runs on a real cluster: test_cluster_screen.py, slow)."""

from __future__ import annotations

import pickle
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from cytoscreen.batch import SlideInput
from cytoscreen.cluster import (
    ClusterError,
    _check_storage,
    cluster_job,
    failure_text,
    local_workers,
    worker_facts,
    worker_problem,
)
from cytoscreen.config import load_config
from cytoscreen.errors import ConfigError
from cytoscreen.pipeline import screen
from cytoscreen.resolve import resolve_calibration, resolve_model
from cytoscreen.slide_task import ScreenJob

WORKER = "tcp://10.0.0.7:40001"


@pytest.fixture
def job(model_dir: Path, config_path: Path, tmp_path: Path) -> ScreenJob:
    cfg = load_config(config_path, {"cache.scheduler_address": "tcp://10.0.0.1:8786"})
    model = resolve_model(cfg, model_dir)
    (tmp_path / "out").mkdir()
    return ScreenJob(
        cfg, tmp_path / "out", tmp_path / "cache", model, resolve_calibration(cfg, model)
    )


def _slide(path: Path) -> SlideInput:
    return SlideInput(path, path.name, f"{path.stem}-12345678")


def test_local_n_and_scheduler_addresses() -> None:
    assert local_workers("local:3") == 3
    assert local_workers("tcp://10.0.0.1:8786") is None
    assert local_workers("localhost:8786") is None  # a host name, not local:N
    for bad in ("local", "local:0", "local:x", "local:999"):
        with pytest.raises(ClusterError, match="local:N"):
            local_workers(bad)
        with pytest.raises(ConfigError, match="local:N"):
            load_config(None, {"cache.scheduler_address": bad})
    assert load_config(None, {"cache.scheduler_address": "local:2"}).cache.scheduler_address


def test_a_bad_local_address_stops_the_run_before_anything_is_written(
    tmp_path: Path, model_dir: Path
) -> None:
    from cytoscreen.config import CacheConfig, Config

    cfg = Config().model_copy(
        update={"cache": CacheConfig.model_construct(scheduler_address="local:0")}
    )
    with pytest.raises(ClusterError, match="local:0"):
        screen([tmp_path], tmp_path / "out", cfg, model_dir=model_dir)
    assert not (tmp_path / "out").exists()


def test_worker_problems_say_what_to_do() -> None:
    facts = worker_facts()
    assert worker_problem(facts, facts["version"]) is None or facts["daemon"]
    older = worker_problem({**facts, "version": "0.0.1"}, "9.9")
    assert older and "0.0.1" in older and "9.9" in older
    daemon = worker_problem({**facts, "daemon": True}, facts["version"])
    assert daemon and "DASK_DISTRIBUTED__WORKER__DAEMON=False" in daemon


def test_storage_the_worker_cannot_see_or_write_names_slide_and_worker(
    job: ScreenJob, tmp_path: Path
) -> None:
    missing = _slide(tmp_path / "elsewhere" / "s1.svs")
    with pytest.raises(ClusterError) as err:
        _check_storage(missing, job, WORKER)
    text = str(err.value)
    assert str(missing.path) in text and WORKER in text and "cannot see the slide" in text
    assert "shared storage" in text

    slide_file = tmp_path / "s2.svs"
    slide_file.write_bytes(b"x")
    slide = _slide(slide_file)
    gone = ScreenJob(job.cfg, tmp_path / "no-results", job.cache_dir, job.model)
    with pytest.raises(ClusterError, match="cannot see the results folder"):
        _check_storage(slide, gone, WORKER)
    (job.out_dir / "slides").mkdir()
    (job.out_dir / "slides" / slide.id).write_text("a file where the slide's folder goes")
    with pytest.raises(ClusterError) as err:
        _check_storage(slide, job, WORKER)
    text = str(err.value)
    assert "cannot write the results folder" in text and WORKER in text and str(slide_file) in text
    ok = _slide(tmp_path / "s2.svs")
    _check_storage(SlideInput(ok.path, ok.relative, "other-00000000"), job, WORKER)


def test_a_worker_error_reaches_the_driver_whole() -> None:
    err = ClusterError(f"worker {WORKER} cannot see the slide file", subject="/s.svs", hint="do")
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err)
    assert failure_text(back, _slide(Path("/s.svs"))) == str(err)


def test_slides_without_a_result_say_why() -> None:
    from distributed.scheduler import KilledWorker

    slide = _slide(Path("/data/s.svs"))

    class Worker:  # what KilledWorker holds of the last worker
        address = WORKER

    killed = failure_text(KilledWorker("cytoscreen-s", Worker(), 3), slide)  # type: ignore[arg-type]
    assert killed.startswith("/data/s.svs: ") and "died" in killed and "logs" in killed
    cancelled = failure_text(CancelledError(), slide)
    assert "cancelled" in cancelled and "again" in cancelled
    other = failure_text(ModuleNotFoundError("No module named 'cytoscreen'"), slide)
    assert "ModuleNotFoundError" in other and "same cytoscreen" in other


def test_the_job_travels_with_absolute_paths_and_tiles_on_the_worker(
    job: ScreenJob, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = ScreenJob(job.cfg, Path("out"), Path("cache"), job.model, job.calibration)
    sent = pickle.loads(pickle.dumps(cluster_job(relative)))
    assert sent.cfg.cache.scheduler_address is None
    assert sent.out_dir == tmp_path / "out" and sent.cache_dir == tmp_path / "cache"
    assert sent.model.dir.is_absolute() and sent.model.model_id == job.model.model_id
    assert sent.run_key == job.run_key  # the same results: resume matches local records
    assert sent.calibration is not None and job.calibration is not None
    assert sent.calibration.calibration.threshold == job.calibration.calibration.threshold


class _Client:
    """What ``ClusterRun.check_workers`` asks of a distributed.Client."""

    class scheduler:  # the attribute it reads, named as the client names it
        address = "tcp://10.0.0.1:8786"

    def __init__(self, facts: dict[str, dict[str, object]] | Exception) -> None:
        self.facts = facts
        self.plugins: list[object] = []

    def run(self, fn: object) -> dict[str, dict[str, object]]:
        if isinstance(self.facts, Exception):
            raise self.facts
        return self.facts

    def register_plugin(self, plugin: object) -> None:
        self.plugins.append(plugin)


def test_workers_that_cannot_screen_stop_the_run_naming_them(job: ScreenJob) -> None:
    from cytoscreen.cluster import ClusterRun, ScorerPlugin

    good = {**worker_facts(), "daemon": False}
    fine = _Client({"tcp://10.0.0.8:1": good})
    ClusterRun(fine, job).check_workers()  # type: ignore[arg-type]
    assert [type(p) for p in fine.plugins] == [ScorerPlugin]
    mixed = _Client({WORKER: {**good, "daemon": True}, "tcp://10.0.0.8:1": good})
    with pytest.raises(ClusterError) as err:
        ClusterRun(mixed, job).check_workers()  # type: ignore[arg-type]
    text = str(err.value)
    assert WORKER in text and "DASK_DISTRIBUTED__WORKER__DAEMON=False" in text
    assert "10.0.0.8" not in text and text.startswith("tcp://10.0.0.1:8786: ")
    missing = _Client(ModuleNotFoundError("No module named 'cytoscreen'"))
    with pytest.raises(ClusterError, match="same cytoscreen"):
        ClusterRun(missing, job).check_workers()  # type: ignore[arg-type]
