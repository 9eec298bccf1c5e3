"""Fine-tuning all-MiniLM-L6-v2 (issue 6): SST-2 accuracy and its ablation, transfer curves, WNUT-17 and SQuAD.

Every figure comes from `lmforge finetune RECIPE [key=value ...]` in its own process, read back from the
run's metrics.jsonl (the validation metrics after the last epoch) or, for held-out test files, from
`lmforge eval RUN --data FILE --json`. Parts:

- sst2: configs/sst2-minilm.yaml on SST-2's training set (or its first --sst2-size sentences), dev accuracy.
- ablation: plain fine-tuning, gradual unfreezing, discriminative rates, both, and LoRA, each on the same
  first --ablation-size training sentences for the same epochs.
- transfer: 100 / 1,000 / all (--transfer-sizes) labelled sentences, pretrained backbone against the same
  architecture with random weights (finetune.backbone_weights=random).
- wnut17: configs/wnut17-minilm.yaml (train, dev after each epoch), entity F1 on emerging.test.annotated.
- squad: the articles of the first 80 % of SQuAD v1.1 dev train, the other 20 % evaluate (EM / F1); the
  training windows can be capped with --squad-train-windows.

    python benchmarks/finetune_minilm.py --parts sst2,ablation,transfer,wnut17,squad [--out runs/finetune-minilm]
        [--threads 1] [key=value ...]

The key=value overrides go to every run. Results are appended to OUT/results.jsonl and printed as markdown.
Each part takes minutes to tens of minutes on a 2-core machine; run it alone, or beside one other job with
--threads 1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ABLATION = {  # the techniques of the issue, each a set of recipe overrides
    "plain": [],
    # MiniLM has 8 layer groups; one more every 8 steps has them all training from step 56
    "gradual unfreezing": ["finetune.unfreeze=steps", "finetune.unfreeze_steps=8"],
    "discriminative lr (2.6)": ["finetune.discriminative_factor=2.6"],
    "both": ["finetune.unfreeze=steps", "finetune.unfreeze_steps=8", "finetune.discriminative_factor=2.6"],
    "LoRA r=8 (lr 1e-3)": ["finetune.lora.r=8", "optimizer.lr=1e-3"],
}


def lmforge(*args: str, log: Path | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "lmforge", *args], cwd=ROOT, capture_output=True, text=True)
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    if done.returncode:
        raise SystemExit(f"lmforge {' '.join(args[:2])} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def finetune(recipe: str, run_dir: Path, overrides: list[str]) -> dict:
    """Train one run; its last validation metrics, steps and wall time."""
    started = time.perf_counter()
    lmforge("finetune", recipe, *overrides, "train.tensorboard=false", "--run-dir", str(run_dir), "--overwrite",
            "--no-progress", log=run_dir.with_suffix(".log"))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_loss" in r]
    return {"val": val[-1], "val_curve": val, "steps": max(r["step"] for r in records),
            "wall_s": round(time.perf_counter() - started, 1)}


def record(out: Path, part: str, name: str, row: dict) -> None:
    with (out / "results.jsonl").open("a") as f:
        f.write(json.dumps({"part": part, "name": name, "date": time.strftime("%Y-%m-%d"), **row}) + "\n")


def sst2(args, out: Path, common: list[str]) -> list[str]:
    size = [f"finetune.max_train_examples={args.sst2_size}"] if args.sst2_size else []
    row = finetune("configs/sst2-minilm.yaml", out / "sst2", [*size, *common])
    record(out, "sst2", "recipe", row)
    acc = 100 * row["val"]["accuracy"]
    curve = ", ".join(f"{100 * r['accuracy']:.2f}" for r in row["val_curve"])
    return [f"SST-2 dev accuracy, configs/sst2-minilm.yaml {' '.join(size + common)}: **{acc:.2f} %** "
            f"(after each epoch: {curve}), {row['steps']} steps, {row['wall_s'] / 60:.1f} min"]


def ablation(args, out: Path, common: list[str]) -> list[str]:
    lines = [f"SST-2 ablation: the first {args.ablation_size} training sentences, {args.ablation_epochs} epochs, "
             f"dev accuracy ({' '.join(common)})", "", "| technique | dev accuracy % | steps | wall |", "|---|---:|---:|---:|"]
    for name, extra in ABLATION.items():
        run = out / ("ablation-" + name.split()[0].lower())
        row = finetune("configs/sst2-minilm.yaml", run, [f"finetune.max_train_examples={args.ablation_size}",
                                                          f"finetune.epochs={args.ablation_epochs}", *extra, *common])
        record(out, "ablation", name, row)
        lines.append(f"| {name} | {100 * row['val']['accuracy']:.2f} | {row['steps']} | {row['wall_s'] / 60:.1f} min |")
        print(lines[-1], flush=True)
    return lines


def transfer(args, out: Path, common: list[str]) -> list[str]:
    sizes = [int(n) for n in args.transfer_sizes.split(",")]
    lines = [f"SST-2 dev accuracy against labelled training sentences, {args.transfer_epochs} epochs "
             f"({' '.join(common)})", "", "| labels | pretrained MiniLM % | same architecture, random weights % |",
             "|---:|---:|---:|"]
    for size in sizes:
        cells = []
        for weights in ("pretrained", "random"):
            run = out / f"transfer-{size}-{weights}"
            row = finetune("configs/sst2-minilm.yaml", run, [f"finetune.max_train_examples={size}",
                                                              f"finetune.epochs={args.transfer_epochs}",
                                                              f"finetune.backbone_weights={weights}", *common])
            record(out, "transfer", f"{size}-{weights}", row)
            cells.append(f"{100 * row['val']['accuracy']:.2f}")
        lines.append(f"| {size} | {cells[0]} | {cells[1]} |")
        print(lines[-1], flush=True)
    return lines


def wnut17(args, out: Path, common: list[str]) -> list[str]:
    run = out / "wnut17"
    row = finetune("configs/wnut17-minilm.yaml", run, common)
    test = json.loads(lmforge("eval", str(run), "--data", str(DATA / "ner" / "wnut17" / "emerging.test.annotated"),
                              "--json"))
    row["test"] = test
    record(out, "wnut17", "recipe", row)
    return [f"WNUT-17 test entity F1 **{100 * test['f1']:.2f}** (precision {100 * test['precision']:.2f}, recall "
            f"{100 * test['recall']:.2f}); dev F1 {100 * row['val']['f1']:.2f}; {row['steps']} steps, "
            f"{row['wall_s'] / 60:.1f} min (configs/wnut17-minilm.yaml {' '.join(common)})"]


def squad_split(out: Path) -> tuple[Path, Path]:
    """The dev set's articles cut 80/20 in file order, as configs/squad-minilm.yaml describes."""
    dev = json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    cut = len(dev["data"]) * 8 // 10
    paths = []
    for name, part in (("train", dev["data"][:cut]), ("eval", dev["data"][cut:])):
        path = out / f"squad-dev-{name}.json"
        path.write_text(json.dumps({"version": dev["version"], "data": part}), encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


def squad(args, out: Path, common: list[str]) -> list[str]:
    train, held_out = squad_split(out)
    cap = [f"finetune.max_train_examples={args.squad_train_windows}"] if args.squad_train_windows else []
    row = finetune("configs/squad-minilm.yaml", out / "squad",
                   [f"finetune.train_path={train}", f"finetune.val_path={held_out}", *cap, *common])
    record(out, "squad", "recipe", row)
    return [f"SQuAD v1.1, trained on the first 80 % of dev's articles, evaluated on the other 20 %: "
            f"**EM {row['val']['exact_match']:.2f}, F1 {row['val']['f1']:.2f}**; {row['steps']} steps, "
            f"{row['wall_s'] / 60:.1f} min (configs/squad-minilm.yaml {' '.join(cap + common)})"]


PARTS = {"sst2": sst2, "ablation": ablation, "transfer": transfer, "wnut17": wnut17, "squad": squad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "finetune-minilm")
    parser.add_argument("--threads", type=int, default=None, help="train.num_threads for every run")
    parser.add_argument("--sst2-size", type=int, default=None, help="sst2: the first this many sentences (default all)")
    parser.add_argument("--ablation-size", type=int, default=4000)
    parser.add_argument("--ablation-epochs", type=int, default=2)
    parser.add_argument("--transfer-sizes", default="100,1000,67349", help="training sentences per point (SST-2 has 67,349)")
    parser.add_argument("--transfer-epochs", type=int, default=2)
    parser.add_argument("--squad-train-windows", type=int, default=None, help="squad: the first this many training windows")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"--parts: unknown {', '.join(sorted(unknown))} (known: {', '.join(PARTS)})")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    common = ([f"train.num_threads={args.threads}"] if args.threads else []) + args.overrides
    for part in parts:
        print("\n".join(PARTS[part](args, out, common)) + "\n", flush=True)


if __name__ == "__main__":
    main()
