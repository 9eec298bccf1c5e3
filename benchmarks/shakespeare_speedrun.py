"""Tiny Shakespeare speedrun: the new recipe against nanoGPT's baby GPT, side by side, whole processes timed.

Each round runs, as separate `lmforge train` processes one after another, the reference
(`configs/shakespeare-char-baby.yaml`), the fast recipe (`configs/shakespeare-char.yaml`) and the long-budget
recipe (`configs/shakespeare-char-long.yaml`). A process's wall time includes Python and torch start-up,
building the model, every evaluation and the samples; the shards are prepared once beforehand, for all
three alike. The final validation loss is the mean cross-entropy per character over the whole validation
split (non-overlapping windows of each recipe's block size). Run it alone: other load on 2 cores distorts it.

    python benchmarks/shakespeare_speedrun.py [--rounds 3] [--no-long]
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

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "reference": ROOT / "configs" / "shakespeare-char-baby.yaml",
    "fast": ROOT / "configs" / "shakespeare-char.yaml",
    "long": ROOT / "configs" / "shakespeare-char-long.yaml",
}
TARGET_FAST, TARGET_LONG = 1.886, 1.75


def run(recipe: Path, tmp: Path, tag: str, overrides: list[str]) -> tuple[float, float]:
    """(wall seconds, final whole-split validation loss) of one `lmforge train` process."""
    run_dir = tmp / tag
    cmd = [sys.executable, "-m", "lmforge", "train", str(recipe), f"data.prepared_dir={tmp / 'prepared'}",
           "train.tensorboard=false", *overrides, "--run-dir", str(run_dir), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return wall, [r["val_loss"] for r in records if "val_loss" in r][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="reference/fast(/long) rounds, alternating")
    parser.add_argument("--no-long", action="store_true", help="skip the long-budget recipe")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for the fast recipe")
    args = parser.parse_args()
    names = ["reference", "fast"] + ([] if args.no_long else ["long"])

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # the three recipes read the same data with the same tokenizer, so they share one set of shards
        subprocess.run([sys.executable, "-m", "lmforge", "prepare", str(RECIPES["reference"]),
                        f"data.prepared_dir={tmp / 'prepared'}"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        for i in range(args.rounds):
            for name in names:
                wall, loss = run(RECIPES[name], tmp, f"{name}-{i}", args.overrides if name == "fast" else [])
                results[name].append((wall, loss))
                print(f"round {i + 1} {name:9s} {wall:6.1f} s  val loss {loss:.4f}", flush=True)

    ref_walls = [w for w, _ in results["reference"]]
    print("\nround  reference (s, loss)   fast (s, loss)   time ratio" + ("   long (s, loss)" if "long" in names else ""))
    for i in range(args.rounds):
        (rw, rl), (fw, fl) = results["reference"][i], results["fast"][i]
        line = f"{i + 1:5d}  {rw:6.1f}  {rl:.4f}      {fw:6.1f}  {fl:.4f}    {fw / rw:.3f}"
        if "long" in names:
            lw, ll = results["long"][i]
            line += f"       {lw:6.1f}  {ll:.4f}"
        print(line)
    ratios = [f / r for (f, _), (r, _) in zip(results["fast"], results["reference"])]
    fast_losses = [loss for _, loss in results["fast"]]
    print(f"\nfast/reference time ratio: median {statistics.median(ratios):.3f}, worst {max(ratios):.3f}"
          f" (target <= 0.5); fast val loss worst {max(fast_losses):.4f} (target <= {TARGET_FAST})")
    print(f"reference val loss: mean {statistics.mean(l for _, l in results['reference']):.4f}; "
          f"wall time median {statistics.median(ref_walls):.1f} s")
    if "long" in names:
        long_walls = [w for w, _ in results["long"]]
        long_losses = [loss for _, loss in results["long"]]
        print(f"long/reference time ratio: median {statistics.median(w / r for w, r in zip(long_walls, ref_walls)):.3f}, "
              f"worst {max(w / r for w, r in zip(long_walls, ref_walls)):.3f} (target <= 1.0); "
              f"long val loss worst {max(long_losses):.4f} (target <= {TARGET_LONG})")


if __name__ == "__main__":
    main()
