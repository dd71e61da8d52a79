"""QA figures as PNG bytes (matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cytoscreen.qa.metrics import Roc  # noqa: E402
from cytoscreen.types import Outcome  # noqa: E402


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def roc_png(curve: Roc, point: tuple[float, float] | None, caption: str) -> bytes:
    """ROC curve; ``point`` (1 - specificity, sensitivity) marks the calibrated threshold."""
    fig, ax = plt.subplots(figsize=(5.0, 5.0))
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    ax.plot(
        curve.fpr,
        curve.tpr,
        color="tab:blue",
        lw=2,
        label=f"AUC {curve.auc:.3f} (95% CI {curve.auc_lower:.3f}-{curve.auc_upper:.3f})",
    )
    if point is not None:
        ax.plot(*point, "o", color="tab:red", ms=9, label="calibrated threshold")
    ax.set(
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        xlabel="1 - specificity (negative slides sent to review)",
        ylabel="sensitivity (positive slides sent to review)",
        title=f"ROC ({curve.n_positive} positive, {curve.n_negative} negative slides)",
    )
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    fig.text(0.01, -0.02, caption, fontsize=7, wrap=True)
    return _png(fig)


def scores_png(
    scores: Sequence[float], labels: Sequence[int], threshold: float | None, caption: str
) -> bytes:
    """Slide-score distributions of negative and positive slides, threshold marked."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 26)
    for mask, name, colour in ((~y, "negative", "tab:green"), (y, "positive", "tab:red")):
        ax.hist(
            s[mask], bins=bins.tolist(), alpha=0.55, color=colour, label=f"{name} (n={mask.sum()})"
        )
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.5, label=f"threshold {threshold:.4g}")
    ax.set(xlabel="slide score", ylabel="slides", title="Slide scores by truth")
    ax.legend(fontsize=8)
    fig.text(0.01, -0.04, caption, fontsize=7, wrap=True)
    return _png(fig)


def confusion_png(table: Mapping[str, Mapping[str, int]], caption: str) -> bytes:
    """Truth (rows) against call (columns), not-assessable slides in their own column."""
    rows = ("negative", "positive")
    cols = (Outcome.NEGATIVE, Outcome.REVIEW, Outcome.NOT_ASSESSABLE)
    m = np.array([[table[r][c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, int(m.max())))
    for i in range(len(rows)):
        for j in range(len(cols)):
            dark = m[i, j] > m.max() / 2
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if dark else "k")
    ax.set_xticks(range(len(cols)), ["set aside\n(negative)", "review", "not\nassessable"])
    ax.set_yticks(range(len(rows)), ["truth negative", "truth positive"])
    ax.set_title("Calls at the calibrated threshold")
    fig.text(0.01, -0.16, caption, fontsize=7, wrap=True)
    return _png(fig)
