"""Content-based slide identity, used as the patch-cache key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cytoscreen.config import check_mpp
from cytoscreen.errors import InvalidMpp, UnreadableSlide

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

    ``mpp_override`` is mixed in, because it changes which pixels a patch covers.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        digest = hashlib.sha256(_SCHEME)
        digest.update(size.to_bytes(8, "little"))
        with p.open("rb") as fh:
            for offset, length in _sample_spans(size):
                fh.seek(offset)
                digest.update(fh.read(length))
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
