"""Throughput and peak memory of `lmforge clean` (lm and classic presets) and `lmforge curate`, and the
near-duplicate precision and recall of curation, on a corpus built from ../shared/data.

The corpus: distinct paragraphs of real text (WikiText-2, Tiny Shakespeare, SQuAD contexts, SST-2
sentences, the WMT17 German reference; cut at 1,500 characters) drawn 3 to 8 at a time into HTML pages (title, style, script, entities), written
as jsonl until it reaches the largest size asked; smaller sizes are its prefixes. 1% of the pages are
exact copies of an earlier page, 2% near copies (1% of the words replaced, new title and script). Each
run is the CLI in a subprocess; peak memory is the largest sum of resident memory over the process and
its workers (PSS), sampled every 50 ms.

    .venv/bin/python benchmarks/clean_throughput.py [--sizes-mb 50 200] [--work /tmp/lmforge-bench]

Prints a markdown table. Run it alone: on 2 cores anything else running skews the figures.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


MAX_PARAGRAPH = 1500  # longer paragraphs are cut, so that no shared paragraph makes two pages near duplicates


def shared_paragraphs() -> list[str]:
    """Paragraphs of real text from ../shared/data, in a fixed order (prepare_throughput.py builds on them too)."""
    wiki = "".join((SHARED / "wikitext-2" / "raw" / f"wiki.{s}.raw").read_text(encoding="utf-8") for s in ("valid", "test"))
    pool = [p.strip() for p in wiki.splitlines() if len(p.strip()) > 100 and not p.strip().startswith("=")]
    pool += [p.strip() for p in (SHARED / "tinyshakespeare" / "input.txt").read_text().split("\n\n") if len(p) > 100]
    squad = json.loads((SHARED / "squad" / "dev-v1.1.json").read_text())
    pool += list(dict.fromkeys(p["context"] for a in squad["data"] for p in a["paragraphs"]))
    sst = [line.split("\t")[0] for line in (SHARED / "sst2" / "train.tsv").read_text().splitlines()[1:]]
    pool += [" ".join(sst[i:i + 6]) for i in range(0, len(sst), 6)]
    german = (SHARED / "mt" / "wmt17-en-de" / "newstest2017-ende-ref.de").read_text(encoding="utf-8").splitlines()
    pool += [" ".join(german[i:i + 5]) for i in range(0, len(german), 5)]
    return pool


def paragraphs() -> list[str]:
    return [p[i:i + MAX_PARAGRAPH] for p in dict.fromkeys(shared_paragraphs()) for i in range(0, len(p), MAX_PARAGRAPH)]


def page(paras: list[str], n: int) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paras)
    title = html.escape(" ".join(paras[0].split()[:6]))
    return (f"<!DOCTYPE html><html><head><title>{title}</title><style>body {{font-family: serif}}</style>"
            f"<script>var page = {n}; if (page < 2) {{ track('&lt;'); }}</script></head>"
            f"<body><nav><a href='/'>Home</a> &middot; <a href='/about'>About</a></nav><h1>{title}</h1>\n{body}"
            f"<footer>&copy; 2026 Example</footer></body></html>")


def build(path: Path, size_mb: int, seed: int = 0) -> None:
    """The planted-duplicate corpus (see the module doc)."""
    rng = random.Random(seed)
    pool = paragraphs()
    words = " ".join(pool[:2000]).split()
    originals: list[list[str]] = []
    written, n = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size_mb * 1_000_000:
            r = rng.random()
            if originals and r < 0.01:
                j = rng.randrange(len(originals))
                record = {"text": page(originals[j], j), "id": n, "copy_of": j, "kind": "exact"}
            elif originals and r < 0.03:
                j = rng.randrange(len(originals))
                paras = [p.split(" ") for p in originals[j]]
                for _ in range(max(1, sum(map(len, paras)) // 100)):
                    para = rng.choice(paras)
                    para[rng.randrange(len(para))] = rng.choice(words)
                record = {"text": page([" ".join(p) for p in paras], n + 10**9), "id": n, "copy_of": j, "kind": "near"}
            else:
                paras = rng.sample(pool, rng.randint(3, 8))
                record = {"text": page(paras, n), "id": n, "copy_of": None, "kind": None}
                originals.append(paras)
                record["original"] = len(originals) - 1
            line = json.dumps(record, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode())
            n += 1


def prefix(src: Path, dst: Path, size_mb: int) -> None:
    written = 0
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line in f:
            if written >= size_mb * 1_000_000:
                break
            out.write(line)
            written += len(line.encode())


def tree_pss(pid: int) -> int:
    """Proportional resident bytes (PSS: pages shared by forked workers counted once) of a process and all
    its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:"))) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def measure(args: list[str]) -> tuple[float, int]:
    """Run `python -m lmforge args`; (wall seconds, peak PSS of its process tree)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", *args, "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss(proc.pid))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    out, err = proc.communicate()
    done.set()
    poller.join()
    if proc.returncode:
        raise SystemExit(f"lmforge {' '.join(args)} failed:\n{err}")
    return time.perf_counter() - start, peak


def near_dup_scores(src: Path, out: Path) -> dict:
    """Precision and recall of the removed documents against the planted copies."""
    kept = {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()}
    rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines()]
    removed = {r["id"] for r in rows} - kept
    planted = {r["id"]: r["kind"] for r in rows if r["kind"]}
    hit = removed & set(planted)
    near = {i for i, k in planted.items() if k == "near"}
    exact = {i for i, k in planted.items() if k == "exact"}
    return {"precision": len(hit) / max(len(removed), 1), "recall": len(hit) / max(len(planted), 1),
            "near_recall": len(removed & near) / max(len(near), 1), "exact_recall": len(removed & exact) / max(len(exact), 1),
            "planted": len(planted), "removed": len(removed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--work", type=Path, default=Path("/tmp/lmforge-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = sorted(args.sizes_mb)
    corpora = {size: args.work / f"pages-{size}mb.jsonl" for size in sizes}
    build(corpora[sizes[-1]], sizes[-1])
    for size in sizes[:-1]:
        prefix(corpora[sizes[-1]], corpora[size], size)

    runs = []
    for size in sizes:
        runs.append((f"clean --preset lm ({size} MB)", size, ["clean", corpora[size], args.work / f"lm-{size}.jsonl", "--preset", "lm"]))
    runs.append((f"clean --preset classic ({sizes[0]} MB)", sizes[0],
                 ["clean", corpora[sizes[0]], args.work / f"classic-{sizes[0]}.jsonl", "--preset", "classic"]))
    for size in sizes:
        runs.append((f"curate --clean lm ({size} MB)", size, ["curate", corpora[size], args.work / f"cur-{size}.jsonl", "--clean", "lm"]))
    dedup_out = args.work / f"dedup-{sizes[-1]}.jsonl"
    runs.append((f"curate --clean lm quality=null, dedup only ({sizes[-1]} MB)", sizes[-1],
                 ["curate", corpora[sizes[-1]], dedup_out, "--clean", "lm", "quality=null"]))

    line = args.work / "one-line.txt"
    with open(line, "w") as f:
        pool = paragraphs()
        while f.tell() < 100_000_000:
            f.write(" ".join(pool[:500]).replace("\n", " ") + " ")
        f.write("\n")
    runs.append(("clean --preset lm, one 100 MB line", 100, ["clean", line, args.work / "one-line.out.txt",
                                                              "--preset", "lm", "data.txt_documents=line"]))

    print("| run | input MB (text) | docs in → out | s | MB/s | docs/s | peak memory (MB, PSS of all processes) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, _, cmd in runs:
        seconds, peak = measure([str(c) for c in cmd])
        out = Path(str(cmd[2]))
        report = json.loads(out.with_name(out.name.removesuffix(out.suffix) + ".report.json").read_text())
        mb = report["bytes_in"] / 1e6
        print(f"| {name} | {mb:,.0f} | {report['documents_in']:,} → {report['documents_out']:,} | {seconds:.1f} | "
              f"{mb / report['duration_s']:.1f} | {report['documents_in'] / report['duration_s']:,.0f} | {peak / 1e6:,.0f} |",
              flush=True)
    scores = near_dup_scores(corpora[sizes[-1]], dedup_out)
    print(f"\nNear-duplicate detection on the {sizes[-1]} MB corpus (dedup only): {json.dumps(scores)}")


if __name__ == "__main__":
    main()
