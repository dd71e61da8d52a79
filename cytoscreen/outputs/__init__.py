"""What ``cytoscreen screen`` writes: field tables (CSV, JSON, QuPath GeoJSON), thumbnails and
heatmaps, and the run summary."""

from cytoscreen.outputs.fieldfiles import fields_csv, fields_geojson, fields_json_rows
from cytoscreen.outputs.summary import SUMMARY_COLUMNS, summary_csv, summary_row

__all__ = [
    "SUMMARY_COLUMNS",
    "fields_csv",
    "fields_geojson",
    "fields_json_rows",
    "summary_csv",
    "summary_row",
]
