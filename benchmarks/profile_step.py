"""Where a training step's time goes: torch.profiler over the real training loop of a recipe.

Trains the recipe (default: the baby GPT) for --warmup steps unprofiled, then --steps steps under
torch.profiler, with no evaluation in between, and prints the operators by self CPU time, grouped into
matrix products, the optimizer, the rest of the operators, and what is left of the steps' wall time outside
any operator (Python, the loader, logging). Run it alone:

    python benchmarks/profile_step.py [--recipe configs/X.yaml | --recipe default] [--steps 50] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from lmforge.config import load_config
from lmforge.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
          "aten::_scaled_dot_product_flash_attention_for_cpu_backward")
OPTIMIZER = ("aten::_foreach", "aten::_fused_adamw", "aten::lerp", "aten::addcmul", "aten::addcdiv")


def group(name: str) -> str:
    if name in MATMUL:
        return "matrix products and attention"
    if name.startswith(OPTIMIZER):
        return "optimizer (foreach, fused)"
    return "other operators"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "shakespeare-char-baby.yaml"))
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    recipe = None if args.recipe == "default" else args.recipe
    with tempfile.TemporaryDirectory() as tmp:
        common = [f"data.prepared_dir={tmp}/prepared", "train.tensorboard=false", "train.report=false",
                  "sample.num_samples=0", "train.log_interval=1", *args.overrides]
        # the warm-up run prepares the data and checkpoints its last step; the profiled run resumes from it
        warm = load_config(recipe, [*common, f"train.max_steps={args.warmup}", f"train.eval_interval={args.warmup}"])
        train(warm, Path(tmp) / "run", progress=False)
        total = args.warmup + args.steps
        # the profiled run's one evaluation (at its end) scores one window, so that the figures are the steps'
        cfg = load_config(recipe, [*common, f"train.max_steps={total}", f"train.eval_interval={total}",
                                   "train.eval_max_windows=1"])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            started = time.perf_counter()
            train(cfg, Path(tmp) / "run", resume=True, progress=False)
            wall = time.perf_counter() - started
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]

    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r and r["step"] > args.warmup]
    tokens_per_step = cfg.train.micro_batch_size * cfg.train.grad_accum_steps * cfg.model.block_size
    step_ms = 1000 * tokens_per_step / (sum(rates) / len(rates))
    averages = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    groups: dict[str, float] = {}
    for e in averages:
        groups[group(e.key)] = groups.get(group(e.key), 0.0) + e.self_cpu_time_total / 1e3 / args.steps
    in_ops = sum(groups.values())
    print(f"recipe: {Path(args.recipe).name} {' '.join(args.overrides)}; {args.steps} profiled steps, "
          f"{torch.get_num_threads()} threads")
    print(f"step time (mean, profiled): {step_ms:.1f} ms; whole profiled call {wall:.1f} s (with its start-up, "
          "one checkpoint and a one-window evaluation)")
    for name, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {name:34s} {ms:7.2f} ms/step  {100 * ms / step_ms:5.1f} %")
    print(f"  {'outside any aten operator':34s} {step_ms - in_ops:7.2f} ms/step  "
          f"{100 * (step_ms - in_ops) / step_ms:5.1f} %  (the step time less its operators)")
    print()
    print(f"top {args.top} operators by self CPU time, per profiled step:")
    for e in sorted(averages, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"  {e.key:60s} {e.self_cpu_time_total / 1e3 / args.steps:7.2f} ms  {e.count / args.steps:6.1f} calls")


if __name__ == "__main__":
    main()
