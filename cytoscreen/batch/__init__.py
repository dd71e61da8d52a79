"""Batch plumbing for ``cytoscreen screen``: discovery and ids, atomic files and reading them
back, the run lock, crash isolation of native readers, and console progress."""

from cytoscreen.batch.discover import SLIDE_EXTENSIONS, SlideInput, find_slides, slide_id
from cytoscreen.batch.isolate import ChildCrashed, run_isolated, warm_up
from cytoscreen.batch.lock import RunLock
from cytoscreen.fsutil import (
    file_sha256,
    private_dir,
    read_json_object,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

__all__ = [
    "SLIDE_EXTENSIONS",
    "ChildCrashed",
    "RunLock",
    "SlideInput",
    "file_sha256",
    "find_slides",
    "private_dir",
    "read_json_object",
    "run_isolated",
    "slide_id",
    "warm_up",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
