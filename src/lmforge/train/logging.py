"""Where training progress goes: metrics.jsonl, TensorBoard events and a progress bar (rank 0 only)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from tqdm import tqdm

from lmforge.io import DISK_ERRNOS, atomic_write_text, disk_error


class RunLogger:
    """metrics.jsonl (always: resume, reports and bake-offs read it), the trackers of `train.loggers`
    (train/trackers.py) and the progress bar; a disabled logger (ranks other than 0) does nothing."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool, progress: bool,
                 trackers: list | None = None):
        self.enabled = enabled
        self.metrics = None
        self.trackers = trackers or []
        self.bar = None
        if not enabled:
            return
        self.metrics = open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8")
        # a bar only on a terminal: in logs and pipes its redraws would be thousands of lines
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not (progress and sys.stderr.isatty()),
                        unit="step", dynamic_ncols=True, leave=True)

    def log(self, step: int, **values) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), **values}
        try:
            self.metrics.write(strict_json(record) + "\n")
            self.metrics.flush()
        except OSError as e:
            if e.errno in DISK_ERRNOS:
                raise disk_error(self.metrics.name, e) from None
            raise
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for tracker in self.trackers:
            tracker.log(step, numbers, record["time"])

    def artifacts(self, paths: list[Path]) -> None:
        """Files of the finished run (samples, report) for the trackers that keep files."""
        if self.enabled:
            for tracker in self.trackers:
                tracker.artifacts([p for p in paths if p.is_file()])

    def advance(self, loss: float | None = None, tokens_per_s: float | None = None) -> None:
        """One step done; loss and throughput refresh the bar only on logging steps (they cost a sync)."""
        if self.bar is None:
            return
        self.bar.update(1)
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)

    def write(self, message: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(message)

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.metrics.close()
        for tracker in self.trackers:
            tracker.close()


def strict_json(record: dict) -> str:
    """One JSON line that strict readers (jq, JSON.parse) accept: a NaN or infinite number becomes null (in a
    list too), and the record's `nonfinite` field maps each key it happened in to what it held, as a string."""
    bad = {k: str(v) for k, v in record.items() if _has_nonfinite(v)}
    if bad:
        record = {**{k: _finite(v) for k, v in record.items()}, "nonfinite": bad}
    return json.dumps(record, allow_nan=False)


def _has_nonfinite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, (list, tuple)) and any(map(_has_nonfinite, value))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return [_finite(v) for v in value] if isinstance(value, (list, tuple)) else value


class Throughput:
    """Tokens per second over the steps since the last report, for the log line and the bar; the time of an
    evaluation in between is not training throughput (`skip_time`)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.start, self.tokens = time.perf_counter(), 0.0

    def add(self, tokens: float) -> None:
        self.tokens += tokens

    def skip_time(self) -> None:
        self.start = time.perf_counter()

    def rate(self) -> float:
        return self.tokens / (time.perf_counter() - self.start)


END_KEY = "peak_memory_mib"  # the key of the record a training run logs last, after its samples and report


def run_ended(run_dir: Path, step: int) -> bool:
    """Whether metrics.jsonl holds the end-of-run record (END_KEY) of a run that stopped at `step`."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if END_KEY in record and record.get("step") == step:
            return True
    return False


def trim_metrics(run_dir: Path, step: int) -> None:
    """Drop the records a stopped run logged after `step`, its last checkpoint, so that the resumed run's
    records for those steps are the only ones (a half-written last line goes too). The end-of-run record goes
    too, though its step is the last checkpoint's: the resumed run logs its own at its end."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("step", 0) <= step and END_KEY not in record:
            kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocations on GPU, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB
