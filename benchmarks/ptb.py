"""Penn Treebank word-level recipes: test perplexity and wall time, one `lmforge train` process per recipe.

Each recipe trains in its own process (tokenizer training, shard encoding and per-epoch validation
included in the wall time), then `lmforge eval RUN --split test` scores the best-validation checkpoint on
ptb.test.txt. Prints one markdown row per recipe and appends the figures as JSON lines to `--out`.

    python benchmarks/ptb.py configs/ptb-word-lstm.yaml [more recipes] [--set key=value ...] [--runs DIR]

Run it alone: other load on 2 cores distorts the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_recipe(recipe: Path, runs: Path, overrides: list[str]) -> dict:
    run_dir = runs / recipe.stem
    train = [sys.executable, "-m", "lmforge", "train", str(recipe), *overrides, "train.tensorboard=false",
             f"data.prepared_dir={runs / 'prepared' / recipe.stem}", "--run-dir", str(run_dir), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(train, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    evaluate = [sys.executable, "-m", "lmforge", "eval", str(run_dir), "--split", "test", "--json"]
    test = json.loads(subprocess.run(evaluate, check=True, cwd=ROOT, capture_output=True, text=True).stdout)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_loss" in r]
    steps = max(r["step"] for r in records)
    return {"recipe": recipe.name, "overrides": overrides, "steps": steps, "wall_s": round(wall, 1),
            "best_val_perplexity": min(r["val_perplexity"] for r in val),
            "val_curve": [(r["step"], round(r["val_perplexity"], 2)) for r in val],
            "test_perplexity": test["perplexity"], "test_checkpoint": test["checkpoint"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value for every recipe")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "ptb-benchmark")
    parser.add_argument("--out", type=Path, default=None, help="append results here as JSON lines")
    args = parser.parse_args()

    print("| recipe | steps | wall | best val ppl | test ppl |\n|---|---|---|---|---|")
    for recipe in args.recipes:
        result = run_recipe(recipe.resolve(), args.runs, args.overrides)
        print(f"| {result['recipe']} | {result['steps']} | {result['wall_s'] / 60:.1f} min "
              f"| {result['best_val_perplexity']:.1f} | {result['test_perplexity']:.1f} |", flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
