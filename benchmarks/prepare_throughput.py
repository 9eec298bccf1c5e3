"""`lmforge prepare` end to end against the tokenizer library's own `encode_batch`, and its peak memory, on
corpora of 100 MB and 1 GB built from ../shared/data text (issue 18).

The corpus: jsonl files of 100 MB (`part-000.jsonl`, ...), each record a document of 3 to 30 paragraphs (under 60,000 characters) of real
text (WikiText-2, Tiny Shakespeare, SQuAD contexts, SST-2 sentences, the WMT17 German reference, PTB) drawn at
random with a fixed seed. The 100 MB corpus is the first part; the 1 GB corpus is all ten.

For each size and tokenizer kind (byte-level BPE of 32,768 tokens, char), each in a fresh subprocess:
- `lmforge prepare` whole: reading, tokenizer training on its sample (tokenizer.train_sample_bytes, 200 MB
  spread over the corpus), encoding, writing;
- `lmforge prepare` with that tokenizer given (tokenizer.path): the encoding of the corpus end to end, which
  is what the library's encode_batch below does; at the first size also with data.encoder=tokenizers (the
  library doing prepare's encoding, as before tiktoken);
- the limit: the same tokenizer.json loaded in `tokenizers` and its `encode_batch` called over the same
  documents in batches of 4 MiB, timing the calls only (reading and JSON decoding left out, in the library's
  favour). Its ids, with the end-of-document id after each document, are hashed and compared with the shards of
  every prepare: "identical" or the row says they differ.
MB/s are of the documents' UTF-8 text for all of them; peak memory is each child's maximum resident set
(ru_maxrss, from wait4).

A second table times opening the prepared data (`load_prepared`, what train, eval and resume do first) in a
fresh process, twice: the first open checks every shard's SHA-256, the second finds the checks remembered
(data/hash_cache.py, its cache under the work folder).

    .venv/bin/python benchmarks/prepare_throughput.py [--sizes-mb 100 1000] [--kinds bpe char] [--work DIR]

Prints a markdown table. Run it alone: on 2 cores anything else running skews the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from clean_throughput import SHARED, shared_paragraphs

PART_BYTES = 100_000_000
# below prepare's 64 Ki-character pieces, so that the library's ids of a whole document are prepare's ids
MAX_DOC_CHARS = 60_000


def paragraphs() -> list[str]:
    pool = shared_paragraphs()
    ptb = (SHARED / "ptb" / "ptb.train.txt").read_text().splitlines()
    pool += [" ".join(s.strip() for s in ptb[i:i + 8]) for i in range(0, len(ptb), 8)]
    return list(dict.fromkeys(pool))


def build(folder: Path, parts: int, seed: int = 0) -> None:
    """The first `parts` files of the corpus (each a deterministic function of its index and the seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = None
    for i in range(parts):
        path = folder / f"part-{i:03d}.jsonl"
        if path.is_file():
            continue
        pool = pool or paragraphs()
        rng = random.Random(f"{seed}-{i}")
        tmp = path.with_suffix(".tmp")
        written = 0
        with open(tmp, "w", encoding="utf-8") as f:
            while written < PART_BYTES:
                paras = rng.choices(pool, k=rng.randint(3, 30))
                while len(paras) > 1 and sum(map(len, paras)) > MAX_DOC_CHARS:
                    paras.pop()
                text = "\n\n".join(paras)
                line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
                f.write(line)
                written += len(line.encode())
        tmp.rename(path)


def documents(paths: list[Path]):
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]


def reference(tokenizer_json: str, paths: list[str]) -> dict:
    """(In a child process.) tokenizers' encode_batch over the documents, in 4 MiB batches, timing the calls."""
    import numpy as np
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(tokenizer_json)
    eod = tk.token_to_id("<|endoftext|>")
    dtype = np.dtype("<u2") if tk.get_vocab_size(with_added_tokens=True) <= 1 << 16 else np.dtype("<u4")
    digest, seconds, nbytes, batch, size = hashlib.sha256(), 0.0, 0, [], 0

    def encode(batch):
        nonlocal seconds
        start = time.perf_counter()
        out = tk.encode_batch(batch, add_special_tokens=False)
        seconds += time.perf_counter() - start
        for e in out:  # hashing is outside the timed call
            digest.update(np.array(e.ids + [eod], dtype).tobytes())

    for text in documents([Path(p) for p in paths]):
        batch.append(text)
        size += len(text)
        nbytes += len(text.encode())
        if size >= 1 << 22:
            encode(batch)
            batch, size = [], 0
    if batch:
        encode(batch)
    return {"seconds": seconds, "bytes": nbytes, "sha256": digest.hexdigest()}


def shards_sha256(prepared: Path) -> str:
    meta = json.loads((prepared / "meta.json").read_text())
    digest = hashlib.sha256()
    for s in meta["shards"]:
        with open(prepared / s["file"], "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def run(cmd: list[str], log: Path) -> tuple[float, int]:
    """Wall seconds and peak resident bytes of a child process (its output in `log`)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return wall, usage.ru_maxrss * 1024


def prepare(work: Path, name: str, settings: list[str]) -> tuple[float, int, Path]:
    out = work / f"prepared-{name}"
    shutil.rmtree(out, ignore_errors=True)
    wall, rss = run([sys.executable, "-m", "lmforge", "prepare", *settings, f"data.prepared_dir={out}", "--no-progress"],
                    work / f"{name}.log")
    return wall, rss, out


def open_seconds(prepared: Path, cache: Path) -> float:
    """Seconds of load_prepared on `prepared` in a fresh process."""
    code = ("import sys, time\nfrom lmforge.data.shards import load_prepared\nt = time.perf_counter()\n"
            "load_prepared(sys.argv[1])\nprint(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code, str(prepared)], capture_output=True, text=True, check=True,
                          env={**os.environ, "LMFORGE_CACHE_DIR": str(cache)})
    return float(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--kinds", nargs="+", default=["bpe", "char"])
    ap.add_argument("--vocab-size", type=int, default=32768)
    ap.add_argument("--work", type=Path, default=Path("/tmp/lmforge-prepare-bench"))
    args = ap.parse_args()
    corpus = args.work / "corpus"
    build(corpus, max(args.sizes_mb) * 1_000_000 // PART_BYTES)
    rows, opens = [], []
    for size in args.sizes_mb:
        files = sorted(corpus.glob("part-*.jsonl"))[:size * 1_000_000 // PART_BYTES]
        path = files[0] if len(files) == 1 else corpus / f"first-{len(files)}"
        if len(files) > 1 and not path.is_dir():  # a folder of links: the corpus is exactly these parts
            path.mkdir()
            for f in files:
                (path / f.name).symlink_to(f)
        for kind in args.kinds:
            tag = f"{size}mb-{kind}"
            base = [f"data.path={path}", f"tokenizer.kind={kind}", f"tokenizer.vocab_size={args.vocab_size}"]
            whole_s, whole_rss, whole = prepare(args.work, tag, base)
            tokenizer = args.work / f"tokenizer-{tag}.json"
            shutil.copyfile(whole / "tokenizer.json", tokenizer)
            enc_s, enc_rss, encoded = prepare(args.work, f"{tag}-encode", [*base, f"tokenizer.path={tokenizer}"])
            runs = [("prepare, tokenizer trained", whole_s, whole_rss, whole),
                    ("prepare, tokenizer given", enc_s, enc_rss, encoded)]
            if size == args.sizes_mb[0]:
                lib_s, lib_rss, lib = prepare(args.work, f"{tag}-tokenizers",
                                              [*base, f"tokenizer.path={tokenizer}", "data.encoder=tokenizers"])
                runs.append(("prepare, tokenizer given, data.encoder=tokenizers", lib_s, lib_rss, lib))
            ref_log = args.work / f"{tag}-reference.json"
            ref_s, ref_rss = run([sys.executable, __file__, "--reference", str(tokenizer), str(ref_log),
                                  *map(str, files)], args.work / f"{tag}-reference.log")
            ref = json.loads(ref_log.read_text())
            mb = ref["bytes"] / 1e6
            rows.append((size, kind, "tokenizers encode_batch (calls only)", ref["seconds"], ref_rss, mb / ref["seconds"],
                         1.0, "reference"))
            for label, seconds, rss, out in runs:
                same = "identical" if shards_sha256(out) == ref["sha256"] else "DIFFERENT"
                rows.append((size, kind, label, seconds, rss, mb / seconds, ref["seconds"] / seconds, same))
            cache = args.work / "hash-cache"
            shutil.rmtree(cache, ignore_errors=True)
            opens.append((size, kind, open_seconds(encoded, cache), open_seconds(encoded, cache)))
            for _, _, _, out in runs:
                shutil.rmtree(out)
    print("| corpus | tokenizer | what | seconds | MB/s | vs encode_batch | peak RSS | token ids |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for size, kind, label, seconds, rss, mbs, ratio, same in rows:
        print(f"| {size} MB | {kind} | {label} | {seconds:.1f} | {mbs:.1f} | {ratio:.2f}x | {rss / 1e6:,.0f} MB | {same} |")
    print("\n| corpus | tokenizer | open, shards hashed (s) | open again, checks remembered (s) |")
    print("|---|---|---:|---:|")
    for size, kind, first, again in opens:
        print(f"| {size} MB | {kind} | {first:.2f} | {again:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--reference":
        tokenizer_json, out = sys.argv[2], Path(sys.argv[3])
        out.write_text(json.dumps(reference(tokenizer_json, sys.argv[4:])))
    else:
        main()
