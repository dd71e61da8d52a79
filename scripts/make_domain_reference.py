"""Fit the domain reference (domain.json) from generated Pap slides of CRIC train and val cells.

    nice -n 10 .venv/bin/python scripts/make_domain_reference.py \
        --out cytoscreen/models/default/domain.json

Generates ``--slides`` small slides with ``cytoscreen.synth`` from the fields the model was
trained on and those its threshold was calibrated on (data_manifests/cric_splits.json,
``train`` and ``val``: ``--splits``; the bundled kit when the full cell set is absent),
alternating negative and positive, liquid-based and conventional, with the stain, colour, focus
and density ranges of the calibration slides (``synth.patches.Conditions``), tiles
them with the screen configuration, profiles a sample of each slide's cached patches
(``cytoscreen.slide.domain``) and writes the per-statistic median and spread, with a record of
the data it came from, to ``--out``. Prints each slide's profile and shift against the result.
About a minute on two cores. ``--from-slides DIR`` fits the reference to existing slides
instead (a laboratory's own in-domain scans: the generated slides' glass and stain are narrower
than a real scanner's). ``scripts/measure_domain_shift.py`` measures the margins that set
``triage.max_domain_shift``.

A thin wrapper over ``cytoscreen.domain_reference`` (the same as ``cytoscreen domain-reference``,
which names its flags ``--n-cells``, ``--split`` and ``--splits FILE``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cytoscreen.config import load_config
from cytoscreen.domain_reference import (
    GeneratedSet,
    fit_domain_reference,
    summary_lines,
    write_reference,
)

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="domain.json to write")
    ap.add_argument("--config", type=Path, default=None, help="screen config (tiling)")
    ap.add_argument("--slides", type=int, default=24, help="generated slides")
    ap.add_argument("--cells", type=int, default=1500, help="labelled cells per slide")
    ap.add_argument("--seed", type=int, default=8300)
    ap.add_argument(
        "--splits",
        nargs="+",
        choices=("train", "val"),
        default=["train", "val"],
        help="fields to draw (default: those the model trained on and those the threshold "
        "was calibrated on: a threshold holds on slides like its calibration slides)",
    )
    ap.add_argument(
        "--from-slides",
        type=Path,
        nargs="+",
        default=None,
        help="fit to these slides or folders (a lab's own in-domain scans) instead",
    )
    ap.add_argument("--work", type=Path, default=None, help="keep slides and caches here")
    args = ap.parse_args()

    if args.from_slides:
        command = "scripts/make_domain_reference.py --from-slides " + " ".join(
            str(p) for p in args.from_slides
        )
    else:
        command = (
            "scripts/make_domain_reference.py "
            f"--slides {args.slides} --cells {args.cells} --seed {args.seed} "
            f"--splits {' '.join(args.splits)}"
        )
    fitted = fit_domain_reference(
        load_config(args.config),
        from_slides=args.from_slides,
        generated=GeneratedSet(
            n_slides=args.slides,
            n_cells=args.cells,
            seed=args.seed,
            splits=tuple(args.splits),
            splits_file=REPO / "data_manifests" / "cric_splits.json",
        ),
        work=args.work,
        command=command,
        log=lambda line: print(line, flush=True),
    )
    write_reference(fitted, args.out)
    print(f"\nwrote {args.out} from {len(fitted.profiles)} slides")
    print("\n".join(summary_lines(fitted)))


if __name__ == "__main__":
    main()
