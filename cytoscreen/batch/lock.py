"""One run at a time per results folder: a lock file created with O_EXCL.

The lock holds ``{"pid", "host", "started"}``. A lock left by a process that has died on this
host is stale: it is removed and taken over. A live lock (or one from another host, whose
process cannot be checked) refuses the run with a message saying how to proceed.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from cytoscreen.errors import RunLocked

LOCK_NAME = ".screen.lock"
UNREADABLE_GRACE_S = 30.0  # a lock still empty after this long was left by a crash


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(results_dir):`` holds the folder's lock for the duration of the block."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def _read(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _is_stale(self) -> bool:
        info = self._read()
        if info is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > UNREADABLE_GRACE_S
        pid = info.get("pid")
        same_host = info.get("host") == socket.gethostname()
        return same_host and isinstance(pid, int) and not pid_alive(pid)

    def _refuse(self) -> RunLocked:
        info = self._read() or {}
        who = (
            f"process {info.get('pid')} on {info.get('host')} since {info.get('started')}"
            if info
            else "another process"
        )
        return RunLocked(
            f"another cytoscreen screen run is using this results folder ({who})",
            slide=self.path.parent,
            hint=f"wait for it to finish or use another --out; if no such run exists any more, "
            f"delete {self.path}",
        )

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        ).encode()
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._is_stale():
                    raise self._refuse() from None
                self.path.unlink(missing_ok=True)  # stale: its owner died; take it over
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            self.held = True
            return
        raise self._refuse()

    def release(self) -> None:
        if self.held:
            info = self._read()
            if info is not None and info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
