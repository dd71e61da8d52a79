"""One run at a time per results folder: a lock file that appears with its content.

The lock holds ``{"pid", "host", "started"}``. It is written to a temporary file first and
hard-linked into place (the link fails if a lock exists), so a live run's lock is never seen
empty: an empty or unreadable lock was left by a crash or damage and is stale at once. Where the
file system has no hard links, the lock is created with O_EXCL and then written; there an empty
lock may be a run that is just starting, so it only counts as stale after
``UNREADABLE_GRACE_S``. A lock left by a process that has died on this host is stale too. A
stale lock is removed and taken over; a live one (or one from another host, whose process
cannot be checked) refuses the run with a message saying how to proceed.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from cytoscreen.errors import RunLocked
from cytoscreen.fsutil import read_json_object

LOCK_NAME = ".screen.lock"
UNREADABLE_GRACE_S = (
    30.0  # without hard links: a lock still empty after this long was left by a crash
)
# link() errors meaning "this file system has no hard links" (not "the lock exists")
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


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


def _write_all(fd: int, body: bytes) -> None:
    """Write ``body`` to the open file ``fd``, make it durable and close it."""
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())


class RunLock:
    """``with RunLock(results_dir):`` holds the folder's lock for the duration of the block."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False
        self.linked = True  # False once the folder turns out to have no hard links

    def _read(self) -> dict[str, object] | None:
        return read_json_object(self.path)

    def _is_stale(self) -> bool:
        info = self._read()
        if info is None:
            if self.linked:  # a linked lock always has its content: this one is debris
                return True
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
            subject=self.path.parent,
            hint=f"wait for it to finish or use another --out; if no such run exists any more, "
            f"delete {self.path}",
        )

    def _create(self, body: bytes) -> None:
        """Make the lock file holding ``body``; FileExistsError when there is one already."""
        if self.linked:
            fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=self.path.parent)
            try:
                _write_all(fd, body)
                os.link(tmp, self.path)
                return
            except OSError as exc:
                if isinstance(exc, FileExistsError) or exc.errno not in _NO_LINKS:
                    raise
                self.linked = False  # no hard links here: fall back to O_EXCL below
            finally:
                Path(tmp).unlink(missing_ok=True)
        _write_all(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), body)

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
                self._create(body)
            except FileExistsError:
                if not self._is_stale():
                    raise self._refuse() from None
                self.path.unlink(missing_ok=True)  # stale: its owner died; take it over
                continue
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
