"""Run a function in a child process, so a native crash (segfault, abort) in a slide reader
becomes that slide's failure instead of the end of the batch.

The child is started from a fork server (cheap, and it never inherits the parent's threads,
torch or open slides) and sends progress and its result back through a queue. A child whose
caller dies (a killed screen, a killed dask worker) exits at once instead of writing on into a
patch cache that a rerun, or the worker that took over the slide, is writing too. An exception in
the child comes back as the same ``CytoscreenError`` class (message, slide and hint kept);
any other exception becomes a ``CytoscreenError`` naming its type.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from cytoscreen import errors
from cytoscreen.errors import CytoscreenError

ProgressFn = Callable[[int, int], None]
# imported once by the fork server, so that each slide's child starts with them loaded
# (matplotlib: the heatmap's colour map, 0.15 s a child would otherwise import itself)
_PRELOAD = [
    "cytoscreen.batch.isolate",
    "cytoscreen.tiling.cache",
    "cytoscreen.outputs.images",
    "matplotlib",
]
_POLL_S = 0.1
_PARENT_POLL_S = 0.5
ORPHAN_EXIT = 70  # the status of a child that exited because its parent died
_UNEXPECTED_HINT = (
    "the file may be damaged, or this is a bug: check the file, rerun this slide alone and "
    "report the message if it persists"
)


class ChildCrashed(CytoscreenError):
    default_hint = (
        "the slide reader crashed on this file: check that it is a complete whole-slide image, "
        "or try --backend openslide / --backend tiffslide"
    )


def _context() -> Any:
    if sys.platform.startswith("linux"):
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def warm_up() -> None:
    """Start the fork server now, without waiting: it imports the preloaded modules while the
    caller goes on (loading the model), instead of when the first slide needs a child."""
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _exit_with(parent: int) -> None:
    """Exit this process (status ``ORPHAN_EXIT``) as soon as process ``parent`` is gone.

    Its own parent is the fork server, which outlives the process that asked for the child
    as long as the child runs, so the child watches that process: through a pidfd where there
    is one (Linux 5.3: no polling, no reused ids), else by its id every ``_PARENT_POLL_S``.
    """
    try:
        fd: int | None = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(ORPHAN_EXIT)
    except (AttributeError, OSError):  # no pidfd here
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
            os._exit(ORPHAN_EXIT)
        while True:
            time.sleep(_PARENT_POLL_S)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(ORPHAN_EXIT)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _child(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], q: Any, parent: int
) -> None:
    _exit_with(parent)

    def progress(done: int, total: int) -> None:
        q.put(("progress", (int(done), int(total))))

    try:
        if kwargs.pop("_with_progress", False):
            kwargs["progress"] = progress
        q.put(("ok", fn(*args, **kwargs)))
    except CytoscreenError as err:
        q.put(("error", (type(err).__name__, err.message, err.subject, err.hint)))
    except BaseException as err:  # noqa: BLE001 - everything must reach the parent
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        q.put(("error", ("CytoscreenError", detail, None, _UNEXPECTED_HINT)))


def _rebuild(info: tuple[str, str, str | None, str | None], slide: str) -> CytoscreenError:
    name, message, where, hint = info
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, CytoscreenError)):
        cls = CytoscreenError
    return cls(message, subject=where or slide, hint=hint)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code} without a result"


def run_isolated(
    fn: Callable[..., Any],
    *args: Any,
    slide: str,
    progress: ProgressFn | None = None,
    **kwargs: Any,
) -> Any:
    """``fn(*args, **kwargs)`` in a child process; returns its (picklable) result.

    With ``progress``, ``fn`` is called with a ``progress=`` keyword whose calls are relayed.
    Raises the child's ``CytoscreenError``, or ``ChildCrashed`` naming ``slide`` when the child
    dies without a result.
    """
    ctx = _context()
    q = ctx.Queue()
    if progress is not None:
        kwargs["_with_progress"] = True
    proc = ctx.Process(target=_child, args=(fn, args, kwargs, q, os.getpid()), daemon=True)
    proc.start()
    try:
        while True:
            try:
                kind, payload = q.get(timeout=_POLL_S)
            except queue_mod.Empty:
                if not proc.is_alive():
                    try:  # the result may have landed just before the exit
                        kind, payload = q.get(timeout=_POLL_S)
                    except queue_mod.Empty:
                        proc.join()
                        raise ChildCrashed(
                            f"the worker process {_describe_exit(proc.exitcode)}", subject=slide
                        ) from None
                else:
                    continue
            if kind == "progress":
                if progress is not None:
                    progress(*payload)
                continue
            proc.join()
            if kind == "ok":
                return payload
            raise _rebuild(payload, slide)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join()
        q.close()
