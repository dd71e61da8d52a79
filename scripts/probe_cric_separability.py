"""How separable are abnormal and NILM CRIC crops at all? A linear probe on frozen features.

    .venv/bin/python scripts/probe_cric_separability.py

Takes the non-empty crops of the CRIC development set (``near_empty`` = 0), and for each input
size fits a logistic regression on frozen ImageNet EfficientNet-Lite0 features (the offline
weights the bundled model starts from), 5-fold cross-validated over cells; also on simple
darkness features (share of pixels under a grey level). It prints the cross-validated AUC of
abnormal (ASC-US or worse) against NILM, on all crops and on crops with a haematoxylin-dark
object at their centre. This bounds what a classifier can learn from these labels: a low figure
means the crop images carry little of what their labels say (crops not centred on the
labelled cell), not that the model is badly trained.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from skimage.color import rgb2hed
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from cytoscreen.scoring.pretrained import load_lite0_imagenet

REPO = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def features(model: torch.nn.Module, crops: np.ndarray, size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 64):
            x = torch.from_numpy(crops[i : i + 64]).permute(0, 3, 1, 2).float() / 255
            x = torch.nn.functional.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            out.append(model((x - MEAN) / STD).numpy())
    return np.concatenate(out)


def cv_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    clf = LogisticRegression(C=0.1, max_iter=3000)
    p = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=REPO.parent / "shared/data/cric/manifest.csv")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = args.manifest.parent
    with args.manifest.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["near_empty"] == "0"]
    y = np.array([int(r["abnormal"]) for r in rows])
    crops = np.stack([np.asarray(Image.open(root / r["path"]).convert("RGB")) for r in rows])
    grey = crops.mean(-1)
    dark = np.stack([(grey < t).mean((1, 2)) for t in (60, 80, 100, 120, 140)], 1)
    haem = np.stack([rgb2hed(c)[..., 0] for c in crops])
    h, w = haem.shape[1:]
    centre = (haem[:, h // 2 - 15 : h // 2 + 15, w // 2 - 15 : w // 2 + 15] > 0.1).mean((1, 2))
    centred = centre > 0.05
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    load_lite0_imagenet(model)
    model.reset_classifier(0)
    model.eval()
    print(f"{len(y)} non-empty crops: {int(y.sum())} abnormal, {int((y == 0).sum())} NILM;")
    print(f"{int(centred.sum())} with a haematoxylin-dark object at the centre")
    print("| features | crops | n | cross-validated AUC abnormal vs NILM |")
    print("|---|---|---|---|")
    z = (dark - dark.mean(0)) / (dark.std(0) + 1e-9)
    print(f"| darkness shares | all | {len(y)} | {cv_auc(z, y, args.seed):.3f} |")
    for size in (50, 100, 224):
        f = features(model, crops, size)
        print(f"| ImageNet lite0, {size} px | all | {len(y)} | {cv_auc(f, y, args.seed):.3f} |")
        if size == 224:
            a = cv_auc(f[centred], y[centred], args.seed)
            print(f"| ImageNet lite0, {size} px | centred | {int(centred.sum())} | {a:.3f} |")


if __name__ == "__main__":
    main()
