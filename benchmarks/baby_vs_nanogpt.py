"""nanoGPT's own train.py (its baby GPT) against `lmforge train` runs, alternating, in one run.

Each round runs nanoGPT's CPU baby command (../shared/reference/README.md), then each lmforge run (default:
`lmforge train configs/shakespeare-char-baby.yaml`), each as its own process, and times the whole process
(start-up, training, every evaluation, checkpoints, samples). nanoGPT's data is prepared once, before the first
round, by its own prepare.py, and each lmforge run's by a first `lmforge prepare`, so no timed run pays for
preparation. The quality side is computed the same way for both: the final weights' mean cross-entropy per
character over the whole validation split in non-overlapping windows of the block size (nanoGPT's last
checkpoint is loaded with its own model.py for this, after the timing). Both sides use torch's default number
of threads. Run it alone:

    python benchmarks/baby_vs_nanogpt.py [--rounds 3] [--steps N] [--run 'RECIPE [key=value ...] [target=LOSS]' ...]

With target=, a run's figure is also its time to that validation loss (the speedrun's 1.886, the default job's
4.49) against nanoGPT's whole baby process, for example
`--run 'configs/shakespeare-char.yaml target=1.886' --run 'default target=4.49'`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmforge.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RECIPE = ROOT / "configs" / "shakespeare-char-baby.yaml"
NANO_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
             "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
             "--n_embd=128", "--dropout=0.0", "--always_save_checkpoint=True"]
ITER = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms")


def nanogpt_copy(tmp: Path) -> Path:
    nano = tmp / "nanoGPT"
    shutil.copytree(SHARED / "reference" / "nanoGPT", nano)
    data = nano / "data" / "shakespeare_char"
    shutil.copy(SHARED / "data" / "tinyshakespeare" / "input.txt", data / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, stdout=subprocess.DEVNULL)
    return nano


def run_nanogpt(nano: Path, steps: int, out: Path) -> dict:
    cmd = [sys.executable, "train.py", *NANO_ARGS, f"--max_iters={steps}", f"--lr_decay_iters={steps}",
           f"--eval_interval={min(250, steps)}", f"--out_dir={out}"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=nano, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    # an evaluation step's time includes the evaluation, and iteration 0 the first call's warm-up
    steps_ms = [float(m[2]) for line in proc.stdout.splitlines() if (m := ITER.match(line))
                and int(m[1]) % min(250, steps) != 0 and int(m[1]) > 10]
    return {"wall": wall, "step_ms": statistics.median(steps_ms), "val": nanogpt_val_loss(nano, out)}


def nanogpt_val_loss(nano: Path, out: Path) -> float:
    sys.path.insert(0, str(nano))
    try:
        from model import GPT, GPTConfig  # nanoGPT's own model.py, from the scratch copy
    finally:
        sys.path.pop(0)
    ckpt = torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    val = np.fromfile(nano / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64)
    return whole_split_loss(lambda x, y: model(x, y)[1], val, ckpt["model_args"]["block_size"])


def whole_split_loss(loss_of, ids: np.ndarray, block: int) -> float:
    """Mean cross-entropy over non-overlapping windows of `block` targets; the last, shorter one included."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, block):
            chunk = torch.from_numpy(ids[start:start + block + 1])[None]
            x, y = chunk[:, :-1], chunk[:, 1:]
            total += loss_of(x, y).item() * y.numel()
            count += y.numel()
    return total / count


def run_lmforge(recipe: list[str], steps: int | None, prepared: Path, run_dir: Path, overrides: list[str],
                target: float | None) -> dict:
    length = [] if steps is None else [f"train.max_steps={steps}", f"schedule.decay_steps={steps}",
                                       f"train.eval_interval={min(250, steps)}"]
    cmd = [sys.executable, "-m", "lmforge", "train", *recipe, *length, "train.tensorboard=false",
           f"data.prepared_dir={prepared}", *overrides, "--run-dir", str(run_dir), "--no-progress"]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][2:]  # past the warm-up steps
    cfg = load_config(run_dir / "config.yaml")
    tokens_per_step = cfg.train.micro_batch_size * cfg.train.grad_accum_steps * cfg.model.block_size
    evals = [r for r in records if "val_loss" in r]
    mfu = [r["mfu"] for r in records if "mfu" in r][2:]
    # the time to the target: the whole process less what it ran after the first evaluation that reached it
    reached = next((r for r in evals if target is not None and r["val_loss"] <= target), None)
    last = max(r["elapsed_s"] for r in records if "elapsed_s" in r)
    return {"wall": wall, "step_ms": 1000 * tokens_per_step / statistics.median(rates), "val": evals[-1]["val_loss"],
            "mfu": statistics.median(mfu) if mfu else None,
            "to_target": wall - (last - reached["elapsed_s"]) if reached else None}


def parse_run(spec: str) -> dict:
    """`RECIPE [key=value ...] [target=LOSS]`: an lmforge run (`default`: the default job) and its overrides."""
    words = spec.split()
    target = next((float(w.split("=", 1)[1]) for w in words if w.startswith("target=")), None)
    return {"spec": spec, "recipe": [] if words[0] == "default" else [words[0]], "target": target,
            "overrides": [w for w in words[1:] if not w.startswith("target=")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of every run (default: 2000 for nanoGPT, each recipe's own for lmforge)")
    parser.add_argument("--run", action="append", dest="runs", metavar="'RECIPE [key=value ...] [target=LOSS]'",
                        help="an lmforge run to alternate with nanoGPT (repeatable; default: the baby recipe); "
                             "RECIPE `default` is the default job; with target=, also its time to that val loss")
    args = parser.parse_args()
    runs = [parse_run(spec) for spec in args.runs or [str(RECIPE)]]

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        nano = nanogpt_copy(tmp)
        for k, run in enumerate(runs):  # every run's data prepared once, before any timing
            run["prepared"] = tmp / f"prepared-{k}"
            subprocess.run([sys.executable, "-m", "lmforge", "prepare", *run["recipe"], *run["overrides"],
                            f"data.prepared_dir={run['prepared']}"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        for dtype in ("float32", "bfloat16"):  # MFU's peak is measured once per machine, before any timing
            subprocess.run([sys.executable, "-m", "lmforge", "bench-gemm", "--dtype", dtype], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        for run in runs:
            run["rows"] = []
        for i in range(args.rounds):
            ref = run_nanogpt(nano, args.steps or 2000, tmp / f"nano-{i}")
            print(f"round {i + 1}: nanoGPT {ref['wall']:.1f} s (step {ref['step_ms']:.1f} ms, val {ref['val']:.4f})",
                  flush=True)
            for k, run in enumerate(runs):
                ours = run_lmforge(run["recipe"], args.steps, run["prepared"], tmp / f"run-{i}-{k}", run["overrides"],
                                   run["target"])
                run["rows"].append((ref, ours))
                print(f"  {run['spec']}: {ours['wall']:.1f} s (step {ours['step_ms']:.1f} ms, val {ours['val']:.4f}"
                      + (f", MFU {100 * ours['mfu']:.1f} %" if ours["mfu"] else "")
                      + (f", {ours['to_target']:.1f} s to val <= {run['target']}" if ours["to_target"] else "") + ")",
                      flush=True)

    print(f"nanoGPT {args.steps or 2000} steps; lmforge {args.steps or 'each recipe its own number of'} steps; "
          f"{args.rounds} rounds; ratios are lmforge / nanoGPT, the median over rounds (each round's in brackets)")
    for run in runs:
        rows = run["rows"]
        print(f"{run['spec']}:")
        ratio_line("  whole process", [o["wall"] / r["wall"] for r, o in rows])
        ratio_line("  median step", [o["step_ms"] / r["step_ms"] for r, o in rows])
        if run["target"] is not None:
            if all(o["to_target"] for _, o in rows):
                ratio_line(f"  time to val <= {run['target']} / nanoGPT's whole process",
                           [o["to_target"] / r["wall"] for r, o in rows])
            else:
                print(f"  did not reach val <= {run['target']} in every round")
        print("  whole-split val loss, nanoGPT vs lmforge: "
              + "; ".join(f"{r['val']:.4f} vs {o['val']:.4f}" for r, o in rows))


def ratio_line(what: str, ratios: list[float]) -> None:
    print(f"{what}: {statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
