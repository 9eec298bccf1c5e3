"""WikiText-2 test scored three ways: lm-evaluation-harness's HFLM on an exported GPT, the harness with
lmforge's own model (LmforgeLM), and `lmforge eval --data --documents --metrics`; they must agree.

WikiText-2 test (../shared/data/wikitext-2/raw/wiki.test.raw) is cut into its articles the way the
harness's `wikitext` dataset (EleutherAI/wikitext_document_level) holds them: a page starts at each
top-level heading line ` = Title = `. The pages go to a JSON-lines file, and a local task
`wikitext2_local` scores them with the stock task's output type and metrics (loglikelihood_rolling;
word_perplexity, byte_perplexity, bits_per_byte) but without its detokenizer: the stock task scores the
detokenized page while counting the words and bytes of the raw one, which no scorer that sees only the
scored text can reproduce. The GPT is a small byte-level BPE model trained for `--steps` steps on
wiki.valid.raw (WikiText-2 train is not among the shared data); any GPT run can be given with `--run`.

    python benchmarks/wikitext_harness.py [--steps 300] [--run RUN] [--out results.jsonl] [key=value ...]

Prints a markdown table and the largest relative difference; exits 1 if it exceeds 1e-4.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "wikitext-2" / "raw"
METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")
TITLE = re.compile(r"^ = [^=].* = $")


def pages(raw: Path) -> list[str]:
    """The articles of a WikiText raw file, each from its title line to the line before the next title."""
    out: list[list[str]] = []
    for line in raw.read_text(encoding="utf-8").splitlines(keepends=True):
        if TITLE.match(line.rstrip("\n")) or not out:
            out.append([])
        out[-1].append(line)
    return ["".join(p) for p in out if "".join(p).strip()]


def lmforge(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "lmforge", *args], check=True, cwd=ROOT, capture_output=True,
                          text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of the GPT (without --run)")
    parser.add_argument("--run", type=Path, help="score this GPT run instead of training one")
    parser.add_argument("--work", type=Path, help="keep the pages, task, run and export here")
    parser.add_argument("--out", type=Path, help="append the figures here as a JSON line")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the GPT's training")
    args = parser.parse_args()

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from lmforge.eval.harness import run_harness

    work = args.work or Path(tempfile.mkdtemp(prefix="wikitext-harness-"))
    work.mkdir(parents=True, exist_ok=True)
    docs = pages(RAW / "wiki.test.raw")
    data = work / "wiki.test.pages.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tasks = work / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "wikitext2_local.yaml").write_text(
        f"task: wikitext2_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n")

    run = args.run
    if run is None:
        run = work / "run"
        lmforge("train", f"data.path={RAW / 'wiki.valid.raw'}", f"data.prepared_dir={work / 'prepared'}",
                "tokenizer.kind=bpe", "tokenizer.vocab_size=4096", "model.n_layer=4", "model.n_head=4",
                "model.n_embd=128", "model.block_size=256", "model.dropout=0.0", "train.micro_batch_size=16",
                f"train.max_steps={args.steps}", f"train.eval_interval={args.steps}", "train.report=false",
                "sample.num_samples=0", *args.overrides, "--run-dir", str(run), "--no-progress")
    export = work / "hf"
    lmforge("export", str(run), str(export), "--format", "hf")
    manager = TaskManager(include_path=str(tasks))

    started = time.perf_counter()
    hf = simple_evaluate(model="hf", model_args=f"pretrained={export},dtype=float32", tasks=["wikitext2_local"],
                         task_manager=manager, device="cpu", batch_size=1)["results"]["wikitext2_local"]
    hf_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = run_harness(run, ["wikitext2_local"], include_path=str(tasks), device="cpu")["results"]["wikitext2_local"]
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    direct = json.loads(lmforge("eval", str(run), "--data", str(data), "--documents", "--metrics", "--json"))
    direct_s = time.perf_counter() - started
    stream = json.loads(lmforge("eval", str(run), "--data", str(data), "--json"))

    routes = {"HFLM on the export": {m: hf[f"{m},none"] for m in METRICS},
              "LmforgeLM (lmforge eval --harness)": {m: ours[f"{m},none"] for m in METRICS},
              "lmforge eval --documents --metrics": {m: direct[m] for m in METRICS},
              "lmforge eval (one stream, for contrast)": {m: stream[m] for m in METRICS}}
    seconds = {"HFLM on the export": hf_s, "LmforgeLM (lmforge eval --harness)": ours_s,
               "lmforge eval --documents --metrics": direct_s}
    print(f"{len(docs)} pages, {direct['words']:,} words (harness count), {direct['bytes']:,} bytes, "
          f"{direct['tokens']:,} tokens; run {run}")
    print("| route | word perplexity | byte perplexity | bits per byte | seconds |\n|---|---|---|---|---|")
    for name, figures in routes.items():
        took = f"{seconds[name]:.0f}" if name in seconds else ""
        print(f"| {name} | {figures['word_perplexity']:.4f} | {figures['byte_perplexity']:.6f} "
              f"| {figures['bits_per_byte']:.6f} | {took} |")
    reference = routes["HFLM on the export"]
    worst = max(abs(routes[r][m] - reference[m]) / reference[m] for r in list(routes)[1:3] for m in METRICS)
    print(f"largest relative difference from HFLM (the three harness-defined routes): {worst:.2e}")
    if args.out:
        with args.out.open("a") as f:
            f.write(json.dumps({"pages": len(docs), "words": direct["words"], "bytes": direct["bytes"],
                                "tokens": direct["tokens"], "routes": routes, "max_rel_diff": worst}) + "\n")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
