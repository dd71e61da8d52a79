"""Finding and importing openvino without its side effects (no torch here: cheap to import).

``installed`` looks for the package without importing it. ``import_openvino`` declines
OpenVINO's usage telemetry for this process first: ``import openvino`` (its model-conversion
API) and NNCF send usage events to Google Analytics by default unless the user has opted out.
Slides are patient data and this tool must not talk to the network.
"""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = ["decline_telemetry", "import_openvino", "installed"]


def installed() -> bool:
    """Whether the openvino package is there (found, not imported: importing it has effects)."""
    return importlib.util.find_spec("openvino") is not None


def decline_telemetry() -> None:
    """Make the telemetry consent check answer "declined" in this process (call it before
    openvino or nncf is imported); the user's own consent file is neither read nor written."""
    try:
        from openvino_telemetry.utils import opt_in_checker
    except ImportError:  # no telemetry package: nothing to decline
        return
    declined = opt_in_checker.ConsentCheckResult.DECLINED
    opt_in_checker.OptInChecker.check = lambda self, *args, **kwargs: declined


def import_openvino() -> Any:
    """``openvino``, imported with its telemetry declined."""
    decline_telemetry()
    import openvino

    return openvino
