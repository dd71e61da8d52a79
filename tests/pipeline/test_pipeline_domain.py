"""The domain check end to end: slides unlike the model's domain reference are NOT_ASSESSABLE
with the reason, never NEGATIVE; the statistic and profile are in result.json and results.json;
without a reference the check is skipped with a recorded note."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cytoscreen.config import load_config
from cytoscreen.errors import BadCheckpoint
from cytoscreen.io import open_slide
from cytoscreen.pipeline import screen
from cytoscreen.resolve import DEFAULT_MODEL_DIR, DOMAIN_NAME
from cytoscreen.scoring.card import read_card
from cytoscreen.synth.tiffwriter import write_array_tiff
from tests.pipeline.results_by_name import by_name

NOT_ASSESSABLE = "not_assessable"


@pytest.fixture(scope="module")
def domain_model(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """The tiny test model with the default model's domain reference beside it, relabelled to
    the tiny model's resolution (the stain and colour checks tested here do not depend on it;
    the resolution guard has its own test)."""
    out = tmp_path_factory.mktemp("model") / "with-domain"
    shutil.copytree(model_dir, out)
    ref = json.loads((DEFAULT_MODEL_DIR / DOMAIN_NAME).read_text(encoding="utf-8"))
    ref["source"]["tiling"]["target_mpp"] = read_card(model_dir).mpp
    (out / DOMAIN_NAME).write_text(json.dumps(ref), encoding="utf-8")
    return out


def _near_blank(size: int = 768) -> np.ndarray:
    """Clean glass with a few faint reddish specks: foreground, but next to no stain."""
    od = np.zeros((size, size, 3), np.float32)
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(5)
    for cx, cy in rng.integers(80, size - 80, (12, 2)):
        od[(xx - cx) ** 2 + (yy - cy) ** 2 < 40**2] = (0.15, 0.04, 0.04)
    glass = np.array([240.0, 240.0, 242.0], np.float32)
    return np.clip(glass * 10.0 ** (-od), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def domain_slides(
    tmp_path_factory: pytest.TempPathFactory, slide_dir: Path, cmu1_path: Path
) -> Path:
    """pap (a generated negative), he (a crop of the real H&E slide), grey (the pap slide in
    greyscale) and blank-ish (faint specks on glass)."""
    root = tmp_path_factory.mktemp("domain-slides")
    shutil.copy(slide_dir / "negative.tiff", root / "pap.tiff")
    with open_slide(cmu1_path) as reader:
        he = reader.read_region((500, 1200), 0, (1024, 1024))[..., :3]
        he_mpp = reader.meta.mpp
    write_array_tiff(root / "he.tif", np.ascontiguousarray(he), mpp=he_mpp)
    with open_slide(root / "pap.tiff") as reader:
        pap = reader.read_region((0, 0), 0, reader.meta.dimensions)[..., :3]
        pap_mpp = reader.meta.mpp
    grey = pap.mean(axis=2, keepdims=True).round().astype(np.uint8).repeat(3, axis=2)
    write_array_tiff(root / "grey.tif", np.ascontiguousarray(grey), mpp=pap_mpp)
    write_array_tiff(root / "blankish.tif", _near_blank(), mpp=0.25)
    return root


@pytest.fixture(scope="module")
def screened(
    tmp_path_factory: pytest.TempPathFactory,
    domain_slides: Path,
    domain_model: Path,
    config_path: Path,
) -> tuple[Path, dict[str, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("results")
    report = screen([domain_slides], out, load_config(config_path), model_dir=domain_model)
    assert report.n_failed == 0, [r.error for r in report.results]
    return out, by_name(report.results)


def _domain_reasons(result: dict[str, Any]) -> list[str]:
    return [r for r in result["reasons"] if r.startswith("not assessable: unlike the training")]


def test_pap_slide_passes_the_check(screened: tuple[Path, dict[str, dict[str, Any]]]) -> None:
    r = screened[1]["pap"]
    d = r["domain"]
    assert d["checked"] and d["measured"] and not d["off_domain"]
    assert d["limit"] == load_config().triage.max_domain_shift
    assert 0.0 <= d["shift"] < d["limit"]
    assert d["profile"]["n_patches"] > 0 and "counterstain_log10_share" in d["profile"]["values"]
    assert set(d["z"]) >= {"background", "chroma", "hue_distance"}
    assert r["outcome"] in ("negative", "review") and not _domain_reasons(r)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("he", "haematoxylin-eosin-like hue"),
        ("grey", "greyscale-like"),
        ("blankish", "too little stain to judge it"),
    ],
)
def test_off_domain_slides_are_not_assessable_with_the_reason(
    screened: tuple[Path, dict[str, dict[str, Any]]], name: str, words: str
) -> None:
    r = screened[1][name]
    assert r["status"] == "ok"
    assert r["outcome"] == NOT_ASSESSABLE
    reasons = _domain_reasons(r)
    assert len(reasons) == 1 and words in reasons[0], r["reasons"]
    assert r["domain"]["off_domain"] and words in r["domain"]["note"]


def test_results_json_carries_the_statistic_and_the_reference(
    screened: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    out = screened[0]
    slides = by_name(json.loads((out / "results.json").read_text())["slides"])
    assert set(slides) == {"pap", "he", "grey", "blankish"}
    for r in slides.values():
        assert r["domain"]["checked"] and isinstance(r["domain"]["shift"], float)
        assert r["domain"]["profile"]["values"]
    run = json.loads((out / "run.json").read_text())
    assert run["domain_reference"]["path"].endswith(DOMAIN_NAME)
    assert len(run["domain_reference"]["sha256"]) == 64
    assert slides["he"]["domain_sha256"] == run["domain_reference"]["sha256"]


def test_without_a_reference_the_check_is_skipped_with_a_note(
    tmp_path: Path, domain_slides: Path, model_dir: Path, config_path: Path
) -> None:
    report = screen(
        [domain_slides / "he.tif"], tmp_path / "out", load_config(config_path), model_dir=model_dir
    )
    (r,) = [x.to_json() for x in report.results]
    assert r["status"] == "ok" and not r["domain"]["checked"]
    assert r["domain"]["note"].startswith("skipped: no domain reference")
    assert any(w.startswith("domain check skipped") for w in r["warnings"])
    assert not _domain_reasons(r)


def test_no_limit_records_the_shift_but_decides_without_it(
    tmp_path: Path,
    domain_slides: Path,
    domain_model: Path,
    write_config: Callable[..., Path],
) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", triage={"max_domain_shift": None}))
    report = screen([domain_slides / "he.tif"], tmp_path / "out", cfg, model_dir=domain_model)
    (r,) = [x.to_json() for x in report.results]
    assert r["domain"]["checked"] and r["domain"]["limit"] is None
    assert r["domain"]["shift"] > load_config().triage.max_domain_shift  # still measured
    assert not r["domain"]["off_domain"] and not _domain_reasons(r)


def test_an_unreadable_reference_stops_the_run_before_tiling(
    tmp_path: Path, domain_slides: Path, domain_model: Path, config_path: Path
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(domain_model, broken)
    (broken / DOMAIN_NAME).write_text('{"kind": "cytoscreen-domain-reference"}')
    with pytest.raises(BadCheckpoint, match=DOMAIN_NAME) as err:
        screen(
            [domain_slides / "pap.tiff"],
            tmp_path / "out",
            load_config(config_path),
            model_dir=broken,
        )
    assert "cytoscreen domain-reference" in str(err.value)
    assert not (tmp_path / "out" / "slides").exists()


def test_a_reference_profiled_at_another_resolution_stops_the_run(
    tmp_path: Path, domain_slides: Path, domain_model: Path, config_path: Path
) -> None:
    other = tmp_path / "model"
    shutil.copytree(domain_model, other)
    ref = json.loads((other / DOMAIN_NAME).read_text(encoding="utf-8"))
    mpp = read_card(other).mpp
    ref["source"]["tiling"]["target_mpp"] = mpp * 2
    (other / DOMAIN_NAME).write_text(json.dumps(ref), encoding="utf-8")
    with pytest.raises(BadCheckpoint, match=f"{mpp * 2} um/px") as err:
        screen([domain_slides / "pap.tiff"], tmp_path / "out", load_config(config_path),
               model_dir=other)  # fmt: skip
    assert "cytoscreen domain-reference" in str(err.value)
    assert not (tmp_path / "out" / "slides").exists()
