"""Near-duplicate recall of `lmforge curate` against the true Jaccard similarity of a pair (issue 18, item 8).

Pages are 300-word windows of real text from ../shared/data (WikiText-2 valid and test, Tiny Shakespeare,
SQuAD dev contexts), taken end to end so that no two share a passage. Each page gets, with probability 0.7,
one copy edited word by word (a word replaced by another of the corpus, deleted, inserted, or two
neighbours swapped, at random places) until the exact Jaccard similarity of the two pages' shingle sets
falls below a target drawn uniformly in [0.70, 1.00): the copies spread over the bins 0.70-0.75 ... 0.95-1.00.
The shingles are the curator's: `shingle_size`-word windows of the lowercased `\\w+` words. The pages come
first in corpus order, then the copies shuffled; curation runs the real code (`lmforge.text.pipeline.curate`,
dedup only: quality filters off) in a subprocess, once per code version, and its output is scored:

- recall per bin: the share of the bin's copies removed (their page is always the earlier);
- precision: the share of removed documents whose true Jaccard with some earlier kept document is at least
  `near_threshold`, the similarity the setting promises; and the distinct pages removed (a page, not a copy);
- docs/s of the whole curate call (read, shingle, MinHash, index, write), after a warm-up run on 20 pages
  that pays the imports, and the scratch database's size.

    PYTHONPATH=src .venv/bin/python benchmarks/near_dup_recall.py [--baseline REF] [--repeats 3]

`--baseline REF` also runs the code of the git commit REF (its `src/` extracted to a temp folder), on the
same corpus, alternating with the working tree's code, so that the two speeds are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAGE_WORDS = 300
COPY_SHARE = 0.7
BINS = [0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 1.00]
WORD = re.compile(r"\w+")  # the curator's words (lmforge.text.dedup), lowercased


def source_words() -> list[list[str]]:
    """The whitespace-separated words of each source text, in order."""
    wiki = [(SHARED / "wikitext-2" / "raw" / f"wiki.{s}.raw").read_text(encoding="utf-8") for s in ("valid", "test")]
    shakespeare = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    squad = json.loads((SHARED / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    contexts = "\n".join(dict.fromkeys(p["context"] for a in squad["data"] for p in a["paragraphs"]))
    return [text.split() for text in wiki + [shakespeare, contexts]]


def shingles(words: list[str], k: int) -> set[tuple[str, ...]]:
    tokens = WORD.findall(" ".join(words).lower())
    k = min(k, len(tokens))
    return {tuple(tokens[i:i + k]) for i in range(len(tokens) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def edited_copy(rng: random.Random, words: list[str], vocab: list[str], target: float, k: int) -> tuple[list[str], float]:
    """Edit a copy of `words` until its Jaccard with them is below `target`; (the copy, its exact Jaccard)."""
    base, copy = shingles(words, k), list(words)
    j = 1.0
    while j >= target:
        i = rng.randrange(len(copy))
        op = rng.random()
        if op < 0.4:
            copy[i] = rng.choice(vocab)
        elif op < 0.6 and len(copy) > k + 1:
            del copy[i]
        elif op < 0.8:
            copy.insert(i, rng.choice(vocab))
        elif i + 1 < len(copy):
            copy[i], copy[i + 1] = copy[i + 1], copy[i]
        j = jaccard(base, shingles(copy, k))
    return copy, j


def build(work: Path, seed: int, k: int) -> tuple[Path, list[dict]]:
    rng = random.Random(seed)
    pages = [words[i:i + PAGE_WORDS] for words in source_words()
             for i in range(0, len(words) - PAGE_WORDS + 1, PAGE_WORDS)]
    vocab = sorted({w for page in pages for w in page})
    rows = [{"id": f"p{n}", "text": " ".join(page)} for n, page in enumerate(pages)]
    copies = []
    for n, page in enumerate(pages):
        if rng.random() < COPY_SHARE:
            copy, j = edited_copy(rng, page, vocab, rng.uniform(BINS[0], BINS[-1]), k)
            copies.append({"id": f"c{n}", "text": " ".join(copy), "of": f"p{n}", "jaccard": j})
    rng.shuffle(copies)
    path = work / "pages.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for row in rows + copies:
            f.write(json.dumps({"id": row["id"], "text": row["text"]}) + "\n")
    return path, rows + copies


def measure(corpus: str, out: str) -> None:
    """Run in a subprocess with PYTHONPATH at one code version: curate, then print seconds and database size."""
    import importlib

    from lmforge.config import CurateConfig
    from lmforge.text.pipeline import curate

    curate_module = importlib.import_module("lmforge.text.curate")  # the package's `curate` hides the module
    sizes = []
    close = curate_module.Scratch.close

    def close_and_measure(scratch):  # the database is removed on close: its size is read just before
        if scratch._dir is not None:
            sizes.append(sum(p.stat().st_size for p in Path(scratch._dir).iterdir()))
        close(scratch)

    # a first run on a few pages pays the imports and set-up, so that the timed run measures documents
    warm = Path(out).with_suffix(".warm.jsonl")
    with open(corpus, encoding="utf-8") as f:
        warm.write_text("".join(next(f) for _ in range(20)), encoding="utf-8")
    curate(warm, warm.with_suffix(".out.jsonl"), CurateConfig(quality=None), workers=1, progress=False)
    curate_module.Scratch.close = close_and_measure
    start = time.perf_counter()
    report = curate(corpus, out, CurateConfig(quality=None), workers=1, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "documents_in": report.documents_in, "db_bytes": sum(sizes),
                      "extra": report.as_dict().get("extra", {})}))


def run_version(src: Path, corpus: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, __file__, "--measure", str(corpus), str(out)], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"curate with {src} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def score(docs: list[dict], kept_ids: set[str], threshold: float, k: int) -> dict:
    sets = {d["id"]: shingles(d["text"].split(), k) for d in docs}
    postings: dict[tuple, list[int]] = {}
    removed = true_positive = distinct_lost = 0
    for n, d in enumerate(docs):
        if d["id"] not in kept_ids:
            removed += 1
            earlier = {m for s in sets[d["id"]] for m in postings.get(s, ())}
            best = max((jaccard(sets[d["id"]], sets[docs[m]["id"]]) for m in earlier), default=0.0)
            true_positive += best >= threshold
            distinct_lost += d["id"].startswith("p")
        else:
            for s in sets[d["id"]]:
                postings.setdefault(s, []).append(n)
    curve = []
    for lo, hi in zip([0.0] + BINS, BINS):  # the first bin: copies whose last edit overshot below 0.70
        copies = [d for d in docs if "jaccard" in d and lo <= d["jaccard"] < hi]
        curve.append((lo, hi, len(copies), sum(d["id"] not in kept_ids for d in copies)))
    return {"removed": removed, "precision": true_positive / removed if removed else 1.0,
            "distinct_lost": distinct_lost, "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git commit whose code also runs, side by side")
    parser.add_argument("--repeats", type=int, default=3, help="curate runs per code version (timing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure)
    sys.path.insert(0, str(ROOT / "src"))
    from lmforge.config import CurateConfig

    cfg = CurateConfig()
    with tempfile.TemporaryDirectory(prefix="near-dup-") as tmp:
        work = Path(tmp)
        corpus, docs = build(work, args.seed, cfg.shingle_size)
        versions = {"this tree": ROOT / "src"}
        if args.baseline:
            (work / "baseline").mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "src"], capture_output=True,
                                     check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(work / "baseline")], input=archive, check=True)
            versions = {f"baseline {args.baseline}": work / "baseline" / "src", **versions}
        runs: dict[str, list[dict]] = {name: [] for name in versions}
        for r in range(args.repeats):
            for v, (name, src) in enumerate(versions.items()):  # alternating: load on the machine hits both alike
                runs[name].append(run_version(src, corpus, work / f"v{v}-r{r}.jsonl"))
        copies = sum("jaccard" in d for d in docs)
        print(f"{len(docs) - copies} distinct pages of {PAGE_WORDS} words, {copies} edited copies; "
              f"near_threshold {cfg.near_threshold}, num_perm {cfg.num_perm}, shingle_size {cfg.shingle_size}")
        scores = {}
        for v, name in enumerate(runs):
            outputs = {(work / f"v{v}-r{r}.jsonl").read_bytes() for r in range(args.repeats)}
            assert len(outputs) == 1, f"{name}: the runs' outputs differ"
            out = work / f"v{v}-r0.jsonl"
            kept = {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()}
            scores[name] = score(docs, kept, cfg.near_threshold, cfg.shingle_size)
        names = list(runs)
        print("\n| true Jaccard | copies | " + " | ".join(f"recall, {n}" for n in names) + " |")
        print("|---|---:|" + "---:|" * len(names))
        for i, (lo, hi, count, _) in enumerate(scores[names[0]]["curve"]):
            cells = [f"{scores[n]['curve'][i][3] / count:.3f}" if count else "–" for n in names]
            print(f"| {f'{lo:.2f}–{hi:.2f}' if lo else f'< {hi:.2f}'} | {count} | " + " | ".join(cells) + " |")
        print("\n| code | removed | precision (true J ≥ threshold) | distinct pages removed | recall, J ≥ 0.85 |"
              " docs/s (runs) | median docs/s; median of the runs' ratios to the first code's run beside them |"
              " scratch DB bytes per kept doc |")
        print("|---|---:|---:|---:|---:|---|---:|---:|")
        reference = [r["documents_in"] / r["seconds"] for r in runs[names[0]]]
        for name in names:
            s, version_runs = scores[name], runs[name]
            high = [c for c in s["curve"] if c[0] >= 0.85 - 1e-9]
            recall = sum(c[3] for c in high) / sum(c[2] for c in high)
            rates = [r["documents_in"] / r["seconds"] for r in version_runs]
            kept = len(docs) - s["removed"]
            print(f"| {name} | {s['removed']} | {s['precision']:.4f} | {s['distinct_lost']} | {recall:.4f} | "
                  f"{', '.join(f'{r:,.0f}' for r in rates)} | {statistics.median(rates):,.0f}, "
                  f"{statistics.median(r / q for r, q in zip(rates, reference)):.2f}x | {version_runs[0]['db_bytes'] / kept:,.0f} |")


if __name__ == "__main__":
    main()
