"""Helpers shared by the backends: pixel conversion and the mpp rule (pure functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from cytoscreen.config import check_mpp
from cytoscreen.errors import InvalidMpp, MissingMpp
from cytoscreen.io.base import RGBArray


class ReaderLifecycle:
    """What every backend shares: associated images on request only, context management, and
    pickling by path (a worker process reopens the file; native handles cannot travel).
    ``_slide`` is the backend's OpenSlide-compatible slide object."""

    path: Path
    _mpp_override: float | None
    _slide: Any

    def associated_names(self) -> tuple[str, ...]:
        """Names of the associated images (listing reads no pixels)."""
        return tuple(self._slide.associated_images.keys())

    def associated_image(self, name: str) -> RGBArray:
        """Read one associated image (label, macro, thumbnail). May show patient identity."""
        names = self.associated_names()
        if name not in names:
            raise no_such_associated(self.path, name, names)
        return to_rgb_on_white(np.asarray(self._slide.associated_images[name]))

    def close(self) -> None:  # pragma: no cover - each backend closes its own handles
        raise NotImplementedError

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (type(self), self.path, self._mpp_override))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


_R = TypeVar("_R", bound=ReaderLifecycle)


def _reopen(cls: type[_R], path: Path, mpp: float | None) -> _R:
    return cls(path, mpp=mpp)  # type: ignore[call-arg]


def to_rgb_on_white(pixels: npt.NDArray[np.generic], *, premultiplied: bool = False) -> RGBArray:
    """Any (h, w), (h, w, 1|2|3|4) uint8 array -> (h, w, 3) RGB with alpha composited on white.

    ``premultiplied`` says the colour channels were already multiplied by alpha (associated
    alpha); otherwise alpha is straight (OpenSlide's Python binding and unassociated TIFF alpha).
    """
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[..., np.newaxis]
    channels = arr.shape[2]
    if channels in (2, 4):  # grey+alpha or RGBA
        colour, alpha = arr[..., :-1], arr[..., -1:]
        if channels == 2:
            colour = np.repeat(colour, 3, axis=2)
        if bool(np.all(alpha == 255)):
            return np.ascontiguousarray(colour)
        a = alpha.astype(np.float32) / 255.0
        c = colour.astype(np.float32)
        out = c + 255.0 * (1.0 - a) if premultiplied else c * a + 255.0 * (1.0 - a)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if channels == 1:
        return np.repeat(arr, 3, axis=2)
    if channels == 3:
        return np.ascontiguousarray(arr)
    raise ValueError(f"cannot convert {channels}-channel pixels to RGB")


def _as_float(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def resolve_mpp(
    path: str | Path,
    slide_mpp_x: object,
    slide_mpp_y: object,
    override: float | None,
) -> tuple[float, float, Literal["slide", "override"]]:
    """Level-0 (mpp_x, mpp_y, source): the override if given, else what the slide records.

    Raises ``InvalidMpp`` for an override (or recorded value) that is 0, negative, NaN, infinite
    or outside 0.05-20 um/px, and ``MissingMpp`` when the slide records none and no override is
    given. Both name the slide.
    """
    if override is not None:
        try:
            value = check_mpp(override, what="the --mpp override")
        except (TypeError, ValueError) as exc:
            raise InvalidMpp(str(exc), subject=path) from None
        assert value is not None
        return value, value, "override"
    x, y = _as_float(slide_mpp_x), _as_float(slide_mpp_y)
    if x is None and y is None:
        raise MissingMpp(
            "the slide does not record its resolution (micrometres per pixel)", subject=path
        )
    x = x if x is not None else y
    y = y if y is not None else x
    assert x is not None and y is not None
    for axis, v in (("x", x), ("y", y)):
        if not _plausible(v):
            raise InvalidMpp(
                f"the slide records an implausible resolution ({axis}: {v!r} um/px)",
                subject=path,
                hint="pass the true scan resolution with --mpp (micrometres per pixel, 0.05-20)",
            )
    return x, y, "slide"


def _plausible(value: float) -> bool:
    try:
        check_mpp(value)
    except ValueError:
        return False
    return True


def check_region(path: Path, meta_levels: int, level: int, size: tuple[int, int]) -> None:
    """Refuse a level that does not exist or a non-positive size, naming the slide."""
    if not 0 <= level < meta_levels:
        raise ValueError(f"{path}: level {level} does not exist (levels 0-{meta_levels - 1})")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"{path}: region size must be positive, got {size!r}")


def no_such_associated(path: Path, name: str, available: tuple[str, ...]) -> KeyError:
    listed = ", ".join(available) or "none"
    return KeyError(f"{path}: no associated image {name!r} (this slide has: {listed})")
