"""Where training progress goes: metrics.jsonl, TensorBoard events and a progress bar (rank 0 only)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from tqdm import tqdm

from lmforge.io import atomic_write_text


class RunLogger:
    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool,
                 tensorboard: bool, progress: bool):
        self.enabled = enabled
        self.metrics = None
        self.writer = None
        self.bar = None
        if not enabled:
            return
        self.metrics = open(Path(run_dir) / "metrics.jsonl", "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: it pulls in tensorboard

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        # a bar only on a terminal: in logs and pipes its redraws would be thousands of lines
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not (progress and sys.stderr.isatty()),
                        unit="step", dynamic_ncols=True, leave=True)

    def log(self, step: int, **values) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3), **values}
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

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
        if self.writer is not None:
            self.writer.close()


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


def trim_metrics(run_dir: Path, step: int) -> None:
    """Drop the records a stopped run logged after `step`, its last checkpoint, so that the resumed run's
    records for those steps are the only ones (a half-written last line goes too)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("step", 0) <= step:
            kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocations on GPU, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB
