"""`lmforge report` and `lmforge compare`: a run directory (LM, fine-tuned task or bake-off) or several runs,
as one self-contained HTML page."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from lmforge.config import flatten
from lmforge.errors import CheckpointError, LmforgeError
from lmforge.io import atomic_write_text
from lmforge.report import page as P
from lmforge.report.figures import Chart, confusion_chart, group_lr_chart, metric_chart, series_line
from lmforge.report.series import (CURVES, X_AXES, Records, Series, differing_keys, extract_series, group_lrs,
                                   label, latest_evals, read_records)
from lmforge.run import RunDir
from lmforge.train.checkpoint import saved_shapes

REPORT = "report.html"


def tokens_per_step(run: RunDir) -> float | None:
    """Tokens of one optimizer step from the config, for runs that did not log `tokens` (one process)."""
    try:
        cfg = run.config()
    except (LmforgeError, OSError):
        return None
    if run.kind == "task":
        return None
    tc = cfg.train
    return float(tc.micro_batch_size * tc.grad_accum_steps * cfg.model.block_size)


def run_series(run: RunDir, records: Records) -> dict[str, Series]:
    """The run's curves; against tokens by the trainer's own count where it logged one, else the config's."""
    found = extract_series(records.rows, tokens_per_step(run))
    logged = found.pop("tokens", None)
    if logged is not None:
        by_step = dict(zip(logged.step, logged.value))
        for s in found.values():
            if all(step in by_step for step in s.step):
                s.tokens = [by_step[step] for step in s.step]
    return found


def _param_count(ckpt: Path) -> int | None:
    try:
        return sum(math.prod(shape) for shape in saved_shapes(ckpt).values())
    except Exception:  # a report is drawn for any run, whatever its checkpoint holds
        return None


def _checkpoint_rows(run: RunDir) -> tuple[list[list], int | None]:
    rows, best = [], None
    for step, path in run.checkpoints():
        try:
            state = json.loads((path / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        val = state.get("val_loss")
        rows.append([path.name, step, val if isinstance(val, (int, float)) else None])
        if isinstance(val, (int, float)) and (best is None or val < best[0]):
            best = (val, step)
    return rows, best[1] if best else None


def _summary(series: dict[str, Series], max_steps: int | None, best_step: int | None) -> list[list]:
    rows = []
    step = max((s.step[-1] for s in series.values() if s.step), default=None)
    if step is not None:
        rows.append(["steps", f"{step:,}" + (f" of {max_steps:,}" if max_steps else "")])
    if "loss" in series:
        rows.append(["last training loss", series["loss"].value[-1]])
    if "val_loss" in series:
        v = series["val_loss"]
        best = min(range(len(v.value)), key=v.value.__getitem__)
        rows.append(["last validation loss", v.value[-1]])
        rows.append(["best validation loss", f"{v.value[best]:.4f} at step {v.step[best]:,}"])
    if best_step is not None:
        rows.append(["best checkpoint", f"step-{best_step}"])
    longest = max(series.values(), key=lambda s: len(s.step), default=None)
    if longest is not None and longest.time:
        rows.append(["wall time", f"{longest.time[-1]:,.1f} s"])
    if longest is not None and longest.tokens:
        rows.append(["tokens trained on", f"{longest.tokens[-1]:,.0f}"])
    if "tokens_per_s" in series:
        rows.append(["tokens/s (median)", statistics.median(series["tokens_per_s"].value)])
    if "memory_mib" in series:
        rows.append(["peak memory", f"{max(series['memory_mib'].value):,.0f} MiB"])
    return rows


def _metric_charts(series: dict[str, Series], val_rows_only: set[str], run_name: str) -> list[Chart]:
    charts = []
    if "loss" in series or "val_loss" in series:
        lines = [(n, series[k]) for k, n in (("loss", "training"), ("val_loss", "validation")) if k in series]
        lines += [(k.split("/", 1)[1], s) for k, s in series.items() if k.startswith("val_loss/")]
        chart = metric_chart("loss", "loss", lines, "loss (nats/token)")
        chart.ylabel = "loss (nats/token)"
        chart.markers = "loss" not in series
        charts.append(chart)
    for key, s in series.items():
        if key in ("loss", "val_loss", "val_perplexity") or key.startswith("val_loss/"):
            continue
        if key in val_rows_only:
            continue
        charts.append(metric_chart(key, key, [(run_name, s)]))
    dev = [(k, series[k]) for k in sorted(val_rows_only) if k in series and k != "val_perplexity"]
    if dev:
        chart = Chart("dev", "dev metrics after each epoch", "value", [series_line(k, s) for k, s in dev],
                      markers=True)
        charts.append(chart)
    return charts


def _val_only(rows: list[dict]) -> set[str]:
    """Fields logged only with a validation loss: a fine-tuning run's dev metrics per epoch."""
    with_val, without = set(), set()
    for row in rows:
        (with_val if "val_loss" in row else without).update(row)
    return {k for k in with_val - without if k not in CURVES and not k.startswith("val_loss")
            and k not in ("step", "time", "elapsed_s")}


def _eval_table(evals: list[dict]) -> str:
    if not evals:
        return '<p class="sub">No evaluation recorded yet: <code>lmforge eval RUN</code> adds one.</p>'
    keys: list[str] = []
    for e in evals:
        for k, v in e["result"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
        for k, v in (e["result"].get("generation") or {}).items():
            if isinstance(v, (int, float)) and f"generation {k}" not in keys:
                keys.append(f"generation {k}")
        if isinstance(e["result"].get("macro"), dict) and "macro F1" not in keys:
            keys.append("macro F1")
        for name, m in (e["result"].get("sources") or {}).items():  # a mixture's sources, each its own figures
            keys += [k for k in (f"loss/{name}", f"perplexity/{name}") if k not in keys and k.split("/")[0] in m]
    rows = []
    for e in evals:
        r = e["result"]
        values = []
        for k in keys:
            if k.startswith("generation "):
                values.append((r.get("generation") or {}).get(k.split(" ", 1)[1]))
            elif k == "macro F1":
                values.append((r.get("macro") or {}).get("f1"))
            elif "/" in k:
                metric, name = k.split("/", 1)
                values.append(((r.get("sources") or {}).get(name) or {}).get(metric))
            else:
                values.append(r.get(k))
        rows.append([e.get("checkpoint"), e.get("split") or "", e.get("data") or "", *values])
    return P.table(["checkpoint", "split", "data", *keys], rows)


def _task_details(evals: list[dict]) -> tuple[str, list[Chart]]:
    """The newest task result's confusion matrix (classification) or per-entity-type F1 (NER)."""
    for e in reversed(evals):
        r = e["result"]
        if isinstance(r.get("confusion"), list) and isinstance(r.get("labels"), list):
            per_class = r.get("per_class") or {}
            rows = [[name, v.get("precision"), v.get("recall"), v.get("f1"), v.get("support")]
                    for name, v in per_class.items()]
            html = "<h3>per class</h3>" + P.table(["class", "precision", "recall", "F1", "support"], rows)
            return html, [confusion_chart(r["labels"], r["confusion"])]
        if isinstance(r.get("per_type"), dict):
            rows = [["all entities", r.get("precision"), r.get("recall"), r.get("f1"), None, None]]
            rows += [[name, v.get("precision"), v.get("recall"), v.get("f1"), v.get("predicted"), v.get("gold")]
                     for name, v in r["per_type"].items()]
            return "<h3>entity F1 per type</h3>" + P.table(
                ["type", "precision", "recall", "F1", "predicted", "gold"], rows), []
    return "", []


def _samples(run: RunDir) -> str:
    path = run.path / "samples.txt"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    parts = [p.strip() for p in text.split("\n\n---\n\n") if p.strip()]
    return "<h2>Samples</h2>" + "".join(f"<pre>{P.esc(p)}</pre>" for p in parts)


def run_report(run_dir: str | Path) -> str:
    """The HTML report of an LM or fine-tuned task run, or of a bake-off directory."""
    run = RunDir(run_dir)
    if run.kind == "bakeoff":
        return bakeoff_report(run.path)
    if run.kind is None:
        raise CheckpointError(f"{run.path}: not a run directory (no config.yaml, task.json or bakeoff.json)")
    cfg = run.config()
    records = read_records(run.path / "metrics.jsonl")
    series = run_series(run, records)
    evals = latest_evals(read_records(run.path / "evals.jsonl").rows)
    ckpt_rows, best_step = _checkpoint_rows(run)
    body: list[str] = []
    for note in records.skipped:
        body.append(f'<div class="note">{P.esc(note)}</div>')
    if not records.rows:
        body.append('<div class="note">No metrics yet: metrics.jsonl is missing or empty (the run has not logged '
                    'a step). This page is redrawn as it trains.</div>')
    task = run.task_info() if run.kind == "task" else None
    params = _param_count(run.checkpoint("last")) if ckpt_rows else None
    facts = [["kind", "fine-tuned " + task["task"] + " task" if task else "language model"],
             ["model", cfg.model.arch + (f" from {task['backbone_source']}" if task else "")]]
    if params is not None:
        facts.append(["parameters", f"{params:,}"])
    max_steps = cfg.train.max_steps if not task else None
    body.append("<h2>Summary</h2>" + P.facts(facts + _summary(series, max_steps, best_step)))

    charts = _metric_charts(series, _val_only(records.rows), cfg.name)
    steps, rates = group_lrs(records.rows)
    if task and rates and len(rates[0]) > 1:
        charts.append(group_lr_chart(steps, rates))
    if charts:
        body.append("<h2>Curves</h2><div class=\"charts\">" + "".join(P.chart_box(c) for c in charts) + "</div>")
    body.append("<h2>Evaluations</h2>" + _eval_table(evals))
    if task:
        fc = cfg.finetune
        schedule = {"none": "everything trains from the start",
                    "epoch": "the head first, then one more layer group from the top every epoch",
                    "steps": f"the head first, then one more layer group every {fc.unfreeze_steps} steps"}[fc.unfreeze]
        body.append("<h2>Fine-tuning</h2>" + P.facts([
            ["gradual unfreezing", f"{fc.unfreeze}: {schedule}"],
            ["discriminative rates", f"group at depth d below the top trains at lr / {fc.discriminative_factor}^d"],
            ["epochs", fc.epochs], ["batch size", fc.batch_size]]))
        html, extra = _task_details(evals)
        body.append(html + "".join(P.chart_box(c) for c in extra))
        charts += extra
    body.append(_samples(run))
    if ckpt_rows:
        rows = [[name + (" (best)" if step == best_step else ""), step, val] for name, step, val in ckpt_rows]
        body.append("<h2>Checkpoints kept</h2>" + P.table(["checkpoint", "step", "validation loss"], rows))
    body.append("<h2>Config</h2><p class=\"sub\">The resolved config.yaml; hover a field for its description."
                "</p>" + P.config_tree(cfg))
    title = f"{cfg.name}: {'fine-tuning' if task else 'training'} report"
    return P.page(title, P.esc(str(run.path)), body, charts)


def bakeoff_report(out_dir: Path) -> str:
    try:
        saved = json.loads((out_dir / "bakeoff.json").read_text())
        models = saved["models"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{out_dir / 'bakeoff.json'}: unreadable ({e})") from None
    sources = list(next((m["source_val_perplexity"] for m in models if m.get("source_val_perplexity")), {}))
    rows = [[m.get("model"), m.get("parameters"), m.get("steps"), m.get("tokens_per_s"), m.get("peak_memory_mib"),
             m.get("val_perplexity"), *((m.get("source_val_perplexity") or {}).get(n) for n in sources),
             m.get("val_bits_per_byte"), m.get("test_perplexity"), m.get("wall_s")]
            for m in models]
    table = P.table(["model", "parameters", "steps", "tokens/s", "peak MiB", "val ppl",
                     *(f"{n} val ppl" for n in sources), "val bits/byte", "test ppl", "wall s"], rows)
    charts = []
    per_family = {}
    for m in models:
        run = RunDir(out_dir / str(m.get("model")))
        per_family[m.get("model")] = run_series(run, read_records(run.path / "metrics.jsonl"))
    for metric in ("val_loss", "loss", "tokens_per_s"):
        lines = [(name, s[metric]) for name, s in per_family.items() if metric in s]
        if lines:
            charts.append(metric_chart(metric, metric, lines))
    body = ["<h2>Results</h2>" + table,
            "<h2>Curves</h2><div class=\"charts\">" + "".join(P.chart_box(c) for c in charts) + "</div>",
            "<p class=\"sub\">Each family's own report: " + ", ".join(
                f'<a href="{P.esc(name)}/{REPORT}">{P.esc(name)}</a>' for name in per_family) + "</p>"]
    return P.page(f"Bake-off: {saved.get('recipe')}, {saved.get('budget')} per model", P.esc(str(out_dir)), body,
                  charts)


def compare_report(run_dirs: list[str | Path], metric: str = "val_loss", x: str = "step") -> str:
    """One metric of several runs overlaid, each run's final figures, and the config keys on which they differ."""
    if x not in X_AXES:
        raise LmforgeError(f"--x {x!r}: expected one of {', '.join(X_AXES)}")
    if len(run_dirs) < 1:
        raise LmforgeError("compare: give at least one run directory")
    runs, all_series = [], []
    for d in run_dirs:
        run = RunDir(d)
        if run.kind not in ("lm", "task"):
            raise CheckpointError(f"{run.path}: not a training or fine-tuning run directory (no config.yaml)")
        records = read_records(run.path / "metrics.jsonl")
        if not records.rows:
            raise LmforgeError(f"{run.path / 'metrics.jsonl'}: no metrics yet, nothing to compare")
        runs.append(run)
        all_series.append(run_series(run, records))
    common = [k for k in all_series[0] if all(k in s for s in all_series[1:])]
    if not common:
        raise LmforgeError("compare: the runs have no metric in common (" + "; ".join(
            f"{r.path}: {', '.join(s) or 'none'}" for r, s in zip(runs, all_series)) + ")")
    if metric not in common:
        raise LmforgeError(f"--metric {metric!r}: not logged by every run; the runs share "
                           + ", ".join(common))
    names = _short_names(runs)
    missing = [str(r.path) for r, s in zip(runs, all_series) if s[metric].x(x) is None]
    if missing:
        raise LmforgeError(f"--x {x}: these runs do not say how many tokens they trained on: {', '.join(missing)}")
    chart = metric_chart(metric, metric, [(n, s[metric]) for n, s in zip(names, all_series)],
                         f"{label(metric)} against {x}")
    configs = [r.config().model_dump(mode="json") for r in runs]
    differ = differing_keys(configs)
    flat = [flatten(c) for c in configs]
    finals = []
    shown = [k for k in ("loss", "val_loss", "tokens_per_s", "memory_mib") if k in common]
    if metric not in shown:
        shown.insert(0, metric)
    for n, s in zip(names, all_series):
        row = [n, s[metric].step[-1]]
        row += [s[k].value[-1] for k in shown]
        row.append(min(s["val_loss"].value) if "val_loss" in s else None)
        finals.append(row)
    body = ["<h2>Curves</h2><div class=\"charts\">" + P.chart_box(chart) + "</div>",
            "<h2>Final figures</h2>" + P.table(["run", "last step", *[f"last {k}" for k in shown],
                                               "best val_loss"], finals),
            "<h2>Where the configs differ</h2>" + (P.table(["key", *names], [
                [k, *[json.dumps(f.get(k), default=str) for f in flat]] for k in differ])
                if differ else "<p>The configs are the same.</p>")]
    subtitle = " · ".join(P.esc(str(r.path)) for r in runs)
    return P.page(f"Comparison of {len(runs)} runs: {label(metric)}", subtitle, body, [chart])


def _short_names(runs: list[RunDir]) -> list[str]:
    names = [r.path.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [str(r.path) for r in runs]


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's report (default RUN_DIR/report.html) atomically: a browser open on it never sees half."""
    target = Path(out) if out is not None else Path(run_dir) / REPORT
    atomic_write_text(target, run_report(run_dir))
    return target


def write_compare(run_dirs: list[str | Path], out: str | Path, metric: str = "val_loss", x: str = "step") -> Path:
    atomic_write_text(out, compare_report(run_dirs, metric, x))
    return Path(out)
