"""Screening on a dask.distributed cluster: each slide is one task on a worker.

``pipeline.screen`` with ``cache.scheduler_address`` (``cytoscreen screen --scheduler``) hands
its slides to :class:`ClusterRun`, which submits one task per slide and yields the results as
they finish; the driver keeps the lock on the results folder, the progress bar, the summaries
and the exit code. A task (:func:`screen_task`) checks that its worker can serve the slide
(same cytoscreen version, a worker process allowed to start the slide reader's child
processes, the slide file and the results folder visible: they must be shared storage), then
runs :func:`cytoscreen.slide_task.screen_one` exactly as a local run does, writing the slide's
files into the results folder itself.

Each worker loads the model once: :class:`ScorerPlugin`, a worker plugin, keeps the scorer
(CUDA when the worker has a GPU and ``scoring.device`` is ``auto``) for every slide that
worker screens, and a lock so that its threads take turns on the model.

A worker that dies mid-slide (killed, out of memory) loses its task; the scheduler runs it
again on another worker (``distributed.scheduler.allowed-failures`` times, 3 by default) and
the slide is screened from where its patch cache got to, to the same result. A task that
raises (a worker that cannot see the shared storage) is retried ``TASK_RETRIES`` times, then
the driver writes the slide's ``failed`` record with the error, which names the worker.

``local:N`` as the address starts a ``LocalCluster`` of N single-threaded worker processes on
this machine for the run.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

import cytoscreen
from cytoscreen.batch import SlideInput, private_dir
from cytoscreen.config import local_cluster_size
from cytoscreen.errors import CytoscreenError, WriteFailed
from cytoscreen.resolve import DEFAULT_MODEL_DIR, ModelChoice
from cytoscreen.slide_result import SlideResult, slide_folder, write_result
from cytoscreen.slide_task import ScreenJob, failed_result, screen_one

if TYPE_CHECKING:
    from distributed import Client, Worker

    from cytoscreen.scoring.scorer import Scorer

PLUGIN_NAME = "cytoscreen-scorer"
TASK_RETRIES = 2  # a task that raised (worker cannot serve the slide) runs again this often
CONNECT_TIMEOUT_S = 30.0
DAEMON_HINT = (
    "start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False in their environment (or "
    "`dask worker --no-nanny`): each slide is read in a child process of its worker"
)
SHARED_HINT = (
    "in a cluster run the slides, the results folder (--out) and the patch cache must be on "
    "shared storage that every worker sees at the same path and can write"
)


class ClusterError(CytoscreenError):
    """A worker that cannot serve a slide, or a cluster that cannot run the screen. Its text
    travels from a worker to the driver whole (it pickles as its one message)."""


def local_workers(address: str) -> int | None:
    """N of a ``local:N`` address (a LocalCluster of N workers), None for a scheduler address.
    Raises ``ClusterError`` for ``local:`` with a bad N."""
    if not (address == "local" or address.startswith("local:")):
        return None
    n = local_cluster_size(address)
    if n is None:
        raise ClusterError(
            "not a cluster address",
            subject=address,
            hint="give local:N (N workers on this machine, 1-256) or a dask scheduler's address "
            "such as tcp://HOST:8786",
        )
    return n


@contextmanager
def connect(address: str) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a LocalCluster for ``local:N`` (started
    here with worker processes allowed to start child processes, stopped on leaving)."""
    import dask
    from distributed import Client, LocalCluster

    n = local_workers(address)
    if n is not None:
        with (
            dask.config.set({"distributed.worker.daemon": False}),  # also for restarted workers
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the dask scheduler ({exc})",
            subject=address,
            hint="start it with `dask scheduler` (its log prints the address, tcp://HOST:8786), "
            "check the host and port and that this machine may connect to it",
        ) from None
    with client:
        yield client


# ---------------------------------------------------------------- on the worker


def worker_facts() -> dict[str, Any]:
    """What the driver checks of a worker before the run (run there by ``Client.run``)."""
    return {
        "version": cytoscreen.__version__,
        "daemon": bool(multiprocessing.current_process().daemon),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def worker_problem(facts: dict[str, Any], version: str) -> str | None:
    """Why a worker with ``facts`` cannot screen for a driver of ``version``; None if it can."""
    if facts.get("version") != version:
        return (
            f"runs cytoscreen {facts.get('version')}, this run is cytoscreen {version}: "
            "install the same version on every worker"
        )
    if facts.get("daemon"):
        return f"runs as a daemon process, which may not start child processes: {DAEMON_HINT}"
    return None


def _scorer_key(job: ScreenJob) -> tuple[str, ...]:
    """What a worker's cached scorer depends on: the model, the scoring settings and the
    calibration (which may decide the precision, ``ModelChoice.scorer``)."""
    cal = job.calibration.key if job.calibration is not None else ""
    return (str(job.model.dir), job.model.model_id, job.cfg.hash("scoring"), cal)


class ScorerPlugin(WorkerPlugin):
    """The worker's scorer, loaded once on first use and kept for every slide it screens
    (only the latest model and scoring settings are kept), with the lock its threads take
    turns on it with."""

    name = PLUGIN_NAME
    idempotent = True  # registered again by a later run: the loaded model stays

    def setup(self, worker: Worker) -> None:
        from cytoscreen.batch import warm_up

        self._lock = threading.Lock()
        self.score_lock = threading.Lock()
        self._scorers: dict[tuple[str, ...], Scorer] = {}
        self.loads = 0  # models loaded by this worker
        warm_up()  # the fork server of the slide readers' child processes

    def scorer(self, job: ScreenJob) -> Scorer:
        key = _scorer_key(job)
        with self._lock:
            if key not in self._scorers:
                self._scorers.clear()
                self._scorers[key] = job.model.scorer(job.cfg, job.calibration)
                self.loads += 1
            return self._scorers[key]

    def describe(self, job: ScreenJob) -> dict[str, str] | None:
        """How the worker scores for ``job`` (``Scorer.describe()``); None if not loaded."""
        found = self._scorers.get(_scorer_key(job))
        return found.describe() if found is not None else None


_FALLBACK: dict[str, ScorerPlugin] = {}


def _plugin(worker: Worker) -> ScorerPlugin:
    plugin = worker.plugins.get(PLUGIN_NAME)
    if isinstance(plugin, ScorerPlugin):
        return plugin
    if "plugin" not in _FALLBACK:  # not registered on this worker: one of its own
        own = ScorerPlugin()
        own.setup(worker)
        _FALLBACK["plugin"] = own
    return _FALLBACK["plugin"]


@dataclass(frozen=True)
class SlideDone:
    """What a slide's task sends back: its record (already written into the results folder),
    whether it was skipped as done before, the worker, how it scored and the run's warnings
    seen there."""

    result: SlideResult
    skipped: bool
    worker: str
    scoring: dict[str, str] | None = None
    warnings: tuple[str, ...] = ()


def _check_storage(slide: SlideInput, job: ScreenJob, where: str) -> None:
    if not slide.path.exists():
        raise ClusterError(
            f"worker {where} ({socket.gethostname()}) cannot see the slide file",
            subject=slide.path,
            hint=SHARED_HINT,
        )
    if not job.out_dir.is_dir():
        raise ClusterError(
            f"worker {where} ({socket.gethostname()}) cannot see the results folder {job.out_dir}",
            subject=slide.path,
            hint=SHARED_HINT,
        )
    folder = slide_folder(job.out_dir, slide.id)
    try:
        private_dir(folder)
        writable = os.access(folder, os.W_OK | os.X_OK)
    except (OSError, WriteFailed) as exc:
        writable, why = False, f" ({exc})"
    else:
        why = ""
    if not writable:
        raise ClusterError(
            f"worker {where} ({socket.gethostname()}) cannot write the results folder "
            f"{job.out_dir}{why}",
            subject=slide.path,
            hint=SHARED_HINT,
        )


def _worker_model(job: ScreenJob, bundled: bool, slide: SlideInput, where: str) -> ModelChoice:
    """The job's model as this worker finds it: its own copy of the bundled model, or the
    model folder on shared storage."""
    from cytoscreen.scoring.card import CARD_NAME, read_card

    if bundled:
        model = ModelChoice(DEFAULT_MODEL_DIR, job.model.card)
        if read_card(DEFAULT_MODEL_DIR).model_id != job.model.model_id:
            raise ClusterError(
                f"worker {where} has another bundled model than this run's ({job.model.model_id})",
                subject=slide.path,
                hint="install the same cytoscreen on every worker",
            )
        return model
    if not (job.model.dir / CARD_NAME).is_file():
        raise ClusterError(
            f"worker {where} ({socket.gethostname()}) cannot see the model folder {job.model.dir}",
            subject=slide.path,
            hint="put the model (--model) on storage every worker sees at the same path",
        )
    return job.model


def screen_task(slide: SlideInput, job: ScreenJob, version: str, bundled: bool) -> SlideDone:
    """One slide on a dask worker: check that the worker can serve it, then screen it as a
    local run would (``screen_one``, which writes the slide's files). Raises ``ClusterError``
    naming the worker and the slide when the worker cannot serve it."""
    from distributed import get_worker

    worker = get_worker()
    where = worker.address
    problem = worker_problem(worker_facts(), version)
    if problem:
        raise ClusterError(f"worker {where} {problem}", subject=slide.path)
    _check_storage(slide, job, where)
    job = replace(job, model=_worker_model(job, bundled, slide, where))
    plugin = _plugin(worker)
    result, skipped = screen_one(
        slide, job, lambda: plugin.scorer(job), scoring_lock=plugin.score_lock
    )
    how = plugin.describe(job)
    return SlideDone(
        result, skipped, where, how, tuple(job.run_warnings(how)) if how is not None else ()
    )


# ---------------------------------------------------------------- on the driver


def failure_text(err: BaseException, slide: SlideInput) -> str:
    """The error of a slide whose task came back without a result."""
    from distributed.scheduler import KilledWorker

    if isinstance(err, CytoscreenError):
        return str(err)
    if isinstance(err, KilledWorker):
        return str(
            CytoscreenError(
                f"the cluster gave up on this slide: each worker that screened it died ({err})",
                subject=slide.path,
                hint="check the workers' logs (memory limit, a crash outside the isolated "
                "slide reader) and rerun this slide alone with `cytoscreen screen FILE`",
            )
        )
    if isinstance(err, CancelledError):
        return str(
            CytoscreenError(
                "the slide's task was cancelled on the cluster (the scheduler restarted or "
                "this machine lost its connection)",
                subject=slide.path,
                hint="screen the folder again: finished slides are kept",
            )
        )
    return str(
        CytoscreenError(
            f"{type(err).__name__} on a dask worker: {err}",
            subject=slide.path,
            hint="check that every worker has the same cytoscreen installed as this machine, "
            "and the worker's log",
        )
    )


@dataclass
class ClusterRun:
    """A batch's slides as tasks on the cluster behind ``client``.

    After :meth:`screen`, ``slides`` maps each slide id to the worker that screened it,
    ``scoring`` each worker to how it scored, and ``warnings`` holds the run's warnings seen
    on the workers (a calibration made with another runtime or precision).
    """

    client: Client
    job: ScreenJob
    slides: dict[str, str] = field(default_factory=dict)
    scoring: dict[str, dict[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def _scheduler(self) -> str | None:
        scheduler = self.client.scheduler
        return str(scheduler.address) if scheduler is not None else None

    def check_workers(self) -> None:
        """Refuse the run when a worker already connected cannot screen (cytoscreen missing or
        of another version, a daemon process; workers that join later are checked by each
        task), and give the workers the scorer plugin."""
        try:
            facts = self.client.run(worker_facts)
            self.client.register_plugin(ScorerPlugin())
        except Exception as exc:  # noqa: BLE001 - a worker that cannot load cytoscreen
            raise ClusterError(
                f"the workers cannot run cytoscreen ({type(exc).__name__}: {exc})",
                subject=self._scheduler(),
                hint="install the same cytoscreen (and its dependencies) on every worker as "
                "on this machine",
            ) from None
        bad = [
            f"{addr} ({info.get('host')}): {problem}"
            for addr, info in sorted(facts.items())
            if (problem := worker_problem(info, cytoscreen.__version__))
        ]
        if bad:
            raise ClusterError(
                "workers of the cluster cannot screen: " + "; ".join(bad),
                subject=self._scheduler(),
            )

    def _failed(self, slide: SlideInput, err: BaseException, started: datetime) -> SlideResult:
        """Write and return the ``failed`` record of a slide whose task gave no result."""
        result = failed_result(self.job.provenance(slide), failure_text(err, slide))
        stamped = result.model_copy(
            update={
                "started": started.isoformat(timespec="seconds"),
                "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        write_result(private_dir(slide_folder(self.job.out_dir, slide.id)), stamped)
        return stamped

    def screen(
        self, slides: Sequence[SlideInput]
    ) -> Iterator[tuple[SlideInput, SlideResult, bool]]:
        """Submit every slide and yield (slide, result, skipped) as each finishes."""
        from distributed import as_completed

        self.check_workers()
        started = datetime.now(UTC)
        bundled = self.job.model.dir.resolve() == DEFAULT_MODEL_DIR.resolve()
        token = f"{os.getpid()}-{time.time_ns()}"
        futures = {
            self.client.submit(
                screen_task,
                s,
                self.job,
                cytoscreen.__version__,
                bundled,
                key=f"cytoscreen-{s.id}-{token}",
                retries=TASK_RETRIES,
                pure=False,
            ): s
            for s in slides
        }
        for fut in as_completed(futures):
            slide = futures[fut]
            try:
                done: SlideDone = fut.result()
            except (Exception, CancelledError) as err:  # noqa: BLE001 - recorded as the slide's
                yield slide, self._failed(slide, err, started), False
                continue
            finally:
                fut.release()
            self.slides[slide.id] = done.worker
            if done.scoring is not None:
                self.scoring[done.worker] = done.scoring
            self.warnings.extend(w for w in done.warnings if w not in self.warnings)
            yield slide, done.result, done.skipped


def cluster_job(job: ScreenJob) -> ScreenJob:
    """``job`` as the workers run it: absolute paths (a worker's current folder is not this
    one's), and tiling on the worker's own threads (a slide task that sent its tiling back to
    the cluster would wait for workers busy with slides)."""
    cache = job.cfg.cache.model_copy(update={"scheduler_address": None})
    return replace(
        job,
        cfg=job.cfg.model_copy(update={"cache": cache}),
        out_dir=job.out_dir.resolve(),
        cache_dir=job.cache_dir.resolve(),
        model=replace(job.model, dir=job.model.dir.resolve()),
    )
