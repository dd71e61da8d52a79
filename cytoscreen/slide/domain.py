"""Is a slide like the training data? A stain, colour and texture profile, and its distance.

A slide's *profile* is a handful of robust statistics of a sample of its cached foreground
patches (uint8 RGB): how bright its glass is, how many pixels are near black or clipped white,
how much of the sample is stained, how dense its darkest stain is, how coloured the stain is,
whether that colour lies on the haematoxylin-eosin plane, how much of it is green, the mix of
stain hues, and the fine texture of stained areas. A *reference* holds the centre and spread
of each statistic over slides known to be in the training domain (generated Pap slides; see
``cytoscreen domain-reference``). The *shift* of a slide is its largest robust z-distance
from the reference, ``|value - centre| / max(spread, floor)``: each statistic has a floor on
its spread, so a reference fitted to a few similar slides does not call every small difference
a shift. The statistic that is furthest away names what was unlike (``DomainCheck.note``).

Pure numpy: arrays in, values out. Reading patches from a cache and the reference file is the
caller's work (:mod:`cytoscreen.resolve`); ``DomainReference.from_dict``/``to_dict`` convert
the JSON record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

REFERENCE_FORMAT = 1
REFERENCE_KIND = "cytoscreen-domain-reference"

# A pixel is stained when its mean optical density (over R, G, B, against the sample's glass)
# exceeds this; the same scale as ``foreground.od_threshold`` on the low-resolution view.
STAINED_OD = 0.1
# fewer stained pixels in the sample (about one cell's worth at 0.5 um/px): the stain
# statistics are not measured
MIN_STAINED = 2000
DARK_MAX = 60  # a pixel whose brightest channel is below this is near black
CLIPPED_MIN = 250  # a pixel whose darkest channel is at or above this is clipped white
GLASS_QUANTILE = 0.95  # the glass is the median colour of the brightest 5% of the sample
DENSEST_SHARE = 0.1  # the darkest tenth of the stained pixels (mostly nuclei)
COLOURED_SATURATION = 0.1  # HSV saturation above which a stained pixel has a hue
HUE_BINS = 12
GREEN_HUES = (70.0, 150.0)  # degrees: yellow-green to green, hues Pap and H&E stains hardly give
# degrees: hues of Pap's counterstains (Orange G, light green) outside the pink-purple arc of
# haematoxylin and eosin
COUNTERSTAIN_HUES = (15.0, 255.0)
MAX_PIXELS = 2_000_000  # pixels used for the colour statistics (evenly strided beyond this)


UInt8Patches = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Feature:
    """One profile statistic: its spread floor and what to say when a slide is far from it."""

    name: str
    floor: float  # the reference spread is never taken below this
    low: str  # note when the slide is far below the reference
    high: str  # note when the slide is far above the reference
    stain: bool = True  # needs stained pixels (not measured without them)


FEATURES: tuple[Feature, ...] = (
    Feature(
        "background",
        6.0,
        "dark background (fluorescence-like or underexposed)",
        "background brighter than the reference glass (overexposed)",
        stain=False,
    ),
    Feature(
        "dark_share",
        0.02,
        "fewer near-black pixels than Pap slides",
        "many near-black pixels (fluorescence-like, dark-field or underexposed)",
        stain=False,
    ),
    Feature(
        "clipped_share",
        0.05,
        "less clipped white than the reference",
        "much of the image is clipped white (overexposed or saturated scan)",
        stain=False,
    ),
    Feature(
        "stained_log10_share",
        0.35,
        "almost no stain (blank or washed-out scan)",
        "stain covers most of the image (a tissue section, not a cytology preparation)",
        stain=False,
    ),
    Feature(
        "dense_log10_od",
        0.035,
        "darkest stain too faint (washed-out or overexposed scan)",
        "darkest stain denser than Pap nuclei",
    ),
    Feature(
        "chroma",
        0.015,
        "no stain colour (greyscale-like image)",
        "stain colours more saturated than Pap",
    ),
    Feature(
        "counterstain_log10_share",
        0.1,
        "stain unlike Pap: haematoxylin-eosin-like hue (little orange or blue-green counterstain)",
        "more orange and blue-green stain than Pap slides",
    ),
    Feature(
        "green_share",
        0.012,
        "less green stain than the reference",
        "green stained pixels unlike Pap (colour channels swapped?)",
    ),
    Feature(
        "hue_distance",
        0.08,  # 0.1 until 2026-12-07: one GBR-rotated test slide came out at z 5.5 (in-domain
        # calibration slides reach 4.0 at 0.08; docs/usage.md)
        "hue mix closer to the reference mean than usual",
        "mix of stain hues unlike Pap (another stain, or colour channels swapped?)",
    ),
    Feature(
        "texture",
        0.04,
        "stained areas smoother than Pap cells (blurred or not cells?)",
        "stained areas more finely textured than Pap cells (noise or another material?)",
    ),
)
FEATURE_NAMES = tuple(f.name for f in FEATURES)
_BY_NAME = {f.name: f for f in FEATURES}


# ------------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class DomainProfile:
    """The statistics of one slide's sample. Stain statistics are absent when the sample has
    fewer than ``MIN_STAINED`` stained pixels; ``hue_hist`` is None when no stained pixel is
    coloured (a greyscale image)."""

    n_patches: int
    n_pixels: int
    n_stained: int
    values: Mapping[str, float]  # hue_distance is not here: it needs a reference
    hue_hist: tuple[float, ...] | None

    @property
    def stain_measured(self) -> bool:
        return self.n_stained >= MIN_STAINED

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_patches": self.n_patches,
            "n_pixels": self.n_pixels,
            "n_stained": self.n_stained,
            "values": {k: round(float(v), 6) for k, v in self.values.items()},
            "hue_hist": None if self.hue_hist is None else [round(h, 6) for h in self.hue_hist],
        }


# Reductions over the 3 colour channels, written out: the same numbers as ``x.mean(axis=1)``
# and friends (the same additions in the same order), 4-10x faster on millions of pixels,
# where numpy's reduction over a length-3 axis is slow. The domain check runs at the end of
# every slide's screen.
def _channel_max(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.maximum(np.maximum(x[..., 0], x[..., 1]), x[..., 2])


def _channel_min(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.minimum(np.minimum(x[..., 0], x[..., 1]), x[..., 2])


def _channel_sum(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return (x[..., 0] + x[..., 1]) + x[..., 2]


def _channel_mean(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return _channel_sum(x) / np.float32(3)


def _hue_saturation(
    rgb: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """HSV hue in degrees [0, 360) and saturation [0, 1] of (n, 3) pixels (any scale)."""
    mx = _channel_max(rgb)
    mn = _channel_min(rgb)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    h = np.where(
        mx == r,
        ((g - b) / safe) % 6.0,
        np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    h = np.where(d > 0, h * 60.0, 0.0)
    sat = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return h.astype(np.float32), sat.astype(np.float32)


def _texture(lum: npt.NDArray[np.float32], glass: float) -> float | None:
    """Mean |Laplacian| of brightness over stained pixels, per grey level of their darkness."""
    if lum.shape[1] < 3 or lum.shape[2] < 3:
        return None
    core = lum[:, 1:-1, 1:-1]
    lap = 4.0 * core - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1] - lum[:, 1:-1, :-2] - lum[:, 1:-1, 2:]
    m = core < glass * 10.0 ** (-STAINED_OD)
    if m.sum() < MIN_STAINED:
        return None
    darkness = float((glass - core[m]).mean())
    return float(np.abs(lap[m]).mean() / max(darkness, 1.0))


def _stain_values(
    px: npt.NDArray[np.float32], od: npt.NDArray[np.float32]
) -> tuple[dict[str, float], tuple[float, ...] | None]:
    """Statistics of stained pixels (``px`` their RGB, ``od`` their optical densities)."""
    total = _channel_sum(od)
    k = max(1, int(round(DENSEST_SHARE * total.size)))
    share = od / total[:, None]
    values = {
        # log10: stain strength multiplies optical density, so a washed-out scan is as far
        # below the reference as a doubly stained one is above it
        "dense_log10_od": float(np.log10(max(np.sort(total)[-k:].mean() / 3.0, 1e-3))),
        "chroma": float(np.median(np.sqrt(_channel_sum(np.square(share - 1.0 / 3.0))))),
    }
    hue, sat = _hue_saturation(px)
    coloured = hue[sat > COLOURED_SATURATION]
    if coloured.size == 0:  # no hue at all: the counterstain share is not measured
        values["green_share"] = 0.0
        return values, None
    lo, hi = GREEN_HUES
    values["green_share"] = float(((coloured >= lo) & (coloured < hi)).mean())
    lo, hi = COUNTERSTAIN_HUES
    counter = float(((coloured >= lo) & (coloured < hi)).mean())
    values["counterstain_log10_share"] = math.log10(max(counter, 1e-3))
    hist = np.histogram(coloured, bins=HUE_BINS, range=(0.0, 360.0))[0]
    return values, tuple(float(v) for v in hist / coloured.size)


def profile_patches(patches: npt.ArrayLike) -> DomainProfile:
    """The domain profile of a sample of foreground patches, (n, h, w, 3) uint8 RGB."""
    arr = np.asarray(patches)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3:
        raise ValueError(f"expected (n, h, w, 3) uint8 patches, got {arr.dtype} {arr.shape}")
    n_pixels = int(arr.shape[0] * arr.shape[1] * arr.shape[2])
    if n_pixels == 0:
        raise ValueError("no patches to profile")
    flat = arr.reshape(-1, 3)
    step = max(1, math.ceil(flat.shape[0] / MAX_PIXELS))
    sampled = flat[::step]
    clipped_share = float((_channel_min(sampled) >= CLIPPED_MIN).mean())
    # pure white is what a reader gives beyond the scan's edge (patches at the slide border):
    # left out of every statistic but the clipped share
    px = sampled[_channel_min(sampled) < 255].astype(np.float32)
    if px.shape[0] == 0:
        return DomainProfile(
            n_patches=int(arr.shape[0]),
            n_pixels=n_pixels,
            n_stained=0,
            values={
                "background": 255.0,
                "dark_share": 0.0,
                "clipped_share": clipped_share,
                "stained_log10_share": -6.0,
            },
            hue_hist=None,
        )
    lum = _channel_mean(px)
    glass_rgb = np.median(px[lum >= np.quantile(lum, GLASS_QUANTILE)], axis=0)
    glass = float(glass_rgb.mean())
    od = np.clip(-np.log10(np.maximum(px, 1.0) / np.maximum(glass_rgb, 1.0)), 0.0, 3.0)
    mean_od = _channel_mean(od)
    stained = mean_od > STAINED_OD
    n_stained_sample = int(stained.sum())
    values: dict[str, float] = {
        "background": glass,
        "dark_share": float((_channel_max(px) < DARK_MAX).mean()),
        "clipped_share": clipped_share,
        "stained_log10_share": math.log10(max(n_stained_sample / px.shape[0], 1e-6)),
    }
    n_stained = n_stained_sample * step  # in all the sample's pixels (estimated when strided)
    hue_hist: tuple[float, ...] | None = None
    if n_stained >= MIN_STAINED and n_stained_sample > 0:
        stain, hue_hist = _stain_values(px[stained], od[stained])
        values.update(stain)
        tex = _texture(_channel_mean(arr.astype(np.float32)), glass)
        if tex is not None:
            values["texture"] = tex
    return DomainProfile(
        n_patches=int(arr.shape[0]),
        n_pixels=n_pixels,
        n_stained=n_stained,
        values=values,
        hue_hist=hue_hist,
    )


def hue_distance(hist: Sequence[float] | None, reference: Sequence[float]) -> float:
    """Total-variation distance of two hue histograms (1 = disjoint; no hues at all = 1)."""
    if hist is None:
        return 1.0
    return float(0.5 * np.abs(np.asarray(hist, float) - np.asarray(reference, float)).sum())


# ------------------------------------------------------------------------------- reference


@dataclass(frozen=True)
class FeatureRef:
    """Centre (median) and spread (1.4826 x MAD) of a statistic over the reference slides."""

    centre: float
    spread: float
    minimum: float
    maximum: float
    n: int


@dataclass(frozen=True)
class DomainReference:
    features: Mapping[str, FeatureRef]
    hue_hist: tuple[float, ...]
    source: Mapping[str, Any] = field(default_factory=dict)  # what data it was made from

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REFERENCE_FORMAT,
            "kind": REFERENCE_KIND,
            "features": {
                k: {
                    "centre": round(v.centre, 6),
                    "spread": round(v.spread, 6),
                    "floor": _BY_NAME[k].floor,
                    "min": round(v.minimum, 6),
                    "max": round(v.maximum, 6),
                    "n": v.n,
                }
                for k, v in self.features.items()
            },
            "hue_hist": [round(h, 6) for h in self.hue_hist],
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainReference:
        """Validate a reference record; raises ``ValueError`` naming what is wrong."""
        if data.get("kind") != REFERENCE_KIND or data.get("format") != REFERENCE_FORMAT:
            raise ValueError(
                f"not a format-{REFERENCE_FORMAT} {REFERENCE_KIND} record "
                f"(kind {data.get('kind')!r}, format {data.get('format')!r})"
            )
        raw = data.get("features")
        if not isinstance(raw, Mapping):
            raise ValueError("'features' must be a mapping")
        missing = [n for n in FEATURE_NAMES if n not in raw]
        unknown = [n for n in raw if n not in _BY_NAME]
        if missing or unknown:
            raise ValueError(f"features missing {missing}, unknown {unknown}")
        feats = {}
        for name in FEATURE_NAMES:
            r = raw[name]
            try:
                ref = FeatureRef(
                    float(r["centre"]),
                    float(r["spread"]),
                    float(r["min"]),
                    float(r["max"]),
                    int(r["n"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"feature {name!r}: {exc!r}") from None
            if not all(map(math.isfinite, (ref.centre, ref.spread))) or ref.spread < 0:
                raise ValueError(f"feature {name!r}: centre and spread must be finite, spread >= 0")
            feats[name] = ref
        hist = data.get("hue_hist")
        if (
            not isinstance(hist, Sequence)
            or len(hist) != HUE_BINS
            or not all(isinstance(h, int | float) and h >= 0 for h in hist)
        ):
            raise ValueError(f"'hue_hist' must be {HUE_BINS} non-negative numbers")
        source = data.get("source", {})
        return cls(feats, tuple(float(h) for h in hist), dict(source) if source else {})


def fit_reference(
    profiles: Sequence[DomainProfile], source: Mapping[str, Any] | None = None
) -> DomainReference:
    """The reference of in-domain slides: per statistic the median and 1.4826 x MAD."""
    usable = [p for p in profiles if p.stain_measured and p.hue_hist is not None]
    if len(usable) < 3:
        raise ValueError(
            f"a reference needs at least 3 in-domain slides with stain, got {len(usable)}"
        )
    hue_hist = np.mean([np.asarray(p.hue_hist, float) for p in usable], axis=0)
    hue_hist = hue_hist / hue_hist.sum()
    columns: dict[str, list[float]] = {n: [] for n in FEATURE_NAMES}
    for p in usable:
        vals = {**p.values, "hue_distance": hue_distance(p.hue_hist, hue_hist)}
        for n in FEATURE_NAMES:
            if n in vals:
                columns[n].append(float(vals[n]))
    feats = {}
    for n, xs in columns.items():
        if not xs:
            raise ValueError(f"no reference slide measured {n!r}")
        x = np.asarray(xs)
        centre = float(np.median(x))
        spread = 1.4826 * float(np.median(np.abs(x - centre)))
        feats[n] = FeatureRef(centre, spread, float(x.min()), float(x.max()), int(x.size))
    return DomainReference(feats, tuple(float(h) for h in hue_hist), dict(source or {}))


# ------------------------------------------------------------------------------- shift


@dataclass(frozen=True)
class DomainCheck:
    """A slide's distance from the reference.

    ``shift`` is the largest robust z over the measured statistics. ``measured`` is False when
    the sample held too few stained pixels to judge the stain: the slide cannot be called
    in-domain then, whatever the shift. ``note`` names what was furthest from the reference.
    """

    shift: float
    z: Mapping[str, float]  # signed: below (-) or above (+) the reference centre
    measured: bool
    note: str

    def off_domain(self, limit: float | None) -> bool:
        """Unlike the training data: not measurable, or shifted beyond ``limit``. Without a
        limit the check is off: the shift is recorded, nothing is flagged."""
        return limit is not None and (not self.measured or self.shift > limit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shift": round(self.shift, 4),
            "measured": self.measured,
            "z": {k: round(v, 3) for k, v in self.z.items()},
            "note": self.note,
        }


def _describe(name: str, z: float) -> str:
    f = _BY_NAME[name]
    return f"{f.high if z > 0 else f.low} ({name} z={z:+.1f})"


def compare(
    profile: DomainProfile, reference: DomainReference, limit: float | None = None
) -> DomainCheck:
    """The robust z of each measured statistic, and the largest as the shift.

    The note describes what is unlike the reference: every statistic beyond ``limit`` (the
    worst three); when none is, it names the largest difference without calling it one.
    """
    vals = dict(profile.values)
    if profile.stain_measured:
        vals["hue_distance"] = hue_distance(profile.hue_hist, reference.hue_hist)
    z: dict[str, float] = {}
    for f in FEATURES:
        if f.name in vals:
            ref = reference.features[f.name]
            z[f.name] = (vals[f.name] - ref.centre) / max(ref.spread, f.floor)
    ranked = sorted(z, key=lambda k: -abs(z[k]))
    shift = abs(z[ranked[0]]) if ranked else 0.0
    beyond = [k for k in ranked if limit is not None and abs(z[k]) > limit][:3]
    if beyond:
        parts = [_describe(k, z[k]) for k in beyond]
    else:
        within = "" if limit is None else f", within {limit:g}"
        parts = [f"largest difference {ranked[0]} z={z[ranked[0]]:+.1f}{within}"] if ranked else []
    measured = profile.stain_measured
    if not measured:
        parts.insert(
            0,
            f"too little stain to judge it ({profile.n_stained} stained pixels in "
            f"{profile.n_patches} patches; at least {MIN_STAINED} needed)",
        )
    return DomainCheck(shift=shift, z=z, measured=measured, note="; ".join(parts))


# ------------------------------------------------------------------------------- sample


def sample_indices(
    valid: npt.ArrayLike,
    foreground: npt.ArrayLike,
    chunk: int,
    *,
    n_patches: int = 64,
    n_chunks: int = 8,
) -> npt.NDArray[np.int64]:
    """About ``n_patches`` patches to profile: the most cell-bearing valid patches of up to
    ``n_chunks`` storage chunks spread evenly over the slide (so a sample decodes few chunks)."""
    if chunk < 1 or n_patches < 1 or n_chunks < 1:
        raise ValueError("chunk, n_patches and n_chunks must be >= 1")
    ok = np.asarray(valid, bool)
    fg = np.asarray(foreground, np.float64)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return np.zeros(0, np.int64)
    chunks = np.unique(idx // chunk)
    spots = np.linspace(0, chunks.size - 1, min(n_chunks, chunks.size)).round().astype(np.int64)
    pick = chunks[np.unique(spots)]
    per_chunk = math.ceil(n_patches / pick.size)
    out = []
    for c in pick:
        members = idx[idx // chunk == c]
        out.append(np.sort(members[np.argsort(-fg[members], kind="stable")[:per_chunk]]))
    return np.concatenate(out).astype(np.int64)
