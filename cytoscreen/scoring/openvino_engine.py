"""OpenVINO on the CPU behind the Scorer, from a cached graph: no PyTorch needed here.

The shipped PyTorch weights are converted once (``cytoscreen.scoring.openvino_convert``, which
needs torch) and cached as an OpenVINO IR pair (``model.xml`` + ``model.bin``, fp32 weights)
under a user cache folder, together with ``reference.npy``: the PyTorch fp32 probabilities of
the same weights on fixed check patches, computed at conversion. An entry is keyed by the
weights' digest, the preprocessing and the OpenVINO version, so a new model, new weights or a
new OpenVINO never reuse a stale graph; ``digest.json`` beside the files is checked on every
load and a damaged entry is ignored (and rebuilt by the converter).

Every engine is checked when it is built: an fp32 engine whose probabilities on the check
patches differ from the PyTorch reference by more than ``SELF_CHECK_ATOL`` is refused, and any
precision must give finite output. Loading from the cache with the reference stored, a run that
scores through OpenVINO never imports torch (about 3-5 s of start-up on 2 cores).

Nothing is ever downloaded, and OpenVINO's usage telemetry (on by default) is declined before
openvino is first imported.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cytoscreen.errors import BadCheckpoint
from cytoscreen.fsutil import file_sha256
from cytoscreen.scoring.card import ModelCard
from cytoscreen.scoring.openvino_import import import_openvino
from cytoscreen.scoring.openvino_import import installed as installed  # re-exported
from cytoscreen.types import Precision

CACHE_ENV = "CYTOSCREEN_RUNTIME_CACHE"
CACHE_FORMAT = 2  # 2: the PyTorch reference probabilities are stored with the graph
SELF_CHECK_ATOL = 1e-3  # probabilities; fp32 OpenVINO agrees with PyTorch to ~1e-5
# OpenVINO's precision hint per precision (an int8 graph's unquantised layers run f32)
HINTS: Mapping[str, str] = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
FILES = ("model.xml", "model.bin", "reference.npy")
# the quantised graph shipped beside a model's weights (scripts/quantize_int8.py), and its record
INT8_FILES = ("openvino_int8.xml", "openvino_int8.bin")
INT8_RECORD = "openvino_int8.json"  # sha256 of each file, the OpenVINO/NNCF versions, the data


USED: Mapping[str, Precision] = {"f32": "fp32", "bf16": "bf16"}  # OpenVINO's type -> ours


def version() -> str:
    return str(import_openvino().__version__)


@functools.cache
def cpu_capabilities() -> frozenset[str]:
    """OpenVINO's CPU plugin's optimisation capabilities here (``BF16``, ``INT8``, ...), asked
    once per process."""
    ov = import_openvino()
    return frozenset(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def bf16_native() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (``BF16`` among its optimisation
    capabilities: AVX512-BF16 or AMX); elsewhere a bf16 hint would run fp32 or be emulated."""
    return "BF16" in cpu_capabilities()


# CPU flags (Linux /proc/cpuinfo) of int8 dot-product instructions: with them OpenVINO's int8
# kernels accumulate exactly; without them (plain AVX2) an intermediate may saturate and the
# int8 scores would not be the ones the int8 calibration was made on
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def int8_native() -> bool:
    """Whether this CPU has int8 dot-product instructions (``INT8_FLAGS``) and OpenVINO's CPU
    plugin lists ``INT8``; False where the flags cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}
    return bool(flags & INT8_FLAGS) and "INT8" in cpu_capabilities()


def int8_shipped(model_dir: str | Path) -> bool:
    """Whether the quantised graph and its record lie beside the weights (``from_int8`` checks
    them against each other)."""
    folder = Path(model_dir)
    return all((folder / name).is_file() for name in (*INT8_FILES, INT8_RECORD))


def int8_ready(model_dir: str | Path) -> bool:
    """Whether the model in ``model_dir`` can score in int8 here as its int8 calibration was
    made: the quantised graph ships beside its weights and the CPU runs int8 natively."""
    return int8_shipped(model_dir) and int8_native()


def default_cache_root() -> Path:
    """$CYTOSCREEN_RUNTIME_CACHE, else $XDG_CACHE_HOME/cytoscreen/openvino (~/.cache/...)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cytoscreen" / "openvino"


def cache_key(card: ModelCard, weights: str) -> str:
    """One folder name: architecture, ``weights`` (a digest of the weights, prefixed by what
    it digests: ``file`` or ``state``), the preprocessing, the OpenVINO version and the cache
    format."""
    prep = hashlib.sha256(card.preprocessing.model_dump_json().encode()).hexdigest()[:8]
    key = f"{card.arch}-{weights}-p{prep}-ov{version()}-f{CACHE_FORMAT}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)  # the version holds '/' (release branch)


def file_key(card: ModelCard) -> str | None:
    """The cache key of a checkpoint read from disk, whose weights file matches the card's
    sha256 (None when the card records no sha256: such weights are keyed by their content)."""
    return cache_key(card, f"file{card.weights_sha256[:16]}") if card.weights_sha256 else None


def read_cached(entry: Path) -> tuple[Any, npt.NDArray[np.float32]] | None:
    """(OpenVINO model, PyTorch reference probabilities) of a cache entry, or None when it is
    absent or its files do not match digest.json."""
    try:
        digests = json.loads((entry / "digest.json").read_text(encoding="utf-8"))
        for name in FILES:
            if file_sha256(entry / name) != digests[name]:
                return None
        reference = np.load(entry / "reference.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return import_openvino().Core().read_model(str(entry / "model.xml")), reference


def write_cached(
    ov_model: Any, reference: npt.NDArray[np.float32], root: Path, entry: Path
) -> None:
    """Write the IR and its reference into a temporary folder, then move it into place in one
    rename. A cache that cannot be written is no error (the next run converts again)."""
    ov = import_openvino()

    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
        np.save(tmp / "reference.npy", np.asarray(reference, dtype=np.float32))
        digests = {n: file_sha256(tmp / n) for n in FILES}
        (tmp / "digest.json").write_text(json.dumps(digests, indent=2), encoding="utf-8")
        if entry.exists():  # damaged entry, or another process got there first
            shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def check_pixels(card: ModelCard, n: int = 4) -> npt.NDArray[np.uint8]:
    """Fixed, patch-like pixels (pale background with darker blobs) for the self-check."""
    _, h, w = card.preprocessing.input_size
    rng = np.random.default_rng(20261122)
    pix = rng.integers(170, 250, size=(n, h, w, 3), dtype=np.uint8)
    pix[:, h // 4 : h // 2, w // 4 : w // 2] //= 2
    return pix


@dataclass
class OpenVinoEngine:
    """A compiled OpenVINO CPU model: uint8 NHWC patches in, softmax per class out."""

    compiled: Any
    n_classes: int
    precision: Precision
    threads: int
    source: str  # 'converted' or 'cache <path>'
    version: str
    requests: int = 1  # requests kept in flight: OpenVINO's optimal number for its streams
    # each thread's own infer requests, made on its first predict (a request is not shared)
    _local: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )

    @property
    def device_name(self) -> str:
        return "cpu"  # OpenVINO's CPU plugin is the one measured and used

    @classmethod
    def compile(
        cls,
        ov_model: Any,
        card: ModelCard,
        precision: Precision,
        reference: npt.NDArray[np.float32],
        *,
        source: str,
        threads: int | None = None,
    ) -> OpenVinoEngine:
        """Compile ``ov_model`` for the CPU and check it against ``reference`` (PyTorch fp32
        probabilities on ``check_pixels(card)``; only an fp32 engine is compared with it).
        ``precision`` int8: ``ov_model`` is a quantised graph (``from_int8``). ``threads``
        None: OpenVINO's default (one per physical core)."""
        ov = import_openvino()
        if precision not in HINTS:
            raise ValueError(f"OpenVINO runs fp32, bf16 or int8 on the CPU, not {precision}")
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "THROUGHPUT",  # streams of one or a few threads each
            "INFERENCE_PRECISION_HINT": HINTS[precision],
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(ov_model, "CPU", config)
        used = int(compiled.get_property("INFERENCE_NUM_THREADS")) or (threads or 0)
        requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        # the precision it really runs (a CPU without bf16 runs a bf16 hint in f32): the
        # calibration that decides the slides must be the one made on such scores
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        runs: Precision = precision if precision == "int8" else USED.get(hint, precision)
        engine = cls(compiled, card.num_classes, runs, used, source, version(), requests)
        engine.self_check(card, reference)
        return engine

    @classmethod
    def from_cache(
        cls,
        card: ModelCard,
        precision: Precision,
        *,
        threads: int | None = None,
        cache_root: str | Path | None = None,
    ) -> OpenVinoEngine | None:
        """The engine of a checkpoint read from disk (weights checked against the card) from
        its cached graph, without torch; None when there is no valid entry yet."""
        key = file_key(card)
        if key is None:
            return None
        entry = (Path(cache_root) if cache_root is not None else default_cache_root()) / key
        cached = read_cached(entry)
        if cached is None:
            return None
        ov_model, reference = cached
        return cls.compile(
            ov_model, card, precision, reference, source=f"cache {entry}", threads=threads
        )

    @classmethod
    def from_int8(
        cls, model_dir: str | Path, card: ModelCard, *, threads: int | None = None
    ) -> OpenVinoEngine:
        """The quantised graph shipped in ``model_dir`` (``INT8_FILES``), checked against its
        record (``INT8_RECORD``: sha256 of each file, and the weights it was quantised from).
        Raises BadCheckpoint when it is missing, altered or made from other weights."""
        ov = import_openvino()
        folder = Path(model_dir)
        hint = "use scoring.precision fp32 or bf16, or quantise again: scripts/quantize_int8.py"
        try:
            record = json.loads((folder / INT8_RECORD).read_text(encoding="utf-8"))
            altered = [n for n in INT8_FILES if file_sha256(folder / n) != record["sha256"][n]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadCheckpoint(
                f"no usable int8 graph beside the model ({exc})", subject=folder, hint=hint
            ) from None
        if altered:
            raise BadCheckpoint(
                f"{altered[0]} does not match {INT8_RECORD}", subject=folder, hint=hint
            )
        if record.get("weights_sha256") != card.weights_sha256:
            raise BadCheckpoint(
                "the int8 graph was quantised from other weights than the card's",
                subject=folder,
                hint=hint,
            )
        graph = ov.Core().read_model(str(folder / INT8_FILES[0]))
        no_reference = np.zeros((0, card.num_classes), np.float32)  # not fp32: finite only
        return cls.compile(
            graph, card, "int8", no_reference, source=f"shipped {folder.name}/", threads=threads
        )

    def predict(self, pixels: npt.NDArray[np.uint8], batch_size: int) -> npt.NDArray[np.float32]:
        """Softmax per class of ``pixels`` (N, H, W, 3 uint8), in order.

        The patches are cut into sub-batches of at most ``batch_size``, small enough that every
        stream gets about two of them, and kept in flight on ``requests`` requests: on 2 cores
        two single-thread streams score 8-18% more patches a second than one two-thread stream
        (docs/performance.md), with the same numbers (each patch is computed alone either way).
        """
        n = len(pixels)
        if n == 0:
            return np.zeros((0, self.n_classes), np.float32)
        size = max(1, min(batch_size, -(-n // (2 * self.requests))))
        starts = list(range(0, n, size))
        slots = self._slots()[: len(starts)]
        out = np.empty((n, self.n_classes), np.float32)
        pending: list[tuple[int, Any, npt.NDArray[np.uint8]]] = []  # (start, request, input)

        def collect() -> Any:
            start, request, _ = pending.pop(0)
            request.wait()
            got = request.get_output_tensor(0).data
            out[start : start + len(got)] = got
            return request

        for k, start in enumerate(starts):
            request = slots[k] if k < len(slots) else collect()
            batch = np.ascontiguousarray(pixels[start : start + size], dtype=np.uint8)
            request.start_async({0: batch}, share_inputs=True)  # no copy: batch is kept
            pending.append((start, request, batch))  # the input lives until its result is read
        while pending:
            collect()
        return out

    def _slots(self) -> list[Any]:
        slots: list[Any] | None = getattr(self._local, "slots", None)
        if slots is None:
            slots = [self.compiled.create_infer_request() for _ in range(self.requests)]
            self._local.slots = slots
        return slots

    def self_check(self, card: ModelCard, reference: npt.NDArray[np.float32]) -> None:
        """fp32 must agree with the PyTorch fp32 reference; any precision must give finite
        output."""
        pix = check_pixels(card)
        got = self.predict(pix, len(pix))
        if not np.isfinite(got).all():
            raise BadCheckpoint(
                f"OpenVINO ({self.precision}) gave non-finite scores on the self-check patches",
                subject=card.model_id,
                hint="set scoring.runtime=torch",
            )
        if self.precision != "fp32":
            return
        if reference.shape != got.shape:
            raise BadCheckpoint(
                f"the OpenVINO self-check reference has shape {reference.shape}, the model "
                f"gives {got.shape}",
                subject=card.model_id,
                hint=f"delete {default_cache_root()} and retry, or set scoring.runtime=torch",
            )
        worst = float(np.abs(got - reference).max())
        if worst > SELF_CHECK_ATOL:
            raise BadCheckpoint(
                f"OpenVINO fp32 differs from PyTorch fp32 by {worst:.2g} on the self-check "
                f"patches (allowed {SELF_CHECK_ATOL})",
                subject=card.model_id,
                hint=f"delete {default_cache_root()} and retry, or set scoring.runtime=torch",
            )
