"""Which inference runtime scores the patches: PyTorch, or OpenVINO where it is proven.

``scoring.runtime`` is ``torch``, ``openvino`` or ``auto``. ``auto`` takes OpenVINO only when
all of these hold, and otherwise PyTorch with a note saying which one failed:

- the device is the CPU (OpenVINO's CPU plugin is the one measured),
- the ``openvino`` package is installed (it is optional: ``pip install 'cytoscreen[openvino]'``),
- the model card records a validation AUC measured through OpenVINO at the precision to be run
  (``validation["patch_auc_openvino_<precision>"]``, written by ``cytoscreen train`` when
  OpenVINO is installed, or by ``scripts/revalidate_card.py`` for a shipped model) within
  ``MAX_AUC_CHANGE`` of the PyTorch fp32 AUC on the same patches
  (``validation["patch_auc_fp32"]``).

With ``scoring.precision: auto`` OpenVINO runs the fastest precision that is proven here:
int8 where the quantised graph ships beside the weights, the CPU has int8 dot-product
instructions (VNNI or AMX, like the machine the int8 calibration was made on) and the card
proves int8 as above; else bf16 where the CPU runs bf16 natively (OpenVINO lists ``BF16``
among its optimisation capabilities) and the card proves bf16; else fp32. A slide is decided
by the calibration made on scores like its own (``resolve.ModelChoice.scorer`` steps back to
the next precision when no calibration describes the first).

``Engine`` is what the Scorer asks of either engine (``torch_engine.TorchEngine``,
``openvino_engine.OpenVinoEngine``); ``scoring.scorer.build_scorer`` builds the one chosen.

Pure decisions only: nothing here imports openvino or touches files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from cytoscreen.scoring.card import ModelCard
from cytoscreen.types import RUNTIMES, Precision, Runtime

# what the runtime note adds when 'auto' took a precision because the CPU runs it natively
NATIVE_NOTES = {
    "bf16": " (the CPU runs bf16 natively)",
    "int8": " (the quantised graph ships and the CPU has int8 dot-product instructions)",
}
MAX_AUC_CHANGE = 0.005  # largest |AUC(runtime) - AUC(PyTorch fp32)| accepted on the val patches
FP32_KEY = "patch_auc_fp32"


class Engine(Protocol):
    """An inference engine: uint8 NHWC patches in, softmax per class out, in one precision
    on one device."""

    @property
    def precision(self) -> Precision: ...

    @property
    def device_name(self) -> str:
        """The device it runs on, as torch names it ('cpu', 'cuda:0')."""
        ...

    def predict(
        self, pixels: npt.NDArray[np.uint8], batch_size: int
    ) -> npt.NDArray[np.float32]: ...


def auc_key(runtime: str, precision: str) -> str:
    """The card's validation key for the AUC measured through ``runtime`` at ``precision``."""
    return f"patch_auc_{runtime}_{precision}"


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: Runtime
    note: str = ""  # why this runtime (always set when 'auto' keeps PyTorch)
    precision: Precision | None = None  # OpenVINO's precision; None for PyTorch


def card_verdict(card: ModelCard, runtime: str, precision: str) -> str | None:
    """None when the card proves ``runtime`` at ``precision`` keeps the fp32 AUC, else why not."""
    key = auc_key(runtime, precision)
    measured, ref = card.validation.get(key), card.validation.get(FP32_KEY)
    if measured is None or ref is None:
        missing = key if measured is None else FP32_KEY
        return (
            f"the model card has no '{missing}' AUC (`cytoscreen train` measures the OpenVINO fp32 "
            "one when openvino is installed; --runtime torch scores without it)"
        )
    if measured.value is None or ref.value is None:
        return f"the card's '{key}' or fp32 AUC holds no value"
    change = measured.value - ref.value
    if not math.isfinite(change) or abs(change) > MAX_AUC_CHANGE:
        return (
            f"the card's {runtime} {precision} AUC {measured.value:.4f} differs from the fp32 "
            f"AUC {ref.value:.4f} by more than {MAX_AUC_CHANGE}"
        )
    if measured.n != ref.n:
        return f"the card's {runtime} AUC and fp32 AUC rest on different patch counts"
    return None


def openvino_precision(
    precision: str,
    card: ModelCard | None = None,
    *,
    bf16_native: bool = False,
    int8_ready: bool = False,
) -> Precision:
    """OpenVINO's precision: 'auto' runs int8 where it is ready here (``int8_ready``: the
    quantised graph ships and the CPU has int8 dot-product instructions), else bf16 where the
    CPU runs it natively, each only where ``card`` proves it keeps the fp32 AUC
    (``card_verdict``), else fp32; fp32, bf16 and int8 as asked."""
    if precision == "auto":
        for candidate, ready in (("int8", int8_ready), ("bf16", bf16_native)):
            if ready and card is not None and card_verdict(card, "openvino", candidate) is None:
                return candidate  # type: ignore[return-value]
        return "fp32"
    if precision == "fp16":
        raise ValueError("fp16 is for CUDA; OpenVINO on the CPU runs fp32, bf16 or int8")
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"unknown precision {precision!r}")
    return precision  # type: ignore[return-value]


def choose_runtime(
    requested: str,
    card: ModelCard,
    device_type: str,
    precision: str,
    *,
    openvino_installed: bool,
    bf16_native: bool = False,
    int8_ready: bool = False,
) -> RuntimeChoice:
    """The runtime to build (and OpenVINO's precision). An explicit ``openvino`` that cannot run
    raises ValueError saying what to do; ``auto`` never raises for that: it keeps PyTorch and
    says why in the note. ``bf16_native``: the CPU runs bf16 natively; ``int8_ready``: the
    quantised graph ships and the CPU runs int8 natively (see the module doc)."""
    if requested not in RUNTIMES:
        raise ValueError(f"unknown scoring runtime {requested!r}; choose one of {RUNTIMES}")
    if requested == "torch":
        return RuntimeChoice("torch", "scoring.runtime=torch")
    if requested == "openvino":
        if device_type != "cpu":
            raise ValueError(
                f"scoring.runtime=openvino runs on the CPU, but the device is {device_type}: "
                "set scoring.device=cpu or scoring.runtime=torch"
            )
        if not openvino_installed:
            raise ValueError(
                "scoring.runtime=openvino but the openvino package is not installed: "
                "pip install 'cytoscreen[openvino]', or set scoring.runtime=torch"
            )
        prec = openvino_precision(  # refuses fp16
            precision, card, bf16_native=bf16_native, int8_ready=int8_ready
        )
        return RuntimeChoice("openvino", "scoring.runtime=openvino", prec)
    ready = {"bf16_native": bf16_native, "int8_ready": int8_ready}
    why = fallback_note(
        card, device_type, precision, openvino_installed=openvino_installed, **ready
    )
    if why:
        return RuntimeChoice("torch", why)
    prec = openvino_precision(precision, card, **ready)
    native = NATIVE_NOTES.get(prec, "") if precision == "auto" else ""
    return RuntimeChoice(
        "openvino",
        f"auto: OpenVINO {prec}{native}: installed, and the model card's AUC measured through "
        f"it at {prec} is within {MAX_AUC_CHANGE} of PyTorch fp32",
        prec,
    )


def fallback_note(
    card: ModelCard,
    device_type: str,
    precision: str,
    *,
    openvino_installed: bool,
    bf16_native: bool = False,
    int8_ready: bool = False,
) -> str:
    """Why ``auto`` keeps PyTorch ('' when OpenVINO qualifies)."""
    if device_type != "cpu":
        return f"auto: PyTorch on {device_type} (OpenVINO is used on the CPU only)"
    if not openvino_installed:
        return (
            "auto: PyTorch, because the openvino package is not installed "
            "(pip install 'cytoscreen[openvino]' for faster CPU scoring)"
        )
    try:
        prec = openvino_precision(precision, card, bf16_native=bf16_native, int8_ready=int8_ready)
    except ValueError as exc:
        return f"auto: PyTorch, because {exc}"
    why = card_verdict(card, "openvino", prec)
    return f"auto: PyTorch, because {why}" if why else ""
