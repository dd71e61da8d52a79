"""Build the small attributed CRIC cell kit bundled in cytoscreen/data/cric_kit.

Copies ~16 NILM and ~6 cells of each abnormal class (never near-empty crops) plus a few
near-empty (background-only) crops for texture from the CRIC development set, with a manifest
in the same columns and an ATTRIBUTION.md. Deterministic for a seed.

    .venv/bin/python scripts/make_kit.py [--src ../shared/data/cric] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cytoscreen.synth.compose import GLASS_MIN_BRIGHTNESS, cell_alpha
from cytoscreen.synth.kit import BUNDLED_KIT, MANIFEST_COLUMNS

PER_CLASS = {"NILM": 16, "ASC-US": 6, "LSIL": 6, "ASC-H": 6, "HSIL": 6, "SCC": 6}
N_BACKGROUND = 6

ATTRIBUTION = """# CRIC cell kit: attribution

The PNG crops in this folder are unmodified 100 x 100 px crops from the CRIC Cervix collection:

> Rezende, M. T. et al. "CRIC searchable image database as a public platform for conventional
> pap smear cytology data." *Scientific Data* 8, 151 (2021). https://doi.org/10.1038/s41597-021-00933-8

The collection was published openly for research with attribution, under CC BY 4.0 as far as
the project knows; confirm the licence before redistributing these images outside the project.

- {n_cells} cells ({per_class}) that show a cell, plus {n_bg} background-only crops
  (`near_empty = 1`, used only as background texture, never as cells).
- `manifest.csv` has the columns of the CRIC development manifest: `path`, `bethesda`,
  `abnormal`, `cric_cell_id`, `width`, `height`, `near_empty`.
- Conventional Pap stain, 40x objective. The pixel size is not recorded with the crops: the
  project assumes **0.25 um/px** (a working assumption, not a measurement).
- Chosen by `scripts/make_kit.py --seed {seed}` among crops whose own background is visible.
"""


def _usable(path: Path) -> bool:
    """A nucleus near the centre, glass visible, the cell mostly inside the crop."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    flat = rgb.reshape(-1, 3).astype(np.float32).sum(axis=1) / 3
    _, alpha = cell_alpha(rgb)
    ring = np.ones(alpha.shape, bool)
    ring[12:-12, 12:-12] = False
    stained_ring = float((alpha[ring] > 0.05).mean())
    grey = rgb.astype(np.float32).mean(axis=2)
    nucleus = int((grey[30:70, 30:70] < 130).sum())  # a dark nucleus near the centre
    return bool(
        nucleus >= 40
        and np.quantile(flat, 0.97) >= GLASS_MIN_BRIGHTNESS + 15
        and 0.06 <= alpha.mean() <= 0.5
        and stained_ring < 0.45
    )


def build(src: Path, dst: Path, seed: int) -> list[dict[str, str]]:
    with (src / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    chosen: list[dict[str, str]] = []
    for cls, n in PER_CLASS.items():
        pool = [r for r in rows if r["bethesda"] == cls and r["near_empty"] == "0"]
        order = rng.permutation(len(pool))
        picked = [pool[i] for i in order if _usable(src / pool[i]["path"])][:n]
        chosen += picked
    empties = [r for r in rows if r["near_empty"] == "1"]
    chosen += [empties[i] for i in rng.choice(len(empties), N_BACKGROUND, replace=False)]
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for r in chosen:
        (dst / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / r["path"], dst / r["path"])
    with (dst / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: r[k] for k in MANIFEST_COLUMNS} for r in chosen)
    n_cells = sum(1 for r in chosen if r["near_empty"] == "0")
    per_class = ", ".join(f"{k} {v}" for k, v in PER_CLASS.items())
    (dst / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(n_cells=n_cells, per_class=per_class, n_bg=N_BACKGROUND, seed=seed),
        encoding="utf-8",
    )
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path("../shared/data/cric"))
    ap.add_argument("--dst", type=Path, default=BUNDLED_KIT)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    chosen = build(args.src, args.dst, args.seed)
    size = sum(p.stat().st_size for p in args.dst.rglob("*") if p.is_file())
    print(f"wrote {len(chosen)} crops to {args.dst} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
