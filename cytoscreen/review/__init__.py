"""Pathologist review: static galleries, a local review server with a slide viewer, marks kept
in SQLite, and reviewed fields turned back into labelled training patches."""

from cytoscreen.review.gallery import render_index, render_slide, write_gallery
from cytoscreen.review.marks import BETHESDA_ABNORMAL, LABELS, Mark, MarkStore, marks_csv
from cytoscreen.review.results import ResultsView, SlideView, load_results

__all__ = [
    "BETHESDA_ABNORMAL",
    "LABELS",
    "Mark",
    "MarkStore",
    "ResultsView",
    "SlideView",
    "load_results",
    "marks_csv",
    "render_index",
    "render_slide",
    "write_gallery",
]
