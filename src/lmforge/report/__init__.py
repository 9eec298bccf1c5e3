"""Reports people look at: a run directory as one self-contained HTML page (`write_report`, `lmforge report`),
and several runs overlaid (`write_compare`, `lmforge compare`).

series.py reads what a run logged, figures.py turns it into plotly.js figures, page.py lays out the page,
build.py composes them for each kind of run."""

from lmforge.report.build import REPORT, compare_report, run_report, write_compare, write_report

__all__ = ["REPORT", "compare_report", "run_report", "write_compare", "write_report"]
