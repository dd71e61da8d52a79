"""Quality assurance of a screened, labelled set: sensitivity/specificity with exact intervals,
ROC and AUC, operating points, Bethesda and site breakdowns, field hits, and the QA report.

The maths (:mod:`metrics`, :mod:`fieldhits`, :mod:`evaluate`) reads no file; :mod:`collect`
reads a run's results, :mod:`report` and :mod:`compare` write the reports.
"""

from cytoscreen.qa.collect import RunResults, SlideOutcome, collect_run
from cytoscreen.qa.compare import Comparison, compare_runs
from cytoscreen.qa.evaluate import DataInfo, Evaluation, evaluate
from cytoscreen.qa.fieldhits import FieldHits, field_hits, first_hit_rank
from cytoscreen.qa.metrics import (
    TARGET_SENSITIVITIES,
    Counts,
    Operating,
    OperatingPoint,
    PairedAuc,
    Roc,
    bootstrap_auc_ci,
    delong_paired,
    operating,
    operating_points,
    rate,
    roc,
    sensitivity_by_category,
)
from cytoscreen.qa.report import QaReport, render_html, run_qa, write_report

__all__ = [
    "TARGET_SENSITIVITIES",
    "Comparison",
    "Counts",
    "DataInfo",
    "Evaluation",
    "FieldHits",
    "Operating",
    "OperatingPoint",
    "PairedAuc",
    "QaReport",
    "Roc",
    "RunResults",
    "SlideOutcome",
    "bootstrap_auc_ci",
    "collect_run",
    "compare_runs",
    "delong_paired",
    "evaluate",
    "field_hits",
    "first_hit_rank",
    "operating",
    "operating_points",
    "rate",
    "render_html",
    "roc",
    "run_qa",
    "sensitivity_by_category",
    "write_report",
]
