"""Tiny Shakespeare speedrun ablation: per technique, time to 1.886 and loss at the reference's budget, with and without.

For each variant (the recipe with one technique removed, or one added):
1. it trains `configs/shakespeare-char.yaml` (400 steps) with an evaluation every 20 steps (which does not change training),
   and reports its median step time and its *time to 1.886*: the training time (evaluations excluded) up to the
   first evaluation at or below 1.886 — or "not within 400 steps";
2. it trains `configs/shakespeare-char-long.yaml` for as many steps as fit in the *budget* — the reference's
   2000 steps at the reference's measured step time — so its schedule completes within the budget, and
   reports the final whole-split validation loss.
The reference (`configs/shakespeare-char-baby.yaml`) is timed first for the budget. Everything runs as separate
`lmforge train` processes, one after another, on shards prepared once. Run it alone: other load on 2 cores
distorts the times (the losses are deterministic).

    python benchmarks/speedrun_ablation.py [--only NAME ...] [--budget-s S] [--set key=value ...] [--out results.jsonl]
                                           [--keep DIR]

With --keep, the run directories stay in DIR (`<variant>-fast`, `<variant>-long`), for `lmforge compare`:

    lmforge compare DIR/*-fast --metric val_loss --out ablation.html
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "configs" / "shakespeare-char-baby.yaml"
FAST = ROOT / "configs" / "shakespeare-char.yaml"
LONG = ROOT / "configs" / "shakespeare-char-long.yaml"
TARGET = 1.886
REFERENCE_STEPS = 2000
COMMON: list[str] = []  # --set overrides, for every run alike

# name -> (what the variant does, overrides); "full" is the recipe as it stands
VARIANTS = {
    "full": ("the recipe", []),
    "muon": ("AdamW alone instead of Muon", ["optimizer.name=adamw"]),
    "rotary": ("learned positions instead of rotary", ["model.pos=learned"]),
    "qk_norm": ("no QK-norm", ["model.qk_norm=false"]),
    "zero_init_proj": ("standard init of output projections", ["model.zero_init_proj=false"]),
    "wsd": ("cosine schedule instead of warmup-stable-decay", ["schedule.name=cosine"]),
    "rmsnorm": ("LayerNorm instead of RMSNorm", ["model.norm=layernorm"]),
    "untied_head": ("tied head", ["model.tie_embeddings=true"]),
    "softcap": ("no logit soft-cap", ["model.logit_softcap=null"]),
    "relu2": ("GELU instead of squared ReLU", ["model.mlp=gelu"]),
    "batch_warmup": ("+ batch-size warm-up (4 -> 12 sequences over the first 100 steps)",
                     ["train.batch_warmup_steps=100", "train.batch_warmup_start=4"]),
}


def train(recipe: Path, tmp: Path, tag: str, overrides: list[str]) -> list[dict]:
    run_dir = tmp / tag
    cmd = [sys.executable, "-m", "lmforge", "train", str(recipe), f"data.prepared_dir={tmp / 'prepared'}",
           "train.tensorboard=false", "train.log_interval=1", "sample.num_samples=0", *COMMON, *overrides,
           "--run-dir", str(run_dir), "--no-progress"]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def step_times(records: list[dict]) -> dict[int, float]:
    """Seconds of each optimizer step from the per-step log; a step that follows an evaluation (whose time
    would count against it) gets the median instead."""
    stamps = {r["step"]: r["time"] for r in records if "loss" in r}
    evals = {r["step"] for r in records if "val_loss" in r}
    raw = {s: stamps[s] - stamps[s - 1] for s in stamps if s - 1 in stamps}
    typical = statistics.median(raw.values())
    return {s: typical if s - 1 in evals else t for s, t in raw.items()} | {min(stamps): typical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to run (default: all)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="the budget in seconds of training, instead of timing the reference (to add rows to an earlier table)")
    parser.add_argument("--set", dest="common", action="append", default=[], help="key=value for every run")
    parser.add_argument("--out", type=Path, default=None, help="append each variant's figures as JSON lines")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories here (default: a temporary folder)")
    args = parser.parse_args()
    COMMON.extend(args.common)

    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = args.keep.resolve() if args.keep is not None else Path(tmp_name)
        subprocess.run([sys.executable, "-m", "lmforge", "prepare", str(REFERENCE),
                        f"data.prepared_dir={tmp / 'prepared'}"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        budget = args.budget_s
        if budget is None:
            reference = train(REFERENCE, tmp, "reference", ["train.max_steps=200", "train.eval_interval=200"])
            budget = REFERENCE_STEPS * statistics.median(step_times(reference).values())
        print(f"budget: {budget:.1f} s of training ({REFERENCE_STEPS} reference steps)\n")
        print("| variant | step time | time to 1.886 | val loss @400 | steps in budget | val loss at budget |")
        print("|---|---|---|---|---|---|")
        for name in args.only or VARIANTS:
            what, overrides = VARIANTS[name]
            fast = train(FAST, tmp, f"{name}-fast",
                         [*overrides, "train.eval_interval=20", "train.max_steps=400"])
            times = step_times(fast)
            step_s = statistics.median(times.values())
            hit = next((r["step"] for r in fast if r.get("val_loss", 99) <= TARGET), None)
            to_target = sum(t for s, t in times.items() if s <= hit) if hit else None
            steps = max(100, round(budget / step_s))
            long = train(LONG, tmp, f"{name}-long", [*overrides, f"train.max_steps={steps}",
                                                    f"train.eval_interval={steps}"])
            result = {"variant": name, "what": what, "step_ms": 1000 * step_s, "time_to_target_s": to_target,
                      "steps_to_target": hit, "val_loss_400": [r["val_loss"] for r in fast if "val_loss" in r][-1],
                      "budget_s": budget, "budget_steps": steps,
                      "val_loss_budget": [r["val_loss"] for r in long if "val_loss" in r][-1]}
            reached = f"{to_target:.1f} s ({hit} steps)" if hit else "not within 400 steps"
            print(f"| {what} | {result['step_ms']:.0f} ms | {reached} | {result['val_loss_400']:.4f} | {steps} "
                  f"| {result['val_loss_budget']:.4f} |", flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
