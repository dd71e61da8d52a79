"""Ranked fields as tables: CSV, JSON rows and QuPath-importable GeoJSON (text in, text out).

Coordinates are level-0 pixels; boxes are ``[x0, x1) x [y0, y1)``. The GeoJSON is a
FeatureCollection of rectangle Polygons with ``objectType: "annotation"``, a display name
(``field 1 (0.93)``), a classification ``{name, color}`` and numeric measurements, which QuPath
reads with *File > Import objects* (or drag and drop).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from cytoscreen.types import SuspiciousField

FIELD_COLUMNS = (
    "rank",
    "score",
    "x0",
    "y0",
    "x1",
    "y1",
    "width",
    "height",
    "centre_x",
    "centre_y",
    "n_patches",
    "image",
)
CLASS_NAME = "Suspicious field"
CLASS_COLOR = (220, 30, 30)


def field_image_name(rank: int) -> str:
    return f"fields/{rank}.png"


def fields_json_rows(fields: Sequence[SuspiciousField]) -> list[dict[str, Any]]:
    """One dict per field (the columns of fields.csv plus the patch indices)."""
    return [
        {
            "rank": f.rank,
            "score": round(f.score, 6),
            "x0": f.x0,
            "y0": f.y0,
            "x1": f.x1,
            "y1": f.y1,
            "width": f.x1 - f.x0,
            "height": f.y1 - f.y0,
            "centre_x": (f.x0 + f.x1) // 2,
            "centre_y": (f.y0 + f.y1) // 2,
            "n_patches": len(f.patch_indices),
            "image": field_image_name(f.rank),
            "patch_indices": list(f.patch_indices),
        }
        for f in fields
    ]


def fields_csv(fields: Sequence[SuspiciousField]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(FIELD_COLUMNS), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(fields_json_rows(fields))
    return buf.getvalue()


def _feature(f: SuspiciousField, slide_id: str) -> dict[str, Any]:
    ring = [[f.x0, f.y0], [f.x1, f.y0], [f.x1, f.y1], [f.x0, f.y1], [f.x0, f.y0]]
    return {
        "type": "Feature",
        "id": f"{slide_id}-field-{f.rank}",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "objectType": "annotation",
            "name": f"field {f.rank} ({f.score:.2f})",
            "classification": {"name": CLASS_NAME, "color": list(CLASS_COLOR)},
            "isLocked": False,
            "measurements": {
                "rank": f.rank,
                "score": round(f.score, 6),
                "n_patches": len(f.patch_indices),
            },
        },
    }


def fields_geojson(fields: Sequence[SuspiciousField], slide_id: str) -> str:
    """A GeoJSON FeatureCollection of the fields (level-0 pixel coordinates)."""
    collection = {
        "type": "FeatureCollection",
        "features": [_feature(f, slide_id) for f in fields],
    }
    return json.dumps(collection, indent=1, allow_nan=False) + "\n"
