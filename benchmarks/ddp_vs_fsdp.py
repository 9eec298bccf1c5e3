"""ddp against fsdp on the CPU: peak memory per rank and step time of a GPT ten times the baby's size, two
ranks of one thread each, side by side on the same data, with the same loss curve.

Each strategy trains `configs/shakespeare-char-baby.yaml` with an 8 x 8 x 512 GPT (25 M parameters) under
`torchrun --nproc_per_node 2` for `--steps` steps. Memory is rank 0's peak resident set over the training steps (`memory_mib`
in metrics.jsonl; the final checkpoint, which gathers the full state on rank 0 under fsdp, is printed apart) less the peak of the same two-rank start with a 1-layer, 8-wide model (Python, torch, gloo and
the data: what is there before the model), so the ratio compares what the strategy holds, not the
interpreter; both figures are printed. Step time is the mean of the logged steps after the first.

The ranks run with `MALLOC_MMAP_THRESHOLD_=131072`, as docs/planning.md's calibration does: glibc otherwise keeps
freed blocks below a threshold it raises as it goes (up to 32 MB) in the heap, so the resident set stays above what
the tensors need by an amount that depends on the order of allocations, which differs between the strategies
(`--glibc-default` measures that way instead).

    python benchmarks/ddp_vs_fsdp.py [--steps 20] [--out runs/ddp-vs-fsdp] [--glibc-default] [key=value ...]

Run it alone, from a worktree of main; it needs ../shared/data/tinyshakespeare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "shakespeare-char-baby.yaml"
BIG = ["model.n_layer=8", "model.n_head=8", "model.n_embd=512", "model.block_size=256"]
BASELINE = ["model.n_layer=1", "model.n_head=1", "model.n_embd=8", "model.block_size=256"]


def run(out: Path, strategy: str, model: list[str], steps: int, extra: list[str], malloc: dict) -> list[dict]:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lmforge",
            "train", str(RECIPE), *model, f"train.strategy={strategy}", "train.num_threads=1",
            "train.micro_batch_size=4", f"train.max_steps={steps}", f"train.eval_interval={steps}",
            "train.log_interval=1", "train.eval_max_windows=64", "sample.num_samples=0", "train.report=false",
            "train.tensorboard=false", *extra, "--run-dir", str(out / strategy), "--overwrite", "--no-progress"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **malloc})
    if proc.returncode != 0:
        sys.exit(f"{strategy}: training failed:\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in (out / strategy / "metrics.jsonl").read_text().splitlines()]


def summary(records: list[dict]) -> dict:
    steps = [r for r in records if "loss" in r and "elapsed_s" in r]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(steps[1:], steps[2:])]
    # the steps' peak: the end's checkpoint, which gathers the full state on rank 0 under fsdp, is reported apart
    return {"peak_mib": max(r["memory_mib"] for r in steps),
            "run_peak_mib": max(r.get("memory_mib", r.get("peak_memory_mib", 0)) for r in records),
            "step_s": sum(times) / len(times),
            "losses": [round(r["loss"], 4) for r in steps], "val_loss": [r["val_loss"] for r in records if "val_loss" in r][-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "ddp-vs-fsdp")
    ap.add_argument("--glibc-default", action="store_true", help="leave glibc's mmap threshold to move")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    malloc = {} if a.glibc_default else {"MALLOC_MMAP_THRESHOLD_": "131072"}
    base = summary(run(a.out / "baseline", "ddp", BASELINE, 3, a.overrides, malloc))["peak_mib"]
    rows = {s: summary(run(a.out, s, BIG, a.steps, a.overrides, malloc)) for s in ("ddp", "fsdp")}
    for s, r in rows.items():
        print(f"{s}: peak over the steps {r['peak_mib']:.0f} MiB (model's share {r['peak_mib'] - base:.0f} MiB), "
              f"with the final checkpoint {r['run_peak_mib']:.0f} MiB, {r['step_s'] * 1000:.0f} ms/step, "
              f"val loss {r['val_loss']:.4f}")
    ddp, fsdp = rows["ddp"], rows["fsdp"]
    print(f"baseline (before the model): {base:.0f} MiB")
    print(f"fsdp / ddp: peak {fsdp['peak_mib'] / ddp['peak_mib']:.2f}x, model's share "
          f"{(fsdp['peak_mib'] - base) / (ddp['peak_mib'] - base):.2f}x, step time {fsdp['step_s'] / ddp['step_s']:.2f}x")
    same = max(abs(x - y) for x, y in zip(ddp["losses"], fsdp["losses"]))
    print(f"largest difference between the two loss curves: {same:.2e}")


if __name__ == "__main__":
    main()
