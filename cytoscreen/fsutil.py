"""Small file helpers: atomic writes (a temporary file in the target folder, fsynced, then
``os.replace``), reading back JSON that may be missing or torn, and file digests."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cytoscreen.errors import WriteFailed


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` so readers see either the old file or the whole new one, never a part.

    Raises ``WriteFailed`` naming ``path`` when it cannot be written (disk full, permissions).
    """
    target = Path(path)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise WriteFailed(
            f"cannot write this file ({exc.strerror or exc})", subject=target
        ) from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Indented UTF-8 JSON; NaN/inf are refused (write None for "no value")."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable, not JSON or not an
    object (a file being written by another process, or left torn by a crash)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def private_dir(path: str | Path) -> Path:
    """Make ``path`` a folder only its owner can use (0o700 when this call creates it).

    Raises ``WriteFailed`` when ``path`` is a symbolic link (one planted inside a results or
    cache folder could redirect medical records elsewhere) or not a folder.
    """
    p = Path(path)
    if p.is_symlink():
        raise WriteFailed(
            "is a symbolic link; refusing to write through it",
            subject=p,
            hint="remove the link, or give the real folder it points to",
        )
    if not p.exists():
        try:
            p.mkdir(mode=0o700, parents=True)
            os.chmod(p, 0o700)  # mkdir's mode is narrowed by the umask, never widened
        except FileExistsError:
            pass
        except OSError as exc:
            raise WriteFailed(
                f"cannot create this folder ({exc.strerror or exc})", subject=p
            ) from exc
    if not p.is_dir() or p.is_symlink():
        raise WriteFailed("is not a folder", subject=p, hint="give a folder path")
    return p


def shown_path(path: str | Path) -> str:
    """``path`` as a record should show it: relative to the working directory when it lies
    under it (a calibration made in a checkout then names ``work/...``, not one machine's
    absolute path), else absolute."""
    full = Path(path).resolve()
    try:
        return str(full.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(full)
