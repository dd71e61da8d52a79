"""Real dask processes for the cluster tests: a ``dask scheduler`` and ``dask worker``
processes on 127.0.0.1 (free ports; each process started in its own process group and stopped
with its children on leaving, whatever happened). Imported by name (this folder on sys.path);
no pytest here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
SCREEN_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(home: Path | None = None) -> dict[str, str]:
    """The environment of the test's dask and cytoscreen processes: this checkout and the test
    helpers importable, workers allowed to start child processes, one thread each."""
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "tests" / "robustness"), str(HERE)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    env["OMP_NUM_THREADS"] = "1"
    if home is not None:
        env["HOME"] = str(home)
        env["MPLCONFIGDIR"] = str(home)
    return env


def stop_processes(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group, wait, then SIGKILL whatever is left of each group."""
    for p in reversed(procs):
        if p.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs:
        with suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    for p in procs:  # the group too: a worker's children (fork server, slide readers)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            p.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class DaskCluster:
    address: str
    logs: Path
    workers: int

    def log_tail(self, n: int = 4000) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-n:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


@contextmanager
def dask_cluster(
    root: Path,
    n_workers: int,
    *,
    prefix: Sequence[str] = (),
    home: Path | None = None,
    worker_args: Sequence[str] = (),
) -> Iterator[DaskCluster]:
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes (one thread each,
    with a nanny that restarts a killed worker unless ``worker_args`` says --no-nanny), each
    worker command run after ``prefix``; all stopped on leaving."""
    from distributed import Client

    root.mkdir(parents=True, exist_ok=True)
    local = root / "worker-space"  # the processes' folder: writable by a worker of any user
    local.mkdir(exist_ok=True)
    local.chmod(0o777)
    procs: list[subprocess.Popen[bytes]] = []
    env = worker_env(home)

    def start(cmd: list[str], log: str) -> None:
        with (root / log).open("wb") as fh:
            procs.append(
                subprocess.Popen(
                    ["nice", "-n", "19", *cmd],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=local,
                    start_new_session=True,
                )
            )

    try:
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        start(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
            + ["--no-dashboard"],
            "scheduler.log",
        )
        for i in range(n_workers):
            start(
                [*prefix, str(DASK), "worker", address, "--host", "127.0.0.1"]
                + ["--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"w{i}"]
                + ["--local-directory", str(local), "--death-timeout", "60", *worker_args],
                f"worker{i}.log",
            )
        cluster = DaskCluster(address, root, n_workers)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the scheduler may take a moment to listen
            try:
                with Client(address, timeout=10) as client:
                    client.wait_for_workers(n_workers, timeout=START_TIMEOUT_S)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        yield cluster
    except BaseException:
        print(DaskCluster("", root, n_workers).log_tail())  # why it did not start
        raise
    finally:
        stop_processes(procs)
