"""The report page: one self-contained HTML file (styles, data, plotly.js and the script that draws, inline;
nothing fetched), readable top to bottom: what the run is, its curves, its results, its config."""

from __future__ import annotations

import html
import json
from typing import Any

from pydantic import BaseModel

from lmforge.report.figures import Chart, plotly_js

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1180px;
padding:18px 28px 60px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e3e6ec;padding-bottom:4px}
.sub{color:#5b6475;margin-bottom:12px}.note{background:#fff6e0;border:1px solid #f0d48a;padding:8px 12px;border-radius:6px;margin:8px 0}
table{border-collapse:collapse;margin:6px 0 10px}td,th{border:1px solid #e3e6ec;padding:3px 9px;text-align:left;vertical-align:top}
th{background:#f5f7fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
.chart{border:1px solid #e3e6ec;border-radius:8px;padding:6px 8px}.chart .plot{height:330px}
.controls{font-size:12px;color:#5b6475;display:flex;gap:14px;align-items:center;margin:2px 4px}
pre{white-space:pre-wrap;background:#f7f8fa;border:1px solid #e3e6ec;border-radius:6px;padding:8px 10px;max-height:320px;overflow:auto}
details{margin:3px 0}summary{cursor:pointer;font-weight:600}details table{margin-left:14px}
td.key{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:nowrap}td.desc{color:#5b6475;font-size:12px}
"""

# draws every chart from the JSON in #lmforge-data; then records on <body> how many points each chart's first
# line drew (data-drawn), which the browser test reads back
SCRIPT = """
(function(){
  var data = JSON.parse(document.getElementById('lmforge-data').textContent);
  var drawn = {};
  function traces(c, axis){
    if (c.kind === 'heatmap') return [{type:'heatmap', z:c.heatmap.z, x:c.heatmap.x, y:c.heatmap.y,
      colorscale:'Blues', texttemplate:'%{z}', hovertemplate:'gold %{y}, predicted %{x}: %{z}<extra></extra>'}];
    return c.lines.map(function(l){ return {type:'scatter', mode: c.markers ? 'lines+markers' : 'lines',
      name:l.name, x:l.x[axis], y:l.y, connectgaps:false, line:{simplify:false, width:1.6}, marker:{size:5}}; });
  }
  function layout(c, axis, log){
    var lay = {margin:{l:62,r:14,t:34,b:46}, title:{text:c.title, font:{size:13}, x:0.01, xanchor:'left'}, hovermode:'x unified',
      legend:{orientation:'h', y:-0.22}, yaxis:{title:{text:c.ylabel}, type: log ? 'log' : 'linear'},
      xaxis:{title:{text: c.kind === 'heatmap' ? 'predicted' : c.xlabels[axis]}}};
    if (c.kind === 'heatmap') { lay.yaxis.autorange = 'reversed'; lay.hovermode = 'closest'; }
    if (c.lines.length < 2) lay.showlegend = false;
    return lay;
  }
  data.charts.forEach(function(c){
    var box = document.getElementById('chart-' + c.id);
    var plot = box.querySelector('.plot');
    var axisSel = box.querySelector('select'), logBox = box.querySelector('input[type=checkbox]');
    function draw(){
      var axis = axisSel ? axisSel.value : 'step', log = logBox ? logBox.checked : false;
      Plotly.react(plot, traces(c, axis), layout(c, axis, log), {displaylogo:false, responsive:true});
    }
    if (axisSel) axisSel.addEventListener('change', draw);
    if (logBox) logBox.addEventListener('change', draw);
    draw();
    var path = plot.querySelector('.scatterlayer .trace path.js-line');
    var d = path ? path.getAttribute('d') || '' : '';
    drawn[c.id] = c.kind === 'heatmap' ? plot.querySelectorAll('.heatmaplayer image, .heatmaplayer path').length
                                       : (d.match(/[ML]/g) || []).length;
  });
  document.body.setAttribute('data-drawn', JSON.stringify(drawn));
})();
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e9 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{esc(fmt(v))}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool)
        else f"<td>{esc(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def facts(rows: list[list[Any]]) -> str:
    """A two-column table of name and value, without a header."""
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in rows) + "</table>"


def chart_box(chart: Chart) -> str:
    controls = []
    axes = chart.axes()
    if chart.kind == "lines" and len(axes) > 1:
        options = "".join(f'<option value="{a}">{esc(chart.to_json()["xlabels"][a])}</option>' for a in axes)
        controls.append(f"<label>x: <select>{options}</select></label>")
    if chart.kind == "lines":
        checked = " checked" if chart.log else ""
        controls.append(f'<label><input type="checkbox"{checked}> log y</label>')
    return (f'<div class="chart" id="chart-{esc(chart.id)}"><div class="controls">{"".join(controls)}</div>'
            f'<div class="plot"></div></div>')


def config_tree(model: BaseModel, open_sections: bool = False) -> str:
    """The resolved config as nested, collapsible sections; each field's description shows on hover (and
    beside it, small), from the pydantic field that defines it."""
    rows, nested = [], []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested.append(f"<details{' open' if open_sections else ''}><summary>{esc(name)}</summary>"
                          f"{config_tree(value)}</details>")
            continue
        if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            items = "".join(f"<details><summary>{esc(name)}[{i}]</summary>{config_tree(v)}</details>"
                            for i, v in enumerate(value))
            nested.append(items)
            continue
        shown = json.dumps(value.model_dump(mode="json") if isinstance(value, BaseModel) else value, default=str)
        desc = info.description or ""
        rows.append(f'<tr title="{esc(desc)}"><td class="key">{esc(name)}</td><td>{esc(shown)}</td>'
                    f'<td class="desc">{esc(desc)}</td></tr>')
    return (f"<table>{''.join(rows)}</table>" if rows else "") + "".join(nested)


def page(title: str, subtitle: str, body: list[str], charts: list[Chart]) -> str:
    data = json.dumps({"charts": [c.to_json() for c in charts]}, separators=(",", ":"))
    data = data.replace("<", "\\u003c")  # no `</script>` can end the data block early
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<h1>{esc(title)}</h1><div class=\"sub\">{subtitle}</div>\n" + "\n".join(body) +
            f'\n<script type="application/json" id="lmforge-data">{data}</script>\n'
            f"<script>{plotly_js()}</script>\n<script>{SCRIPT}</script>\n</body></html>\n")
