"""Low-resource SST-2: dev accuracy of the fine-tuning recipe on 500 labelled training sentences, without
augmentation and with each method, mean and spread over seeds.

For each seed, `--train-size` sentences are drawn from SST-2's training set (the same draw for every method);
`lmforge finetune RECIPE` then trains on them, alone or through the recipe's augment stage (training data
only; the dev set is never augmented), and its dev accuracy after the last epoch is read from the run's
metrics. The seed also seeds fine-tuning and the augmentation.

Methods: none, eda, noise, summarize (extractive TextRank; SST-2 items are single sentences, so it has
nothing to drop and makes no copies: the row shows it), mask (an lmforge masked-LM encoder pretrained here on
SST-2's training sentences, text only, with configs/sst2-encoder.yaml, unless --mask-model names a folder or
run), backtranslate and abstractive summaries (only with local seq2seq folders: --mt-model, --mt-back-model,
--summary-model; skipped, and said so, without them).

    python benchmarks/augment_sst2.py [--seeds 0,1,2] [--methods none,eda,noise,summarize,mask]
        [--train-size 500] [--copies 1] [--encoder-steps 3000] [--encoder-set model.n_layer=2 ...]
        [--out runs/augment-sst2] [key=value ...]

The key=value overrides go to every fine-tuning run (e.g. finetune.epochs=5). Run it alone: it fine-tunes
len(methods) x len(seeds) models. A quick check that it runs end to end:

    python benchmarks/augment_sst2.py --train-size 16 --dev-size 16 --seeds 0 --encoder-steps 5 \
        finetune.epochs=1 finetune.max_length=32
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
NLTK_DATA = ROOT.parent / "shared" / "data" / "nltk_data"  # WordNet, for EDA's synonyms and insertions
METHODS = ("none", "eda", "noise", "summarize", "mask", "backtranslate", "abstractive")


def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows), encoding="utf-8")
    return path


def lmforge(*args: str, log: Path) -> None:
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "lmforge", *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"lmforge {args[0]} failed (exit {done.returncode}); see {log}:\n" + log.read_text()[-2000:])


def method_overrides(method: str, args, encoder: str | None) -> list[str] | None:
    """The augment section for `method`, or None where it needs a model that is not there."""
    if method == "none":
        return []
    common = [f"augment.copies={args.copies}", f"augment.fraction={args.fraction}"]
    if method in ("eda", "noise"):
        return [f"augment.method={method}", *common]
    if method == "summarize":
        return ["augment.method=summarize", "augment.summary=textrank", *common]
    if method == "mask":
        return ["augment.method=mask", f"augment.model={encoder}", *common]
    if method == "backtranslate":
        if not (args.mt_model and args.mt_back_model):
            return None
        return ["augment.method=backtranslate", f"augment.model={args.mt_model}",
                f"augment.back_model={args.mt_back_model}", "augment.decoding=sample", *common]
    if not args.summary_model:
        return None
    return ["augment.method=summarize", "augment.summary=abstractive", f"augment.model={args.summary_model}",
            *common]


def finetune(recipe: str, run_dir: Path, overrides: list[str]) -> dict:
    started = time.perf_counter()
    lmforge("finetune", recipe, *overrides, "train.tensorboard=false", "--run-dir", str(run_dir), "--overwrite",
            "--no-progress", log=run_dir.with_suffix(".log"))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    accuracy = [r["accuracy"] for r in records if "accuracy" in r][-1]
    report = run_dir / "augment" / "train.report.json"
    copies = json.loads(report.read_text())["extra"]["copies_written"] if report.is_file() else 0
    return {"accuracy": accuracy, "copies": copies, "steps": max(r["step"] for r in records),
            "wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="configs/sst2-minilm.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="none,eda,noise,summarize,mask,backtranslate,abstractive")
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--dev-size", type=int, default=None, help="only the first this many dev sentences (quick checks)")
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--mask-model", default=None, help="a masked-LM folder or lmforge encoder run (default: pretrain one)")
    parser.add_argument("--encoder-steps", type=int, default=3000, help="steps of the encoder pretrained for mask")
    parser.add_argument("--encoder-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override configs/sst2-encoder.yaml for the encoder pretrained for mask (repeatable)")
    parser.add_argument("--mt-model", default=None, help="English-to-pivot seq2seq folder (backtranslate)")
    parser.add_argument("--mt-back-model", default=None, help="pivot-to-English seq2seq folder (backtranslate)")
    parser.add_argument("--summary-model", default=None, help="seq2seq summariser folder (abstractive)")
    parser.add_argument("--out", default="runs/augment-sst2")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"--methods: unknown {', '.join(sorted(unknown))} (known: {', '.join(METHODS)})")
    seeds = [int(s) for s in args.seeds.split(",")]
    if NLTK_DATA.is_dir():  # the fine-tuning processes inherit it
        os.environ.setdefault("NLTK_DATA", str(NLTK_DATA))
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    train_rows = read_tsv(SST2 / "train.tsv")
    dev = write_tsv(out / "dev.tsv", read_tsv(SST2 / "dev.tsv")[:args.dev_size])
    encoder = args.mask_model
    if "mask" in methods and encoder is None:
        encoder = str(out / "encoder")
        print(f"pretraining the masked-LM encoder ({args.encoder_steps} steps) into {encoder}", flush=True)
        lmforge("train", "configs/sst2-encoder.yaml", f"train.max_steps={args.encoder_steps}",
                f"data.path={SST2 / 'train.tsv'}", f"data.prepared_dir={out / 'encoder-prepared'}", *args.encoder_set,
                "train.tensorboard=false", "--run-dir", encoder, "--overwrite", "--no-progress", log=out / "encoder.log")

    results: dict[str, dict[int, dict]] = {}
    skipped = []
    for method in methods:
        extra = method_overrides(method, args, encoder)
        if extra is None:
            skipped.append(method)
            continue
        for seed in seeds:
            subset = write_tsv(out / f"train-{args.train_size}-seed{seed}.tsv",
                               random.Random(seed).sample(train_rows, args.train_size))
            run_dir = out / f"{method}-seed{seed}"
            overrides = [f"finetune.train_path={subset}", f"finetune.val_path={dev}", f"train.seed={seed}"]
            if extra:
                overrides += [f"augment.seed={seed}", *extra]
            row = finetune(args.recipe, run_dir, [*overrides, *args.overrides])
            results.setdefault(method, {})[seed] = row
            print(f"{method} seed {seed}: dev accuracy {100 * row['accuracy']:.2f} ({row['copies']} copies, "
                  f"{row['steps']} steps, {row['wall_s']} s)", flush=True)

    base = results.get("none")
    lines = [f"Low-resource SST-2: {args.train_size} training sentences, dev {'all 872' if args.dev_size is None else args.dev_size}, "
             f"recipe {args.recipe} {' '.join(args.overrides)}, seeds {args.seeds}, copies {args.copies}", "",
             "| method | copies per seed | dev accuracy % (mean ± sd) | change vs none | per seed |",
             "|---|---:|---:|---:|---|"]
    for method, by_seed in results.items():
        acc = [100 * by_seed[s]["accuracy"] for s in seeds]
        mean, sd = statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0
        change = ""
        if base is not None:
            change = f"{mean - statistics.mean(100 * base[s]['accuracy'] for s in seeds):+.2f}"
        copies = statistics.mean(by_seed[s]["copies"] for s in seeds)
        lines.append(f"| {method} | {copies:g} | {mean:.2f} ± {sd:.2f} | {change} | "
                     f"{', '.join(f'{a:.2f}' for a in acc)} |")
    if skipped:
        lines += ["", f"Not run (no local model given): {', '.join(skipped)}"]
    table = "\n".join(lines)
    print("\n" + table)
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results, "skipped": skipped},
                                                 indent=2) + "\n")


if __name__ == "__main__":
    main()
