"""nanoGPT's CPU baby GPT on Tiny Shakespeare: step time, throughput, peak memory, validation loss.

Runs `lmforge train configs/shakespeare-char-baby.yaml` as a separate process (start-up included), logging
every step, then reads metrics.jsonl. Validation loss is the mean cross-entropy per character over the whole
validation split in non-overlapping 64-character windows. Run it alone: other load on 2 cores distorts it.

    python benchmarks/shakespeare_baby.py [--steps 2000] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmforge.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "shakespeare-char-baby.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "lmforge", "train", args.recipe, f"train.max_steps={args.steps}",
               "train.log_interval=1", "train.tensorboard=false", f"data.prepared_dir={Path(tmp) / 'prepared'}",
               *args.overrides, "--run-dir", str(run_dir), "--no-progress"]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        cfg = load_config(run_dir / "config.yaml")

    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    throughput = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][10:]  # skip warm-up steps
    tokens_per_s = statistics.median(throughput)
    tokens_per_step = cfg.train.micro_batch_size * cfg.train.grad_accum_steps * cfg.model.block_size
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    print(f"recipe: {Path(args.recipe).name} {' '.join(args.overrides)}")
    print(f"step time (median): {1000 * tokens_per_step / tokens_per_s:.1f} ms  ({tokens_per_s:,.0f} tokens/s)")
    print(f"whole process: {wall:.1f} s for {args.steps} steps; peak RSS {peak_mib:.0f} MiB")
    for step in (250, 500, 1000, 2000):
        if step in val:
            print(f"val loss @ {step}: {val[step]:.4f}")


if __name__ == "__main__":
    main()
