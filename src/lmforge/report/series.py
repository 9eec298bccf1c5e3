"""What a report draws, read from a run directory: the curves in metrics.jsonl, the evaluations in evals.jsonl,
and the config keys on which runs differ. No plotting here, so that it is tested as plain data."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.config import flatten

# metrics.jsonl fields that are curves, in the order a report shows them, with their axis labels
CURVES = {
    "loss": "training loss (nats/token)",
    "val_loss": "validation loss (nats/token)",
    "lr": "learning rate",
    "grad_norm": "gradient norm (before clipping)",
    "tokens_per_s": "tokens/s",
    "memory_mib": "peak memory (MiB)",
    "mfu": "model FLOPs utilisation",
    "flops_per_s": "model FLOP/s",
    "skipped_steps": "non-finite steps skipped",
    "unfrozen_groups": "layer groups training",
}
NOT_CURVES = {"step", "time", "elapsed_s", "epoch", "peak_memory_mib", "lr_groups"}
X_AXES = ("step", "time", "tokens")


@dataclass
class Records:
    """The records of one metrics.jsonl, and what could not be read (a half-written last line, say)."""

    path: Path
    rows: list[dict]
    skipped: list[str] = field(default_factory=list)


def read_records(path: str | Path) -> Records:
    """Every JSON object line of a metrics.jsonl or evals.jsonl; a line that is not one (a run killed mid-write
    leaves a half line) is skipped and named, so that a report of a running or crashed run still draws."""
    path = Path(path)
    rows, skipped = [], []
    if not path.is_file():
        return Records(path, rows)
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            skipped.append(f"{path.name} line {number}: not a complete JSON record, left out")
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            skipped.append(f"{path.name} line {number}: not a JSON object, left out")
    return Records(path, rows, skipped)


@dataclass
class Series:
    """One metric against the step, the run's own wall time (seconds, pauses between a stop and its resume left
    out) and the tokens trained on (None where the run does not say)."""

    name: str
    step: list[int]
    time: list[float]
    tokens: list[float] | None
    value: list[float]

    def x(self, axis: str) -> list[float]:
        if axis == "step":
            return self.step
        if axis == "time":
            return self.time
        return self.tokens


def run_times(rows: list[dict]) -> list[float]:
    """Each record's seconds into the run. Records that say `elapsed_s` are exact; for older ones the clock
    (`time`) is used with the jump of a resume (a later record logged before an earlier step's clock, or
    hours later) taken out by counting such a gap as one logging interval."""
    out, offset, last_time, last_gap = [], 0.0, None, 0.0
    for row in rows:
        if isinstance(row.get("elapsed_s"), (int, float)):
            out.append(float(row["elapsed_s"]))
            offset = float(row["elapsed_s"])
            last_time = row.get("time")
            continue
        now = row.get("time")
        if not isinstance(now, (int, float)):
            out.append(out[-1] if out else 0.0)
            continue
        if last_time is None:
            gap = 0.0
        else:
            gap = now - last_time
            if gap < 0 or (last_gap and gap > 100 * max(last_gap, 1.0)):  # a resume: the pause is not run time
                gap = last_gap
            last_gap = gap
        offset += gap
        last_time = now
        out.append(offset)
    return out


def extract_series(rows: list[dict], tokens_per_step: float | None = None) -> dict[str, Series]:
    """Every numeric field of the records as a series, in the order of CURVES and then as first seen. Several
    validation sources (`val_loss/<name>`) are series of their own."""
    times = run_times(rows)
    found: dict[str, Series] = {}
    for row, t in zip(rows, times):
        step = row.get("step")
        if not isinstance(step, int):
            continue
        for key, value in row.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value):
                continue
            s = found.setdefault(key, Series(key, [], [], [] if tokens_per_step else None, []))
            s.step.append(step)
            s.time.append(t)
            s.value.append(float(value))
            if s.tokens is not None:
                s.tokens.append(step * tokens_per_step)
    order = [k for k in CURVES if k in found] + sorted(k for k in found if k not in CURVES)
    return {k: found[k] for k in order}


def group_lrs(rows: list[dict]) -> tuple[list[int], list[list[float | None]]]:
    """A fine-tuning run's rate per layer group (bottom to top) at each logged step; None where the group was
    still frozen."""
    steps, rates = [], []
    for row in rows:
        if isinstance(row.get("lr_groups"), list) and isinstance(row.get("step"), int):
            steps.append(row["step"])
            rates.append(row["lr_groups"])
    return steps, rates


def label(metric: str) -> str:
    if metric.startswith("val_loss/"):
        return f"validation loss on {metric.split('/', 1)[1]} (nats/token)"
    return CURVES.get(metric, metric.replace("_", " "))


def differing_keys(configs: list[dict]) -> list[str]:
    """The config keys (dotted) whose values are not the same in every config; a key one config lacks differs."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    missing = object()
    return [k for k in keys if len({json.dumps(f.get(k, missing), sort_keys=True, default=str) for f in flat}) > 1]


def latest_evals(rows: list[dict]) -> list[dict]:
    """The newest evaluation of each (checkpoint, split, data) in evals.jsonl, oldest first."""
    newest: dict[tuple, dict] = {}
    for row in rows:
        if isinstance(row.get("result"), dict):
            newest[(row.get("checkpoint"), row.get("split"), row.get("data"))] = row
    return list(newest.values())
