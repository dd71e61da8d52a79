"""The Scorer (a model made ready once, reused for many slides) and the one way it is built.

``build_scorer(model_dir, scoring_config)`` is what ``screen`` and ``score`` call: it reads the
card, checks the weights, picks the runtime (``scoring.engines.choose_runtime``), converts to
or loads the OpenVINO graph where that runtime is chosen, and turns a setting this machine
cannot honour (CUDA without a GPU, OpenVINO not installed, fp16 on the CPU, an unknown value)
into a ``ConfigError`` that names the model and the settings to check. ``Scorer.build`` and
``Scorer.load`` are the same steps for library callers (a model in memory, or a checkpoint
directory with plain arguments): they raise ``ValueError`` or ``RuntimeError`` for such a
setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from cytoscreen.config import ScoringConfig
from cytoscreen.errors import ConfigError, CytoscreenError
from cytoscreen.scoring import openvino_engine
from cytoscreen.scoring.card import ModelCard, checked_weights, read_card
from cytoscreen.scoring.device import device_type
from cytoscreen.scoring.engines import Engine, choose_runtime
from cytoscreen.types import Precision, Runtime

if TYPE_CHECKING:  # torch is imported only when a PyTorch model is actually needed
    import torch


@dataclass(frozen=True)
class Scorer:
    """A model on one engine (PyTorch or OpenVINO), in one precision, on one device.

    Pass it to ``score_cache`` in place of the model directory. ``runtime_used`` and
    ``runtime_note`` say which runtime was chosen and why. Make one with ``build_scorer``,
    ``Scorer.build`` or ``Scorer.load``.
    """

    card: ModelCard
    engine: Engine
    runtime_used: Runtime
    runtime_note: str

    @property
    def prec(self) -> Precision:
        return self.engine.precision

    @property
    def device_name(self) -> str:
        return self.engine.device_name

    @property
    def device_type(self) -> str:
        return self.device_name.split(":")[0]

    @classmethod
    def build(
        cls,
        model: torch.nn.Module | None,
        card: ModelCard,
        device: str = "auto",
        precision: str = "auto",
        *,
        channels_last: bool = True,
        runtime: str = "torch",
        runtime_cache: str | Path | None = None,
        threads: int | None = None,
        model_dir: str | Path | None = None,
    ) -> Scorer:
        """The scorer of ``model`` (or, with ``model`` None, of the checkpoint in
        ``model_dir``, whose weights are then loaded only if needed: a cached OpenVINO graph
        needs no torch). ``runtime`` is ``torch``, ``openvino`` or ``auto`` (see
        ``scoring.engines``); ``runtime_cache`` is the OpenVINO graph cache (None: the user
        cache folder), ``threads`` OpenVINO's CPU threads (None: one per physical core).

        Raises ValueError or RuntimeError for a setting that cannot run here."""
        weights = _Weights(model, Path(model_dir) if model_dir is not None else None)
        dev_type, installed = device_type(device), openvino_engine.installed()
        choice = choose_runtime(
            runtime,
            card,
            dev_type,
            precision,
            openvino_installed=installed,
            bf16_native=_bf16_native(runtime, dev_type, precision, installed=installed),
            int8_ready=_int8_ready(runtime, dev_type, precision, installed, weights.model_dir),
        )
        note = choice.note
        if choice.runtime == "openvino":
            try:
                assert choice.precision is not None
                ov = _openvino(weights, card, choice.precision, threads, runtime_cache)
            except Exception as exc:  # noqa: BLE001 - 'auto' falls back, explicit re-raises
                if runtime == "openvino":
                    raise
                note = f"auto: PyTorch, because OpenVINO failed to build: {exc}"
            else:
                return cls(
                    card, ov, "openvino", f"{note}; OpenVINO {ov.version}, graph {ov.source}"
                )
        from cytoscreen.scoring.torch_engine import TorchEngine

        engine = TorchEngine.build(weights.model(), card, device, precision, channels_last)
        return cls(card, engine, "torch", note)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        device: str = "auto",
        precision: str = "auto",
        *,
        channels_last: bool = True,
        runtime: str = "torch",
        runtime_cache: str | Path | None = None,
        threads: int | None = None,
    ) -> Scorer:
        """The scorer of a checkpoint directory: the card is read and the weights file checked
        against the card's sha256 here; the weights themselves are loaded only if needed."""
        card = read_card(model_dir)
        checked_weights(model_dir, card)
        return cls.build(
            None,
            card,
            device,
            precision,
            channels_last=channels_last,
            runtime=runtime,
            runtime_cache=runtime_cache,
            threads=threads,
            model_dir=model_dir,
        )

    def describe(self) -> dict[str, str]:
        """Runtime, precision and device actually used, and why (for provenance records)."""
        return {
            "runtime": self.runtime_used,
            "precision": self.prec,
            "device": self.device_name,
            "runtime_note": self.runtime_note,
        }

    def predict(
        self, pixels: npt.NDArray[np.uint8], batch_size: int = 64
    ) -> npt.NDArray[np.float32]:
        """Softmax per class for uint8 (N, H, W, 3) patches."""
        return self.engine.predict(pixels, batch_size)


def build_scorer(
    model_dir: str | Path,
    scoring: ScoringConfig,
    *,
    card: ModelCard | None = None,
    runtime_cache: str | Path | None = None,
) -> Scorer:
    """The scorer of ``screen`` and ``score``: the checkpoint in ``model_dir`` on the device,
    precision, runtime and threads of the ``scoring`` config section.

    ``card``: the model's card when the caller has already read it and checked the weights
    against it (else both are done here). A setting this machine cannot honour raises
    ``ConfigError`` naming it; a broken checkpoint raises ``BadCheckpoint``.
    """
    path = Path(model_dir)
    if card is None:
        card = read_card(path)
        checked_weights(path, card)
    try:
        return Scorer.build(
            None,
            card,
            scoring.device,
            scoring.precision,
            runtime=scoring.runtime,
            runtime_cache=runtime_cache,
            threads=scoring.threads,
            model_dir=path,
        )
    except CytoscreenError:
        raise
    except (ValueError, RuntimeError, ImportError) as exc:
        raise ConfigError(
            f"cannot score with model {card.model_id}: {exc}",
            subject=path,
            hint="check scoring.device, scoring.precision and scoring.runtime in the config",
        ) from None


def _auto_on_openvino_cpu(runtime: str, dev_type: str, precision: str, installed: bool) -> bool:
    """Whether ``auto`` could choose an OpenVINO CPU precision here (the only place the
    native-precision questions below are asked)."""
    return runtime != "torch" and precision == "auto" and dev_type == "cpu" and installed


def _bf16_native(runtime: str, dev_type: str, precision: str, *, installed: bool) -> bool:
    """Whether OpenVINO runs bf16 natively here, asked only where ``auto`` could choose it."""
    if not _auto_on_openvino_cpu(runtime, dev_type, precision, installed):
        return False
    try:
        return openvino_engine.bf16_native()
    except Exception:  # noqa: BLE001 - a plugin that cannot say runs fp32
        return False


def _int8_ready(
    runtime: str, dev_type: str, precision: str, installed: bool, model_dir: Path | None
) -> bool:
    """Whether ``auto`` may score in int8 here (``openvino_engine.int8_ready``: the quantised
    graph ships in ``model_dir`` and the CPU runs int8 natively)."""
    if not _auto_on_openvino_cpu(runtime, dev_type, precision, installed) or model_dir is None:
        return False
    try:
        return openvino_engine.int8_ready(model_dir)
    except Exception:  # noqa: BLE001 - a plugin that cannot say does not run int8
        return False


@dataclass
class _Weights:
    """The PyTorch model, given or read from ``model_dir`` on first need."""

    given: torch.nn.Module | None
    model_dir: Path | None

    def __post_init__(self) -> None:
        if self.given is None and self.model_dir is None:
            raise ValueError("a Scorer needs a model or the directory of its checkpoint")

    def model(self) -> torch.nn.Module:
        if self.given is None:
            from cytoscreen.scoring.checkpoint import load_checkpoint

            assert self.model_dir is not None
            self.given, _ = load_checkpoint(self.model_dir)
        return self.given


def _openvino(
    weights: _Weights,
    card: ModelCard,
    precision: Precision,
    threads: int | None,
    cache_root: str | Path | None,
) -> openvino_engine.OpenVinoEngine:
    """The OpenVINO engine: from the cached graph without torch when the checkpoint was read
    from disk, else converted from the PyTorch model (and cached)."""
    if precision == "int8":  # the quantised graph shipped beside the weights
        if weights.model_dir is None:
            raise ValueError("int8 scores with the quantised graph of a model folder")
        return openvino_engine.OpenVinoEngine.from_int8(weights.model_dir, card, threads=threads)
    if weights.given is None:  # a checkpoint on disk: a cached graph needs no torch
        engine = openvino_engine.OpenVinoEngine.from_cache(
            card, precision, threads=threads, cache_root=cache_root
        )
        if engine is not None:
            return engine
    from cytoscreen.scoring.openvino_convert import build_engine

    return build_engine(
        weights.model(),
        card,
        precision,
        key=openvino_engine.file_key(card) if weights.model_dir is not None else None,
        threads=threads,
        cache_root=cache_root,
    )
