"""End to end: a generated slide whose cells lie under heavy blood is not assessable with that
reason; its obscured share reaches result.json and summary.csv; a patch store made before the
estimate existed is screened without the rule (unknown, not 0)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zarr

from cytoscreen.config import Config, load_config
from cytoscreen.pipeline import screen
from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide
from tests.pipeline.results_by_name import by_name

OBSCURED_REASON = "not assessable: cells mostly obscured: "


@pytest.fixture(scope="module")
def bloody_slides(tmp_path_factory: pytest.TempPathFactory, slide_dir: Path) -> Path:
    """bloody (the tiny negative's layout kind with about 100 red cells per labelled cell,
    which cover nearly every cell) and clear (the negative slide of the batch tests)."""
    root = tmp_path_factory.mktemp("bloody-slides")
    spec = SlideSpec(size=768, label="negative", seed=1, density=3000.0, blood=100.0)
    generate_slide(root / "bloody.tiff", spec, bundled_kit())
    shutil.copy(slide_dir / "negative.tiff", root / "clear.tiff")
    return root


@pytest.fixture(scope="module")
def strict_cfg(
    tmp_path_factory: pytest.TempPathFactory, write_config: Callable[..., Path]
) -> Config:
    """The fast screen config, with the abnormal override off: the outcome of a mostly obscured
    slide then does not depend on the tiny random model's score."""
    path = tmp_path_factory.mktemp("config") / "strict.yaml"
    return load_config(write_config(path, triage={"abnormal_overrides_cellularity": False}))


@pytest.fixture(scope="module")
def screened(
    tmp_path_factory: pytest.TempPathFactory,
    bloody_slides: Path,
    model_dir: Path,
    strict_cfg: Config,
) -> tuple[Path, Path, dict[str, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("results")
    cache = tmp_path_factory.mktemp("cache")
    report = screen([bloody_slides], out, strict_cfg, model_dir=model_dir, cache_dir=cache)
    assert report.n_failed == 0, [r.error for r in report.results]
    return out, cache, by_name(report.results)


def test_heavy_blood_makes_a_slide_not_assessable_with_the_reason(
    screened: tuple[Path, Path, dict[str, dict[str, Any]]],
) -> None:
    r = screened[2]["bloody"]
    assert r["status"] == "ok" and r["outcome"] == "not_assessable"
    assert r["obscured"] is not None and r["obscured"] > 0.75
    reasons = [x for x in r["reasons"] if x.startswith(OBSCURED_REASON)]
    assert reasons == [
        f"{OBSCURED_REASON}{r['obscured']:.0%} of the cell-bearing area under blood or thick "
        "overlap (estimated; limit 75%)"
    ]
    parts = r["obscured_parts"]
    assert parts["share"] == r["obscured"] and parts["blood"] > parts["thick"]


def test_a_clear_slide_is_not_obscured(
    screened: tuple[Path, Path, dict[str, dict[str, Any]]],
) -> None:
    r = screened[2]["clear"]
    assert r["obscured"] is not None and r["obscured"] < 0.2
    assert r["outcome"] in ("negative", "review")
    assert not any("obscured" in x for x in r["reasons"] if x.startswith("not assessable"))


def test_summary_csv_has_the_obscured_column(
    screened: tuple[Path, Path, dict[str, dict[str, Any]]],
) -> None:
    out, _, results = screened
    with (out / "summary.csv").open(newline="", encoding="utf-8") as fh:
        rows = {Path(row["path"]).stem: row for row in csv.DictReader(fh)}
    for name in ("bloody", "clear"):
        assert float(rows[name]["obscured"]) == pytest.approx(results[name]["obscured"], abs=5e-4)
    assert "cells mostly obscured" in rows["bloody"]["reasons"]


def test_a_store_made_before_the_estimate_applies_no_rule(
    screened: tuple[Path, Path, dict[str, dict[str, Any]]],
    tmp_path: Path,
    bloody_slides: Path,
    model_dir: Path,
    strict_cfg: Config,
) -> None:
    _, cache, results = screened
    store = Path(results["bloody"]["cache"])
    assert store.parent == cache
    # edited with raw zarr calls, as the store's attributes have always been written
    group = zarr.open_group(store, mode="r+")
    attrs = dict(group.attrs["cytoscreen"])  # type: ignore[arg-type]
    attrs.pop("obscured")
    group.attrs["cytoscreen"] = attrs  # as a store written before the estimate existed
    report = screen(
        [bloody_slides / "bloody.tiff"], tmp_path / "out", strict_cfg, model_dir=model_dir,
        cache_dir=cache,
    )  # fmt: skip
    r = report.results[0].to_json()
    assert r["status"] == "ok" and r["obscured"] is None and r["obscured_parts"] is None
    assert not any(x.startswith(OBSCURED_REASON) for x in r["reasons"])
    assert any("obscured share not measured" in w for w in r["warnings"]), r["warnings"]
