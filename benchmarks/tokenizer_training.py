"""Where the time of training a byte-level BPE goes, in `tokenizers` itself: what bounds `lmforge prepare`
with the tokenizer trained in the run on a corpus no larger than its training sample (issue 18).

On one file of prepare_throughput.py's corpus (its `--work` folder; build it there first), the documents are
read into memory and handed to `tokenizers`' BpeTrainer the way lmforge's Tokenizer.train hands them (batches of
1,000 texts, GPT-2's ByteLevel split, the 256 byte symbols as initial alphabet), timing the `train_from_iterator`
call only, in a fresh process each:
- at the vocabulary size asked for (32,768 by default): the whole training;
- at 257 tokens, which merges once: the pre-tokenisation and word counting alone, the rest being the merges;
- both again with RAYON_NUM_THREADS=1, to show how the counting scales with cores.

    .venv/bin/python benchmarks/tokenizer_training.py [--work /tmp/pt] [--file part-000.jsonl] [--vocab-size 32768]

Prints a markdown table. Run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def train_seconds(path: Path, vocab_size: int) -> tuple[float, int]:
    """Seconds of train_from_iterator over the documents of `path`, and their UTF-8 bytes."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    batches = (texts[i:i + 1000] for i in range(0, len(texts), 1000))
    start = time.perf_counter()
    tokenizer.train_from_iterator(batches, trainer=trainer)
    return time.perf_counter() - start, sum(len(t.encode("utf-8")) for t in texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmforge-prepare-bench"))
    ap.add_argument("--file", default="part-000.jsonl")
    ap.add_argument("--vocab-size", type=int, default=32768)
    args = ap.parse_args()
    path = args.work / "corpus" / args.file
    if not path.is_file():
        raise SystemExit(f"{path}: no such file; build the corpus with benchmarks/prepare_throughput.py --work {args.work}")
    print("| threads | vocabulary | what | seconds | MB/s |")
    print("|---:|---:|---|---:|---:|")
    for threads in (None, "1"):
        env = {**os.environ, **({"RAYON_NUM_THREADS": threads} if threads else {})}
        for vocab, what in ((args.vocab_size, "whole training"), (257, "pre-tokenising and counting words")):
            done = subprocess.run([sys.executable, __file__, "--child", str(path), str(vocab)], env=env,
                                  capture_output=True, text=True, check=True)
            seconds, nbytes = json.loads(done.stdout)
            print(f"| {threads or os.cpu_count()} | {vocab:,} | {what} | {seconds:.1f} | {nbytes / 1e6 / seconds:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(train_seconds(Path(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()
