"""`cytoscreen domain-reference`: the domain.json the screen reads is made by a command (from a
laboratory's own slides or from generated ones), and too few slides end in the error panel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cytoscreen.cli import app
from cytoscreen.slide.domain import FEATURE_NAMES, DomainReference
from cytoscreen.synth import SlideSpec, bundled_kit, generate_slide
from cytoscreen.synth.kit import BUNDLED_KIT


@pytest.fixture(scope="module")
def in_domain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small generated negatives (a laboratory's 'own' in-domain slides)."""
    root = tmp_path_factory.mktemp("in-domain")
    kit = bundled_kit()
    for seed in (1, 2, 3):
        spec = SlideSpec(size=512, label="negative", seed=seed, density=3000.0)
        generate_slide(root / f"own{seed}.tiff", spec, kit)
    return root


def _reference(path: Path) -> DomainReference:
    return DomainReference.from_dict(json.loads(path.read_text(encoding="utf-8")))


def test_domain_reference_from_slides(tmp_path: Path, in_domain: Path, config_path: Path) -> None:
    out = tmp_path / "model" / "domain.json"
    res = CliRunner().invoke(
        app,
        ["domain-reference", "--out", str(out), "--from-slides", str(in_domain),
         "--config", str(config_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ref = _reference(out)
    assert set(ref.features) == set(FEATURE_NAMES)
    assert all(f.n == 3 for f in ref.features.values())
    assert [s["name"] for s in ref.source["slides"]] == ["own1.tiff", "own2.tiff", "own3.tiff"]
    assert ref.source["tiling"]["target_mpp"] == 0.5  # the screen config's, as the guard reads
    assert ref.source["script"] == f"cytoscreen domain-reference --from-slides {in_domain}"
    assert f"wrote {out} from 3 slides" in res.output
    assert "shift of the reference slides themselves" in res.output


def test_domain_reference_from_generated_slides(tmp_path: Path, config_path: Path) -> None:
    out = tmp_path / "domain.json"
    res = CliRunner().invoke(
        app,
        ["domain-reference", "--out", str(out), "--slides", "3", "--n-cells", "40",
         "--cells", str(BUNDLED_KIT), "--splits", str(tmp_path / "no-splits.json"),
         "--config", str(config_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    src = _reference(out).source
    assert len(src["slides"]) == 3 and src["generator"] == "cytoscreen.synth.generate_slide"
    assert src["cells"].startswith("CRIC Cervix fields (the bundled kit, all fields")
    assert src["script"].startswith("cytoscreen domain-reference --slides 3 --n-cells 40")


def test_domain_reference_needs_three_slides(
    tmp_path: Path, in_domain: Path, config_path: Path
) -> None:
    out = tmp_path / "domain.json"
    res = CliRunner().invoke(
        app,
        ["domain-reference", "--out", str(out), "--from-slides", str(in_domain / "own1.tiff"),
         "--config", str(config_path)],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "at least 3 in-domain slides" in res.output and "--from-slides" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert not out.exists()


def test_domain_reference_refuses_an_unknown_split(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["domain-reference", "--out", str(tmp_path / "d.json"), "--split", "test"]
    )
    assert res.exit_code == 2 and "--split" in res.output and "train, val" in res.output
