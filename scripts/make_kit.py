"""Build the small attributed CRIC kit bundled in cytoscreen/data/cric_kit.

Copies every crop of a few whole CRIC fields (so they can be pasted back into their fields,
neighbours and all) from the development set, with the manifest columns of the full set and an
ATTRIBUTION.md. The fields come from the *test* split of data_manifests/cric_splits.json, so no
model is trained or calibrated on them: they serve the demo and the tests.

    .venv/bin/python scripts/make_kit.py [--src ../shared/data/cric]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from collections import Counter
from pathlib import Path

from cytoscreen.synth.cric import CRIC_COLUMNS, load_image_splits, read_cric
from cytoscreen.synth.kit import BUNDLED_KIT

REPO = Path(__file__).resolve().parents[1]
# test-split fields: four NILM-only fields with many cells, and fields showing each abnormal class
FIELDS = {
    136: "NILM only",
    134: "NILM only",
    153: "NILM only",
    127: "NILM only",
    351: "LSIL among NILM",
    291: "ASC-US among NILM",
    50: "ASC-H among NILM",
    93: "HSIL and SCC",
}

ATTRIBUTION = """# CRIC cell kit: attribution

The PNG crops in this folder are unmodified 100 x 100 px crops (a few shorter at a field's
edge) from the CRIC Cervix collection:

> Rezende, M. T. et al. "CRIC searchable image database as a public platform for conventional
> pap smear cytology data." *Scientific Data* 8, 151 (2021). https://doi.org/10.1038/s41597-021-00933-8
> (collection: CRIC Cervix Cell Classification, figshare, doi 10.6084/m9.figshare.c.4960286.v2)

The collection was published openly for research with attribution, under CC BY 4.0 as far as
the project knows; confirm the licence before redistributing these images outside the project.

- Every crop of {n_fields} whole fields ({fields}): {n_cells} crops ({per_class}), each centred
  on its labelled nucleus, with the crop's and the nucleus's position in its field, so the
  crops of one field paste back into the real field around them.
- `manifest.csv` has the columns of the CRIC development manifest: {columns}.
- Conventional Pap stain, 40x objective. The pixel size is not recorded with the crops: the
  project assumes **0.25 um/px** (a working assumption, not a measurement).
- The fields are from the `test` split of data_manifests/cric_splits.json (never trained or
  calibrated on); chosen by `scripts/make_kit.py` for the demo and the tests.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared/data/cric")
    ap.add_argument("--out", type=Path, default=BUNDLED_KIT)
    args = ap.parse_args()
    crops = read_cric(args.src / "manifest.csv")
    splits = load_image_splits(REPO / "data_manifests/cric_splits.json")
    wrong = [i for i in FIELDS if splits.split_of(i) != "test"]
    if wrong:
        raise SystemExit(f"fields {wrong} are not in the test split")
    chosen = [c for c in crops if c.image_id in FIELDS]
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    with (args.src / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        rows = {int(r["cric_cell_id"]): r for r in csv.DictReader(fh)}
    with (args.out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CRIC_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for c in chosen:
            row = rows[c.cell_id]
            dst = args.out / row["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(c.path, dst)
            writer.writerow({k: row[k] for k in CRIC_COLUMNS})
    per_class = Counter(c.bethesda for c in chosen)
    (args.out / "ATTRIBUTION.md").write_text(
        ATTRIBUTION.format(
            n_fields=len(FIELDS),
            fields=", ".join(f"image {k}: {v}" for k, v in FIELDS.items()),
            n_cells=len(chosen),
            per_class=", ".join(f"{k} {v}" for k, v in sorted(per_class.items())),
            columns=", ".join(f"`{c}`" for c in CRIC_COLUMNS),
        ),
        encoding="utf-8",
    )
    print(f"wrote {len(chosen)} crops of {len(FIELDS)} fields to {args.out}: {dict(per_class)}")


if __name__ == "__main__":
    main()
