"""The configuration is validated on load and the shipped YAML equals the code defaults."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cytoscreen.config import Config, check_mpp, load_config, write_resolved
from cytoscreen.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_YAML = ROOT / "configs" / "default.yaml"


def test_default_yaml_equals_code_defaults() -> None:
    assert load_config(DEFAULT_YAML) == Config()


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("tiling:\n  target_mpp: 0.5\n  patchsize: 224\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "tiling.patchsize" in str(exc.value)
    assert "unknown key" in str(exc.value)


def test_unknown_section_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("tilling:\n  target_mpp: 0.5\n")
    with pytest.raises(ConfigError, match="tilling"):
        load_config(p)


@pytest.mark.parametrize("bad", [0, -0.25, math.nan, math.inf, 1e6, 0.01, 25.0])
def test_bad_mpp_values_are_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="tiling.target_mpp"):
        load_config(None, {"tiling.target_mpp": bad})
    with pytest.raises(ValueError):
        check_mpp(bad)


@pytest.mark.parametrize("good", [0.05, 0.25, 0.499, 20.0])
def test_good_mpp_values_pass(good: float) -> None:
    assert check_mpp(good) == good
    assert load_config(None, {"reader.mpp_override": good}).reader.mpp_override == good


def test_bad_value_names_key() -> None:
    with pytest.raises(ConfigError, match="tiling.patch_size"):
        load_config(None, {"tiling.patch_size": 3})
    with pytest.raises(ConfigError, match="reader.backend"):
        load_config(None, {"reader.backend": "bioformats"})


def test_overrides_apply_and_none_is_ignored() -> None:
    cfg = load_config(DEFAULT_YAML, {"tiling.patch_size": 256, "reader.backend": None})
    assert cfg.tiling.patch_size == 256
    assert cfg.reader.backend == "auto"


def test_hash_tracks_values_and_sections() -> None:
    a = Config()
    b = load_config(None, {"tiling.patch_size": 256})
    c = load_config(None, {"scoring.batch_size": 8})
    assert a.hash() != b.hash()
    assert a.hash("tiling") != b.hash("tiling")
    # a scoring change does not touch the tiling hash
    assert a.hash("reader", "tiling", "foreground") == c.hash("reader", "tiling", "foreground")
    assert a.hash() == Config().hash()


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("tiling: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_write_resolved_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, {"tiling.overlap": 16})
    out = write_resolved(cfg, tmp_path / "run")
    text = out.read_text()
    assert cfg.hash() in text
    assert load_config(out) == cfg


def test_both_configs_report_yaml_errors_in_one_format(tmp_path: Path) -> None:
    """The screen and training configs are read by one loader: the same messages, the file as
    the error's subject, every bad key dotted with 'unknown key' for one not in the model."""
    from cytoscreen.training.config import load_train_config

    loaders = {"screen config": load_config, "training config": load_train_config}
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiling: [unclosed\n", encoding="utf-8")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("nonsense_key: 1\n", encoding="utf-8")
    for what, load in loaders.items():
        for path, says in (
            (broken, f"{what} is not valid YAML"),
            (listed, f"{what} must hold a mapping of keys"),
            (tmp_path / "absent.yaml", f"{what} not found"),
            (unknown, f"invalid {what}:\n  nonsense_key: unknown key"),
        ):
            with pytest.raises(ConfigError) as err:
                load(path)
            assert err.value.subject == str(path), (what, path)
            assert str(err.value).startswith(f"{path}: {says}"), str(err.value)
