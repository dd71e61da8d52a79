"""Content-based slide identity, used as the patch-cache key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cytoscreen.config import check_mpp
from cytoscreen.errors import InvalidMpp, UnreadableSlide
from cytoscreen.io.dicom import dicom_files, is_dicom_slide, slide_folder

EDGE_BYTES = 4 * 1024 * 1024  # hashed in full at the start and at the end of the file
BLOCK_BYTES = 64 * 1024  # size of each evenly spaced block in between
N_BLOCKS = 32  # number of evenly spaced blocks
_SCHEME = b"cytoscreen-slide-key-v1"


def _sample_spans(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the byte spans hashed for a file of ``size`` bytes."""
    if size <= 2 * EDGE_BYTES + N_BLOCKS * BLOCK_BYTES:
        return [(0, size)]
    spans = [(0, EDGE_BYTES)]
    middle_start, middle_end = EDGE_BYTES, size - EDGE_BYTES - BLOCK_BYTES
    step = (middle_end - middle_start) / (N_BLOCKS - 1)
    spans += [(middle_start + round(i * step), BLOCK_BYTES) for i in range(N_BLOCKS)]
    spans.append((size - EDGE_BYTES, EDGE_BYTES))
    return spans


def _file_digest(path: Path, digest: hashlib._Hash) -> None:
    size = path.stat().st_size
    digest.update(size.to_bytes(8, "little"))
    with path.open("rb") as fh:
        for offset, length in _sample_spans(size):
            fh.seek(offset)
            digest.update(fh.read(length))


def _series_digest(folder: Path, digest: hashlib._Hash) -> None:
    """A DICOM series: each file keyed as above, in an order set by content, not by name."""
    keys = []
    for f in dicom_files(folder):
        one = hashlib.sha256(_SCHEME)
        _file_digest(f, one)
        keys.append(one.digest())
    digest.update(b"dicom-series")
    for k in sorted(keys):
        digest.update(k)


def slide_key(path: str | Path, *, mpp_override: float | None = None) -> str:
    """A 32-hex-digit identity of a slide's content (not its path), plus any mpp override.

    Hashes (sha256) the file size, the first and last 4 MiB and 32 evenly spaced 64 KiB blocks;
    files up to ~10 MiB are hashed whole. About 10 MiB is read whatever the file size, so a
    multi-GB slide is keyed in well under a second, and a renamed or moved slide keeps its key.

    Trade-off: an edit that leaves the size unchanged and touches only unsampled bytes (e.g. one
    re-encoded tile in the middle of a 2 GB file) keeps the same key. Whole-slide files are
    written once by the scanner, and their headers and tile offset tables (sampled at both ends)
    change with almost any rewrite, so this is accepted for speed. Two byte-identical copies
    share a key, which is intended: they share a cache.

    A DICOM slide (a folder holding a series, or one ``.dcm`` file of it) is keyed by each of
    its folder's ``.dcm`` files the same way, so renaming the files or the folder keeps the key.

    ``mpp_override`` is mixed in, because it changes which pixels a patch covers.
    """
    p = Path(path)
    try:
        digest = hashlib.sha256(_SCHEME)
        if is_dicom_slide(p):
            _series_digest(slide_folder(p), digest)
        else:
            _file_digest(p, digest)
    except OSError as exc:
        raise UnreadableSlide(
            f"cannot read the file to key its cache ({exc.strerror or exc})",
            subject=p,
            hint="check the path and that the file is readable",
        ) from exc
    if mpp_override is not None:
        try:
            value = check_mpp(mpp_override, what="the --mpp override")
        except (TypeError, ValueError) as exc:
            raise InvalidMpp(str(exc), subject=p) from None
        digest.update(f"mpp={value!r}".encode())
    return digest.hexdigest()[:32]
