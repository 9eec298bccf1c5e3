"""Evaluation throughput of `lmforge eval` against training throughput, per token, on the same machine.

Trains nanoGPT's baby GPT on Tiny Shakespeare for a few hundred steps (its own process, logging every
step), then runs `lmforge eval RUN --json` on the whole validation split (111,540 characters), with the
eval batch size of the recipe and with the training micro-batch size, in float32 (the default on a CPU, and
the recipe's training precision) and under bf16 autocast (`--dtype bfloat16`). Training tokens/s is the median
over the logged steps (after 10 warm-up steps); evaluation tokens/s is what `lmforge eval` reports for
scoring the split (windows, forward passes, counting the text), without process start-up and loading.
Run it alone: other load on 2 cores distorts both figures.

    python benchmarks/eval_throughput.py [--steps 300] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmforge.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "shakespeare-char-baby.yaml"


def lmforge(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "lmforge", *args], check=True, cwd=ROOT, capture_output=True,
                          text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps before the evaluation")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the baby GPT recipe")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        lmforge("train", str(RECIPE), f"train.max_steps={args.steps}", f"train.eval_interval={args.steps}",
                "train.log_interval=1", "train.tensorboard=false", "sample.num_samples=0",
                f"data.prepared_dir={Path(tmp) / 'prepared'}", *args.overrides, "--run-dir", str(run_dir),
                "--no-progress")
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train_tps = statistics.median([r["tokens_per_s"] for r in records if "tokens_per_s" in r][10:])
        cfg = load_config(run_dir / "config.yaml")
        print(f"recipe: {RECIPE.name} {' '.join(args.overrides)}; {args.steps} training steps")
        print(f"training: {train_tps:,.0f} tokens/s (median; micro-batch {cfg.train.micro_batch_size} x "
              f"{cfg.model.block_size}, forward + backward + AdamW)")
        for dtype in ("float32", "bfloat16"):
            for batch in (cfg.eval.batch_size, cfg.train.micro_batch_size):
                started = time.perf_counter()
                result = json.loads(lmforge("eval", str(run_dir), "--json", "--batch-size", str(batch),
                                            "--dtype", dtype))
                wall = time.perf_counter() - started
                print(f"lmforge eval --dtype {dtype} --batch-size {batch}: {result['tokens_per_s']:,.0f} tokens/s "
                      f"({result['tokens']:,} tokens in {result['seconds']:.2f} s; whole command {wall:.1f} s; "
                      f"loss {result['loss']:.5f}) = {result['tokens_per_s'] / train_tps:.1f}x training per token")


if __name__ == "__main__":
    main()
