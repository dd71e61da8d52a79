"""The per-slide stages called directly on a small patch store, without ``screen``:
tile -> score -> aggregate -> decide -> write, and the record they make."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cytoscreen import stages
from cytoscreen.batch import SlideInput
from cytoscreen.config import Config, load_config
from cytoscreen.errors import CytoscreenError
from cytoscreen.slide import Calibration, load_calibration
from cytoscreen.slide_result import read_result, write_result
from cytoscreen.tiling import open_cache
from cytoscreen.tiling.obscured import ObscuredEstimate
from cytoscreen.tiling.store import FORMAT, PatchStore, StoreAttrs
from cytoscreen.types import Outcome

N, PX, CHUNK, SIDE = 24, 32, 4, 64.0  # 32 px patches at 0.5 um/px of a 0.25 um/px slide
INVALID = 5  # the one patch that could not be read (under triage.max_unreadable_share)

ATTRS = StoreAttrs(
    format=FORMAT,
    slide_key="k" * 16,
    slide_name="small.tiff",
    backend="tiffslide",
    mpp=0.25,
    mpp_source="slide",
    target_mpp=0.5,
    patch_size=PX,
    size_l0=SIDE,
    stride_l0=SIDE,
    n_patches=N,
    block_starts=(0,),
    config_hash="abc",
    obscured=ObscuredEstimate(share=0.1, blood=0.1, thick=0.0, cell_pixels=900, mpp=8.0),
)


def _small_store(path: Path, attrs: StoreAttrs = ATTRS) -> Path:
    """A tiled store: 24 patches in a 6 x 4 grid, 7 nuclei each, one patch unreadable."""
    coords = np.array([(x * SIDE, y * SIDE) for y in range(4) for x in range(6)], np.int64)
    store = PatchStore.create(path, attrs, coords, np.ones(N, np.float32), chunk_patches=CHUNK)
    pixels = np.random.default_rng(0).integers(0, 256, (N, PX, PX, 3), dtype=np.uint8)
    valid = np.arange(N) != INVALID
    store.write_patches(0, pixels, valid, np.full(N, 7, np.int32))
    store.mark_complete(attrs.config_hash, N)
    return path


def _scored(path: Path, model_id: str, prob: np.ndarray) -> stages.Scored:
    """The store with ``prob`` written as model ``model_id``'s finished scores."""
    writable = PatchStore.open(path, writable=True)
    scores = writable.create_scores(model_id, 2, {"runtime": "torch", "precision": "fp32"})
    scores.stage()[:] = prob
    scores.mark_complete()
    cache = open_cache(path)
    return stages.Scored(cache, cache.read_scores(model_id))


def _unchecked(scored: stages.Scored, cfg: Config) -> stages.DomainChecked:
    """The domain check of a store without a reference (skipped, and recorded so)."""
    return stages.check_domain(scored, None, cfg)


@pytest.fixture
def cfg(config_path: Path) -> Config:
    return load_config(config_path)


@pytest.fixture
def calibration(model_dir: Path) -> Calibration:
    return load_calibration(model_dir / "calibration.json")


def _prob(high: float) -> np.ndarray:
    prob = np.full(N, 0.01, np.float32)
    prob[:12] = high  # the top half suspicious: more than the rule's top k
    prob[INVALID] = np.nan
    return prob


def test_tile_makes_the_store_in_a_child_process(tmp_path: Path, write_slide, cfg: Config) -> None:
    image = np.full((512, 512, 3), 235, np.uint8)
    image[100:400, 100:400] = (150, 90, 160)  # a stained area
    path = write_slide(image, mpp=0.25)
    seen: list[tuple[int, int]] = []
    store = stages.tile(
        SlideInput(path, path.name, "small"),
        cfg,
        tmp_path / "cache",
        progress=lambda d, n: seen.append((d, n)),
    )
    cache = open_cache(store)
    assert store.parent == tmp_path / "cache" and cache.is_complete
    assert cache.attrs.target_mpp == 0.5 and cache.attrs.patch_size == PX and len(cache) > 0


def test_score_writes_and_reads_back_the_models_scores(
    tmp_path: Path, model_dir: Path, cfg: Config
) -> None:
    from cytoscreen.scoring.scorer import build_scorer

    path = _small_store(tmp_path / "s.zarr")
    scorer = build_scorer(model_dir, cfg.scoring)
    scored = stages.score(path, scorer, cfg.scoring)
    assert scored.store.path == path and scored.prob.shape == (N,)
    assert np.isnan(scored.prob[INVALID]) and np.isfinite(np.delete(scored.prob, INVALID)).all()
    np.testing.assert_array_equal(scored.prob, open_cache(path).read_scores(scorer.card.model_id))


def test_aggregate_counts_cells_scores_and_fields_from_the_store(
    tmp_path: Path, cfg: Config
) -> None:
    scored = _scored(_small_store(tmp_path / "s.zarr"), "m", _prob(0.9))
    sscore = stages.aggregate(scored, cfg)
    assert (sscore.n_patches, sscore.n_scored, sscore.n_unreadable) == (N, N - 1, 1)
    assert sscore.cellularity == 7 * (N - 1)  # nuclei of the readable patches only
    assert sscore.obscured == pytest.approx(0.1)
    assert sscore.score is not None and 0.01 < sscore.score <= 0.9
    assert sscore.fields and sscore.fields[0].score == pytest.approx(0.9)


def test_decide_without_calibration_records_the_skipped_domain_check_only(
    tmp_path: Path, cfg: Config
) -> None:
    scored = _scored(_small_store(tmp_path / "s.zarr"), "m", _prob(0.9))
    decided = stages.decide(
        scored, stages.aggregate(scored, cfg), cfg, None, _unchecked(scored, cfg)
    )
    assert decided.decision is None and decided.applicability is None
    assert decided.domain["checked"] is False
    assert decided.domain["note"].startswith("skipped: no domain reference")


def test_decide_with_calibration_triages_by_the_threshold_and_the_resolution(
    tmp_path: Path, cfg: Config, calibration: Calibration
) -> None:
    high = _scored(_small_store(tmp_path / "hi.zarr"), "m", _prob(0.99))
    low = _scored(_small_store(tmp_path / "lo.zarr"), "m", _prob(0.01))  # nothing stands out
    coarse = _scored(
        _small_store(
            tmp_path / "coarse.zarr", replace(ATTRS, mpp=1.0, size_l0=16.0, stride_l0=16.0)
        ),
        "m",
        _prob(0.99),
    )

    def outcome(scored: stages.Scored) -> Outcome:
        sscore = stages.aggregate(scored, cfg, calibration)
        decided = stages.decide(scored, sscore, cfg, calibration, _unchecked(scored, cfg))
        assert decided.decision is not None and decided.decision.threshold == calibration.threshold
        return decided.decision.outcome

    assert outcome(high) == Outcome.REVIEW
    assert outcome(low) == Outcome.NEGATIVE
    assert outcome(coarse) == Outcome.NOT_ASSESSABLE  # scanned coarser than the model reads


def test_a_low_slide_scored_otherwise_than_the_calibration_goes_to_review(
    tmp_path: Path, cfg: Config, calibration: Calibration
) -> None:
    cal = calibration.model_copy(update={"scoring": {"runtime": "openvino", "precision": "fp32"}})
    low = _scored(_small_store(tmp_path / "lo.zarr"), "m", _prob(0.01))
    sscore = stages.aggregate(low, cfg, cal)

    def decided(how: dict[str, str] | None) -> stages.Decided:
        return stages.decide(low, sscore, cfg, cal, _unchecked(low, cfg), how)

    same = decided({"runtime": "openvino", "precision": "fp32", "device": "cpu"})
    assert same.decision is not None and same.decision.outcome == Outcome.NEGATIVE
    other = decided({"runtime": "openvino", "precision": "bf16", "device": "cpu"}).decision
    assert other is not None and other.outcome == Outcome.REVIEW
    assert other.reasons[0].startswith("review: the threshold was calibrated on openvino fp32")
    assert "openvino bf16" in other.reasons[0]
    assert other.reasons[1:] == same.decision.reasons
    # a scorer that records nothing (or a calibration that does not) is judged as before
    unknown = decided(None).decision
    assert unknown is not None and unknown.outcome == Outcome.NEGATIVE


def test_decide_takes_the_domain_check_made_beside_it(
    tmp_path: Path, cfg: Config, calibration: Calibration
) -> None:
    # the screen runs check_domain on a thread beside the decision and the pictures; decide
    # must judge by the check it is given: random noise is far from the shipped reference
    from cytoscreen.resolve import DomainChoice
    from cytoscreen.slide.domain import DomainReference

    ref_path = Path(__file__).parents[2] / "cytoscreen/models/default/domain.json"
    reference = DomainReference.from_dict(json.loads(ref_path.read_text()))
    low = _scored(_small_store(tmp_path / "lo.zarr"), "m", _prob(0.01))
    checked = stages.check_domain(low, DomainChoice(ref_path, "x", reference), cfg)
    assert checked.record["checked"] is True and checked.record["profile"] is not None
    assert checked.adequacy.off_domain and checked.record["off_domain"]
    sscore = stages.aggregate(low, cfg, calibration)
    off = stages.decide(low, sscore, cfg, calibration, checked).decision
    plain = stages.decide(low, sscore, cfg, calibration, _unchecked(low, cfg)).decision
    assert plain is not None and plain.outcome == Outcome.NEGATIVE
    assert off is not None and off.outcome == Outcome.NOT_ASSESSABLE
    assert off.threshold == calibration.threshold


def test_write_fields_writes_the_three_field_files(tmp_path: Path, cfg: Config) -> None:
    scored = _scored(_small_store(tmp_path / "s.zarr"), "m", _prob(0.9))
    sscore = stages.aggregate(scored, cfg)
    out = tmp_path / "slide"
    out.mkdir()
    rows = stages.write_fields(out, "small", sscore)
    assert len(rows) == len(sscore.fields) > 0
    assert json.loads((out / "fields.json").read_text())["fields"] == rows
    assert len((out / "fields.csv").read_text().splitlines()) == len(rows) + 1
    geo = json.loads((out / "fields.geojson").read_text())
    assert len(geo["features"]) == len(rows)


def test_draw_images_marks_the_threshold_and_a_failure_is_a_warning(
    tmp_path: Path, write_slide, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pictures are drawn from the fields and the calibration's threshold alone (the screen
    # draws them while the decision is made), in a child process
    image = np.full((512, 512, 3), 235, np.uint8)
    image[100:400, 100:400] = (150, 90, 160)
    path = write_slide(image, mpp=0.25)
    slide = SlideInput(path, path.name, "small")
    store = stages.tile(slide, cfg, tmp_path / "cache")
    n = len(open_cache(store))
    scored = _scored(store, "m", np.linspace(0.0, 1.0, n, dtype=np.float32))
    sscore = stages.aggregate(scored, cfg)
    out = tmp_path / "out"
    out.mkdir()
    assert stages.draw_images(slide, out, scored, sscore, 0.3, cfg) == []
    assert (out / "thumbnail.png").exists() and (out / "heatmap.png").exists()
    seen: dict[str, object] = {}

    def broken(fn: object, *args: object, **kw: object) -> None:
        seen.update(kw)
        raise CytoscreenError("the reader crashed", subject=path)

    monkeypatch.setattr(stages, "run_isolated", broken)
    warnings = stages.draw_images(slide, out, scored, sscore, 0.3, cfg)
    assert seen["threshold"] == 0.3
    assert len(warnings) == 1 and "images not written" in warnings[0]


def test_build_result_makes_a_record_that_round_trips(
    tmp_path: Path, cfg: Config, calibration: Calibration
) -> None:
    scored = _scored(_small_store(tmp_path / "s.zarr"), "m", _prob(0.99))
    sscore = stages.aggregate(scored, cfg, calibration)
    decided = stages.decide(scored, sscore, cfg, calibration, _unchecked(scored, cfg))
    provenance = {"id": "small", "path": "/slides/small.tiff", "model_id": "m"}
    rows = [{"rank": 1}]
    how = {"runtime": "torch", "precision": "fp32", "device": "cpu"}
    result = stages.build_result(
        provenance, scored, sscore, decided, rows, cfg=cfg, scoring=how, run_warnings=["run"]
    )
    assert result.status == "ok" and result.outcome == Outcome.REVIEW and not result.failed
    assert result.counts == {"n_patches": N, "n_scored": N - 1, "n_unreadable": 1,
                             "n_fields": len(sscore.fields)}  # fmt: skip
    assert "run" in result.warnings and any(w.startswith("domain check") for w in result.warnings)
    assert result.cache == str(tmp_path / "s.zarr") and result.slide["mpp"] == 0.25
    scores_only = stages.build_result(
        provenance, scored, sscore, stages.Decided(None, decided.domain), rows, cfg=cfg,
        scoring=how, run_warnings=["run"],
    )  # fmt: skip
    assert scores_only.outcome is None and scores_only.state == "scored"
    assert scores_only.reasons == (stages.SCORES_ONLY_REASON,) and "run" not in scores_only.warnings
    write_result(tmp_path, result)
    assert read_result(tmp_path) == result
