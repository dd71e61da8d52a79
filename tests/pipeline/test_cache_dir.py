"""Where ``screen`` keeps its patch cache: --cache, else cache.dir when the config sets it
(even to its default value), else OUT/cache."""

from __future__ import annotations

from pathlib import Path

from cytoscreen.config import CacheConfig, load_config
from cytoscreen.pipeline import _cache_dir


def test_cache_dir_set_to_its_default_value_is_honoured(tmp_path: Path) -> None:
    default = CacheConfig().dir
    out = tmp_path / "out"
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"cache:\n  dir: {default}\n", encoding="utf-8")
    assert _cache_dir(load_config(cfg_file), out, None) == default
    assert _cache_dir(load_config(None, {"cache.dir": str(default)}), out, None) == default


def test_cache_dir_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _cache_dir(load_config(None), out, None) == out / "cache"  # not set: beside results
    other = load_config(None, {"cache.dir": str(tmp_path / "c")})
    assert _cache_dir(other, out, None) == tmp_path / "c"
    assert _cache_dir(other, out, tmp_path / "flag") == tmp_path / "flag"  # --cache wins
