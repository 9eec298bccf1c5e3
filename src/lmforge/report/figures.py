"""Charts as plotly.js figures: plain JSON that the report page hands to plotly.js, inlined in the page.

plotly.js draws interactive charts (hover for values, zoom, log axes) in any browser with no network when
its script is inlined, and a figure is only data, so writing a report costs milliseconds: it matters because
every training run writes one. The Python `plotly` package is used only as the carrier of that script
(`plotly/package_data/plotly.min.js`, MIT licence); nothing here imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources

from lmforge.report.series import Series, label

MAX_POINTS = 5000  # per line; a longer series is thinned evenly, its first and last point kept
X_LABELS = {"step": "step", "time": "wall time (s)", "tokens": "tokens trained on"}


@dataclass
class Chart:
    """One chart: lines that share a y axis, each with its x values on every axis the runs can give."""

    id: str
    title: str
    ylabel: str
    lines: list[dict] = field(default_factory=list)  # {"name", "x": {axis: [...]}, "y": [...]}
    log: bool = False  # start on a log y axis (loss and rates read better so)
    markers: bool = False
    kind: str = "lines"  # or "heatmap": then `heatmap` holds z, x and y
    heatmap: dict | None = None

    def axes(self) -> list[str]:
        """The x axes every line of the chart has."""
        if not self.lines:
            return []
        return [a for a in X_LABELS if all(line["x"].get(a) is not None for line in self.lines)]

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title, "ylabel": self.ylabel, "lines": self.lines, "log": self.log,
                "markers": self.markers, "kind": self.kind, "heatmap": self.heatmap, "axes": self.axes(),
                "xlabels": X_LABELS}


def _thin(n: int, limit: int = MAX_POINTS) -> list[int]:
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def _clean(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def series_line(name: str, s: Series) -> dict:
    keep = _thin(len(s.step))
    x = {"step": [s.step[i] for i in keep], "time": [round(s.time[i], 3) for i in keep],
         "tokens": [s.tokens[i] for i in keep] if s.tokens is not None else None}
    return {"name": name, "x": x, "y": [_clean(s.value[i]) for i in keep]}


def metric_chart(chart_id: str, metric: str, lines: list[tuple[str, Series]], title: str | None = None) -> Chart:
    log = metric == "loss" or metric.startswith("val_loss")
    return Chart(chart_id, title or label(metric), label(metric), [series_line(n, s) for n, s in lines], log=log,
                 markers=metric.startswith("val_"))


def group_lr_chart(steps: list[int], rates: list[list[float | None]]) -> Chart:
    """Per-layer-group learning rates of a fine-tuning run (gaps while a group is frozen)."""
    n = max((len(r) for r in rates), default=0)
    lines = []
    for g in range(n):
        y = [_clean(r[g]) if g < len(r) else None for r in rates]
        name = "head (top group)" if g == n - 1 else f"group {g}"
        lines.append({"name": name, "x": {"step": steps, "time": None, "tokens": None}, "y": y})
    return Chart("lr-groups", "learning rate per layer group (gaps: frozen)", "learning rate", lines, log=True)


def confusion_chart(labels: list[str], matrix: list[list[int]]) -> Chart:
    return Chart("confusion", "confusion matrix (rows: gold, columns: predicted)", "gold", kind="heatmap",
                 heatmap={"z": matrix, "x": labels, "y": labels})


def plotly_js() -> str:
    """plotly.js, to inline in a page; a one-line error if the package that carries it is missing."""
    from lmforge.errors import LmforgeError

    try:
        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise LmforgeError(f"reports need plotly.js from the plotly package ({e}): pip install plotly") from None
