"""The domain check: profile statistics, the reference record, the shift, and what it flags.

In-domain patches come from small generated Pap slides tiled as the screen tiles them; the
off-domain ones from the real H&E slide and from transforms of the in-domain sample.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from cytoscreen.config import Config
from cytoscreen.io import open_slide
from cytoscreen.resolve import DEFAULT_MODEL_DIR, DOMAIN_NAME, sample_patches
from cytoscreen.slide import TriageSettings
from cytoscreen.slide.domain import (
    FEATURE_NAMES,
    MIN_STAINED,
    DomainProfile,
    DomainReference,
    compare,
    fit_reference,
    hue_distance,
    profile_patches,
    sample_indices,
)
from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide
from cytoscreen.synth.tiffwriter import write_array_tiff
from cytoscreen.tiling import open_cache, tile_slide

Patches = npt.NDArray[np.uint8]
LIMIT = TriageSettings().max_domain_shift
TINY = Config.model_validate(
    {"tiling": {"patch_size": 32, "target_mpp": 0.5}, "cache": {"workers": 1}}
)


@pytest.fixture(scope="module")
def reference() -> DomainReference:
    """The reference shipped with the default model."""
    data = json.loads((DEFAULT_MODEL_DIR / DOMAIN_NAME).read_text(encoding="utf-8"))
    return DomainReference.from_dict(data)


@pytest.fixture(scope="module")
def pap(tmp_path_factory: pytest.TempPathFactory) -> list[Patches]:
    """Patch samples of two small generated Pap slides (a negative and a positive)."""
    root = tmp_path_factory.mktemp("pap")
    kit = bundled_kit()
    out = []
    for seed, label in ((11, "negative"), (12, "positive")):
        path = root / f"{label}.tiff"
        spec = SlideSpec(
            size=768,
            label=label,  # type: ignore[arg-type]
            seed=seed,
            density=3000.0,
            n_abnormal=4 if label == "positive" else None,
        )
        generate_slide(path, spec, kit)
        sample = sample_patches(open_cache(tile_slide(path, TINY, root / "cache")))
        assert sample is not None
        out.append(sample)
    return out


@pytest.fixture(scope="module")
def he(tmp_path_factory: pytest.TempPathFactory, cmu1_path: Path) -> Patches:
    """A patch sample of a 1024 px crop of the real H&E slide, tiled like the Pap slides."""
    root = tmp_path_factory.mktemp("he")
    with open_slide(cmu1_path) as reader:
        region = reader.read_region((500, 1200), 0, (1024, 1024))
        mpp = reader.meta.mpp
    path = root / "he.tif"
    write_array_tiff(path, np.ascontiguousarray(region[..., :3]), mpp=mpp)
    sample = sample_patches(open_cache(tile_slide(path, TINY, root / "cache")))
    assert sample is not None
    return sample


def _stain_scaled(p: Patches, factor: float) -> Patches:
    glass = np.percentile(p.reshape(-1, 3), 99, axis=0).astype(np.float32)
    od = -np.log10(np.maximum(p.astype(np.float32), 1.0) / glass)
    return np.clip(glass * 10.0 ** (-factor * od), 0, 255).astype(np.uint8)


OFF_DOMAIN: dict[str, tuple[Callable[[Patches], Patches], str]] = {
    "greyscale": (
        lambda p: p.mean(axis=3, keepdims=True).round().astype(np.uint8).repeat(3, 3),
        "greyscale-like",
    ),
    "channels rotated (GBR)": (
        lambda p: np.ascontiguousarray(p[..., [1, 2, 0]]),
        "colour channels swapped",
    ),
    "fluorescence-like (inverted)": (lambda p: 255 - p, "near-black"),
    "overexposed": (
        lambda p: np.clip(p.astype(np.float32) * 1.6, 0, 255).astype(np.uint8),
        "clipped white",
    ),
    "underexposed": (lambda p: (p.astype(np.float32) * 0.5).astype(np.uint8), "dark background"),
    "washed out": (lambda p: _stain_scaled(p, 0.15), "too faint"),
}


# ------------------------------------------------------------------ what is flagged


def test_the_default_limit_is_set() -> None:
    assert LIMIT is not None and LIMIT > 0


def test_generated_pap_slides_are_in_domain(pap: list[Patches], reference: DomainReference) -> None:
    for sample in pap:
        check = compare(profile_patches(sample), reference, LIMIT)
        assert check.measured, check.note
        assert check.shift < LIMIT, check.note
        assert not check.off_domain(LIMIT)


def test_real_he_slide_is_flagged_as_haematoxylin_eosin(
    he: Patches, reference: DomainReference
) -> None:
    check = compare(profile_patches(he), reference, LIMIT)
    assert check.off_domain(LIMIT) and check.shift > LIMIT
    assert "haematoxylin-eosin-like hue" in check.note
    assert check.z["counterstain_log10_share"] < -LIMIT  # Pap's orange/blue-green is missing


@pytest.mark.parametrize("kind", sorted(OFF_DOMAIN))
def test_off_domain_transforms_are_flagged_with_a_reason(
    kind: str, pap: list[Patches], reference: DomainReference
) -> None:
    fn, words = OFF_DOMAIN[kind]
    for sample in pap:
        check = compare(profile_patches(fn(sample)), reference, LIMIT)
        assert check.off_domain(LIMIT), f"{kind}: {check.note}"
        assert words in check.note, check.note


def test_near_blank_cannot_be_judged_and_is_flagged(
    pap: list[Patches], reference: DomainReference
) -> None:
    faint = _stain_scaled(pap[0], 0.03)
    profile = profile_patches(faint)
    assert not profile.stain_measured
    check = compare(profile, reference, LIMIT)
    assert not check.measured and check.off_domain(LIMIT)
    assert check.note.startswith("too little stain to judge it")
    assert not check.off_domain(None)  # only "no limit" turns the check off


def test_all_white_sample_is_flagged(reference: DomainReference) -> None:
    profile = profile_patches(np.full((4, 32, 32, 3), 255, np.uint8))
    assert profile.n_stained == 0 and profile.values["clipped_share"] == 1.0
    assert compare(profile, reference, LIMIT).off_domain(LIMIT)


def test_red_blue_swap_keeps_the_palette_statistics(pap: list[Patches]) -> None:
    """Pap's palette (orange, pink, purple, blue) maps largely onto itself when red and blue
    are swapped: the statistics that are symmetric in R and B must not change (this is why a
    BGR scan of a Pap slide is not reliably flagged; docs/usage.md says so)."""
    a = profile_patches(pap[0])
    b = profile_patches(np.ascontiguousarray(pap[0][..., ::-1]))
    for name in ("dark_share", "clipped_share", "stained_log10_share", "dense_log10_od", "chroma"):
        assert b.values[name] == pytest.approx(a.values[name], rel=1e-6, abs=1e-9), name


# ------------------------------------------------------------------ profile maths


def test_profile_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        profile_patches(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        profile_patches(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="no patches"):
        profile_patches(np.zeros((0, 8, 8, 3), np.uint8))


def test_padding_beyond_the_scan_is_left_out_of_the_glass(pap: list[Patches]) -> None:
    sample = pap[0].copy()
    base = profile_patches(sample)
    sample[:, 16:, :, :] = 255  # half of every patch beyond the slide's edge
    padded = profile_patches(sample)
    assert padded.values["background"] == pytest.approx(base.values["background"], abs=3.0)
    assert padded.values["clipped_share"] >= 0.5


def test_greyscale_has_no_hue() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(40, 240, (4, 32, 32, 1), dtype=np.uint8).repeat(3, axis=3)
    grey[:, :4] = 240  # some glass
    p = profile_patches(grey)
    assert p.stain_measured and p.hue_hist is None
    assert p.values["chroma"] == pytest.approx(0.0, abs=1e-6)
    assert "counterstain_log10_share" not in p.values
    assert hue_distance(p.hue_hist, [1 / 12] * 12) == 1.0


def test_hue_histogram_of_a_pure_colour() -> None:
    img = np.full((8, 32, 32, 3), 240, np.uint8)
    img[:, 8:24, 8:24] = (200, 60, 200)  # magenta: hue 300 degrees, bin 10 of 12
    p = profile_patches(img)
    assert p.n_stained >= MIN_STAINED
    assert p.hue_hist is not None and p.hue_hist[10] == pytest.approx(1.0)
    assert p.values["green_share"] == 0.0
    assert p.values["counterstain_log10_share"] == pytest.approx(-3.0)  # none: floored at 1e-3


# ------------------------------------------------------------------ sampling


def test_sample_spreads_over_chunks_and_takes_the_most_cellular() -> None:
    n, chunk = 1000, 64
    valid = np.ones(n, bool)
    valid[::3] = False
    fg = (np.arange(n) % 7).astype(np.float32)
    idx = sample_indices(valid, fg, chunk, n_patches=64, n_chunks=8)
    assert valid[idx].all() and len(set(idx.tolist())) == idx.size
    chunks = np.unique(idx // chunk)
    assert chunks.size == 8 and chunks[0] == 0 and chunks[-1] == (n - 1) // chunk
    for c in chunks:  # per chunk, nothing left out is more cell-bearing than what was taken
        members = np.flatnonzero(valid[c * chunk : (c + 1) * chunk]) + c * chunk
        taken = idx[idx // chunk == c]
        rest = np.setdiff1d(members, taken)
        assert rest.size == 0 or fg[rest].max() <= fg[taken].min()


def test_sample_of_a_small_slide_takes_what_there_is() -> None:
    idx = sample_indices(np.ones(10, bool), np.ones(10), 64)
    assert idx.tolist() == list(range(10))
    assert sample_indices(np.zeros(10, bool), np.ones(10), 64).size == 0
    with pytest.raises(ValueError):
        sample_indices(np.ones(3, bool), np.ones(3), 0)


# ------------------------------------------------------------------ reference and shift


def _profile(**values: float) -> DomainProfile:
    base = {n: 0.0 for n in FEATURE_NAMES if n != "hue_distance"}
    base.update(values)
    return DomainProfile(4, 4096, 4000, base, tuple([1 / 12] * 12))


def test_fit_reference_takes_median_and_mad() -> None:
    profiles = [_profile(background=v) for v in (236.0, 238.0, 240.0, 242.0, 250.0)]
    ref = fit_reference(profiles, {"what": "test"})
    bg = ref.features["background"]
    assert bg.centre == 240.0 and bg.spread == pytest.approx(1.4826 * 2.0)
    assert (bg.minimum, bg.maximum, bg.n) == (236.0, 250.0, 5)
    assert ref.features["hue_distance"].centre == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least 3"):
        fit_reference(profiles[:2])


def test_shift_is_the_largest_z_with_the_floor_on_the_spread() -> None:
    ref = fit_reference([_profile(background=240.0 + d) for d in (-1.0, 0.0, 1.0)])
    # spread 1.48 < floor 6: the floor decides
    check = compare(_profile(background=240.0 - 48.0), ref, 6.0)
    assert check.z["background"] == pytest.approx(-8.0)
    assert check.shift == pytest.approx(8.0) and check.off_domain(6.0)
    assert check.note.startswith("dark background") and "background z=-8.0" in check.note
    calm = compare(_profile(background=243.0), ref, 6.0)
    assert calm.shift == pytest.approx(0.5) and not calm.off_domain(6.0)
    assert calm.note == "largest difference background z=+0.5, within 6"
    assert not check.off_domain(None)  # no limit: recorded, never flagged when measured


def test_reference_record_round_trip_and_validation(reference: DomainReference) -> None:
    again = DomainReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again.features.keys() == reference.features.keys()
    for name, f in reference.features.items():
        assert again.features[name].centre == pytest.approx(f.centre, abs=1e-5)
    assert "slides" in reference.source and "cells" in reference.source
    data = reference.to_dict()
    del data["features"]["chroma"]
    with pytest.raises(ValueError, match="chroma"):
        DomainReference.from_dict(data)
    with pytest.raises(ValueError, match="kind"):
        DomainReference.from_dict({"kind": "something else", "format": 1})
    data = reference.to_dict()
    data["features"]["texture"]["spread"] = math.nan
    with pytest.raises(ValueError, match="texture"):
        DomainReference.from_dict(data)


def test_channel_reductions_give_numpys_numbers_bit_for_bit() -> None:
    # profile_patches writes its per-pixel reductions out for speed; the shipped reference
    # (domain.json) was profiled with numpy's own, so they must give the very same numbers
    from cytoscreen.slide import domain as d

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    as_float = (pixels.astype(np.float32) * np.float32(1.37)) + np.float32(0.1)
    od = np.clip(-np.log10(np.maximum(as_float, 1.0) / np.float32(231.7)), 0.0, 3.0)
    for x in (as_float, od):
        np.testing.assert_array_equal(d._channel_mean(x), x.mean(axis=1), strict=True)
        np.testing.assert_array_equal(d._channel_sum(x), x.sum(axis=1), strict=True)
        norm = np.sqrt(d._channel_sum(np.square(x - 1.0 / 3.0)))
        np.testing.assert_array_equal(norm, np.linalg.norm(x - 1.0 / 3.0, axis=1), strict=True)
    np.testing.assert_array_equal(d._channel_max(pixels), pixels.max(axis=1), strict=True)
    np.testing.assert_array_equal(d._channel_min(pixels), pixels.min(axis=1), strict=True)
    patches = pixels.reshape(2, 50, 50, 3).astype(np.float32)
    np.testing.assert_array_equal(d._channel_mean(patches), patches.mean(axis=3), strict=True)
