"""Validated configuration: YAML file -> pydantic models (unknown keys are errors).

The defaults here equal ``configs/default.yaml`` (a test holds them together), so an installed
package works without the repository's configs folder. CLI flags override file values through
dotted keys (``tiling.target_mpp=0.5``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cytoscreen.errors import ConfigError
from cytoscreen.fsutil import write_text_atomic
from cytoscreen.slide.settings import AggregationSettings, FieldSettings, TriageSettings
from cytoscreen.types import (
    MPP_MAX,
    MPP_MIN,
    MPP_TOLERANCE,
    BackendSetting,
    DeviceSetting,
    PrecisionSetting,
    RuntimeSetting,
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_mpp(value: float | None, *, what: str = "mpp") -> float | None:
    """Refuse 0, negative, NaN, infinite and absurd resolutions (outside 0.05-20 um/px)."""
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v) or not (MPP_MIN <= v <= MPP_MAX):
        raise ValueError(
            f"{what} must be a finite number of micrometres per pixel between "
            f"{MPP_MIN} and {MPP_MAX}, got {value!r}"
        )
    return v


LOCAL_CLUSTER = re.compile(r"local:(\d+)")


def local_cluster_size(address: str) -> int | None:
    """N of a ``local:N`` scheduler address (1-256), else None."""
    m = LOCAL_CLUSTER.fullmatch(address)
    return int(m.group(1)) if m is not None and 1 <= int(m.group(1)) <= 256 else None


class ReaderConfig(_Section):
    backend: BackendSetting = "auto"
    mpp_override: float | None = None  # um/px used when the slide has none (or to overrule it)

    @field_validator("mpp_override")
    @classmethod
    def _mpp(cls, v: float | None) -> float | None:
        return check_mpp(v, what="reader.mpp_override")


class TilingConfig(_Section):
    target_mpp: float = 0.25  # um/px of the patches the model sees
    patch_size: int = Field(224, ge=16, le=4096)  # pixels at target_mpp
    overlap: int = Field(0, ge=0)  # pixels shared by neighbouring patches, at target_mpp
    block_patches: int = Field(8, ge=1, le=64)  # a read block is block_patches^2 patches
    # relative mpp slack to read a level as-is
    level_tolerance: float = Field(MPP_TOLERANCE, ge=0.0, le=0.5)

    @field_validator("target_mpp")
    @classmethod
    def _mpp(cls, v: float) -> float:
        out = check_mpp(v, what="tiling.target_mpp")
        assert out is not None
        return out


class ForegroundConfig(_Section):
    thumbnail_mpp: float = Field(8.0, gt=0.5, le=64.0)  # resolution of the mask
    # resolution the slide is read at for the mask: each mask pixel keeps the mean and the
    # darkest value of the samples it covers, so a lone 5 um nucleus is not averaged away
    sample_mpp: float = Field(2.0, gt=0.2, le=64.0)
    method: Literal["od", "saturation"] = "od"
    od_threshold: float = Field(0.06, gt=0.0, le=3.0)  # optical density counted as stained
    saturation_threshold: float = Field(0.07, gt=0.0, le=1.0)
    dilate_um: float = Field(16.0, ge=0.0, le=500.0)  # grow the mask so cell borders stay inside
    min_object_um2: float = Field(30.0, ge=0.0)  # specks smaller than this are dust
    min_fraction: float = Field(0.005, ge=0.0, le=1.0)  # a patch is kept above this fraction


class CacheConfig(_Section):
    dir: Path = Path(".cytoscreen-cache")
    chunk_patches: int = Field(64, ge=1, le=4096)  # patches per Zarr chunk
    compression: Literal["none", "lz4", "zstd"] = "lz4"  # codec of the images array
    compression_level: int = Field(1, ge=1, le=9)
    scheduler: Literal["threads", "processes", "synchronous"] = "threads"
    # dask.distributed scheduler, e.g. tcp://host:8786, or local:N (a LocalCluster of N
    # workers, for `screen`): `screen` runs each slide as a task there, `tile` its graph
    scheduler_address: str | None = None
    workers: int = Field(2, ge=1, le=256)

    @field_validator("scheduler_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        local = v is not None and (v == "local" or v.startswith("local:"))
        if local and v is not None and local_cluster_size(v) is None:
            raise ValueError(
                "give local:N (N workers on this machine, 1-256) or a dask scheduler's "
                "address such as tcp://HOST:8786"
            )
        return v


class ScoringConfig(_Section):
    model: Path | None = None  # None = the bundled default model
    batch_size: int = Field(64, ge=1, le=4096)
    device: DeviceSetting = "auto"
    precision: PrecisionSetting = "auto"
    # auto: OpenVINO on the CPU when installed and the model card proves its AUC, else PyTorch
    runtime: RuntimeSetting = "auto"
    threads: int | None = Field(None, ge=1)
    calibration: Path | None = None  # calibration.json; None = the one shipped with the model


class Config(_Section):
    reader: ReaderConfig = ReaderConfig()
    tiling: TilingConfig = TilingConfig()
    foreground: ForegroundConfig = ForegroundConfig()
    cache: CacheConfig = CacheConfig()
    scoring: ScoringConfig = ScoringConfig()
    aggregation: AggregationSettings = AggregationSettings()
    fields: FieldSettings = FieldSettings()
    triage: TriageSettings = TriageSettings()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self, *sections: str) -> str:
        """sha256 (hex, 16 chars) of the canonical JSON of the named sections (all if none)."""
        data = self.to_dict()
        if sections:
            data = {k: data[k] for k in sections}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


SCREEN_CONFIG = "screen config"

# Sections whose values change the pixels in a patch cache; the cache key hashes only these.
TILING_SECTIONS = ("reader", "tiling", "foreground")


def read_yaml_config(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in a YAML config file (``{}`` when empty): the one reader of both configs
    (the screen config here, the training config in ``training.config``). Every problem is a
    ``ConfigError`` whose subject is the file and whose message starts with ``what``."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", subject=path, hint="check the path") from None
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read ({exc.strerror})", subject=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {exc}", subject=path) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} must hold a mapping of keys", subject=path)
    return loaded


M = TypeVar("M", bound=BaseModel)


def validate_config(
    model: type[M], data: dict[str, Any], what: str, source: str | Path, hint: str
) -> M:
    """``model`` validated from ``data``; otherwise a ``ConfigError`` listing every bad key
    (dotted, 'unknown key' for one not in the model), the same for both configs."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "<root>"
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            lines.append(f"  {key}: {msg}")
        raise ConfigError(
            f"invalid {what}:\n" + "\n".join(lines), subject=source, hint=hint
        ) from None


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key}: {p} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config (or the defaults), apply dotted-key overrides, validate."""
    data: dict[str, Any] = {}
    source: str | Path = "defaults"
    if path is not None:
        source = path
        data = read_yaml_config(path, SCREEN_CONFIG)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    return validate_config(
        Config,
        data,
        SCREEN_CONFIG,
        source,
        "see configs/default.yaml for the valid keys and values",
    )


def write_resolved(cfg: Config, out_dir: Path) -> Path:
    """Write the resolved config and its hash beside an output."""
    body = yaml.safe_dump(cfg.to_dict(), sort_keys=True)
    return write_text_atomic(
        out_dir / "config.resolved.yaml", f"# config hash: {cfg.hash()}\n{body}"
    )
