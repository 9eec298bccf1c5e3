"""The prepare recipe: corpora → clean → curate → augment → tokenizer → shards.

`prepare(cfg)` reads the corpus (data.path, then any data.val_path and data.test_path), runs the recipe's
clean and curate stages on each (`corpus_pieces`) and its augment stage on the training corpus only, trains
the tokenizer on the cleaned training corpus (or loads tokenizer.path) and encodes everything into the
token shards of data/shards.py. Without data.val_path, validation is the last `data.val_fraction` of the
token stream, nanoGPT's convention: train is the first int(n * (1 - val_fraction)) tokens.

The corpus is streamed twice (tokenizer training on `tokenizer.train_sample_bytes` sampled evenly over
it, then encoding), in bounded pieces and batches, so memory does not grow with the corpus. The directory is
built under a temporary name and renamed when complete. `ensure_prepared` reuses it while it is current,
so that `lmforge train` and the bake-off prepare only what they have not seen, and holds a lock beside it
(`.NAME.lock`) while it builds, so that processes preparing the same data at once build it once.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from lmforge.augment.stage import augmented_pieces
from lmforge.config import Config, DataConfig
from lmforge.corpora import DEFAULT_SOURCE, ReadStats, cut_pieces, is_hub, iter_pieces, stat_sources
from lmforge.data.shards import (META_VERSION, PIECE_CHARS, ShardWriter, encode_pieces, is_current, prepared_dir,
                                 ranges, token_dtype)
from lmforge.errors import ConfigError, DataError
from lmforge.io import atomic_dir, atomic_write_json, exclusive
from lmforge.text.clean import Cleaner
from lmforge.text.curate import Analyser, Curator
from lmforge.text.parallel import default_workers
from lmforge.text.pipeline import TextTask, run_docs
from lmforge.text.records import Doc, docs_of_pieces
from lmforge.text.report import Report
from lmforge.tokenizer import Tokenizer


def _pieces_of(docs: Iterable[tuple[Doc, str]], max_chars: int) -> Iterator[tuple[str, bool]]:
    """Written documents as prepare's (piece, ends_document) stream, cut again to max_chars."""
    held: str | None = None  # the current document's latest piece, yielded once it is known not to be its last
    for doc, _ in docs:
        for piece in cut_pieces(doc.text, max_chars) if doc.text else ():
            if held is not None:
                yield held, False
            held = piece
        if doc.last and held is not None:
            yield held, True
            held = None


def corpus_pieces(cfg: Config, data: DataConfig, stats: ReadStats, max_chars: int) -> Iterator[tuple[str, bool]]:
    """What `prepare` tokenizes of one corpus (`data`: the main, val or test one): `iter_pieces(data)`,
    through cfg's clean and curate stages when the recipe names them. Reading statistics, and so prepare's
    staleness check, stay the raw corpus's; each corpus is deduplicated on its own."""
    if cfg.clean is None and cfg.curate is None:
        yield from iter_pieces(data, stats, max_chars)
        return
    stage = cfg.curate
    if stage is not None and (stage.val_fraction or stage.test_fraction or stage.balance != "none"):
        raise ConfigError("curate: prepare holds out data.val_fraction itself and does not balance labels; "
                          "curate.val_fraction, test_fraction and balance are for `lmforge curate`")
    task = TextTask(Cleaner.from_config(cfg.clean) if cfg.clean is not None else None,
                    Analyser(stage) if stage is not None else None)
    curator = Curator(stage, None) if stage is not None else None
    report = Report("prepare", data.path or "", [], {}, default_workers())
    docs = docs_of_pieces(iter_pieces(data, stats, stage.max_chars if stage is not None else max_chars,
                                      require_text=False))  # the cleaner repairs and counts bad bytes
    try:
        yield from _pieces_of(run_docs(docs, task, curator, report, report.workers), max_chars)
    finally:
        if curator is not None:
            curator.close()


def sample_evenly(texts: Iterable[str], corpus_bytes: int, budget: int) -> Iterator[str]:
    """About `budget` bytes of the texts, spread evenly over a corpus of `corpus_bytes` (its size on disk):
    a text is kept when the credit earned at budget / corpus_bytes per byte read covers it, so every stretch of
    the corpus gives its share, deterministically and in one streaming pass. A corpus no larger than the budget
    is kept whole, so its tokenizer is what it always was. Compressed or cleaned text is smaller than its
    files: its share ends up a little under the budget."""
    if not corpus_bytes or corpus_bytes <= budget:
        yield from texts
        return
    credit = 0  # in bytes x corpus_bytes, so that the arithmetic is exact
    for text in texts:
        size = len(text.encode("utf-8"))
        credit += size * budget
        if credit >= size * corpus_bytes:
            credit -= size * corpus_bytes
            yield text


def first_bytes(texts: Iterable[str], budget: int) -> Iterator[str]:
    """The texts up to about `budget` bytes: a streamed hf: corpus has no size to spread a sample over,
    and reading all of a hub dataset to train a tokenizer may never end."""
    taken = 0
    for text in texts:
        if taken >= budget:
            return
        taken += len(text.encode("utf-8", "surrogatepass"))
        yield text


@dataclass(frozen=True)
class Partition:
    """Part `index` (from 0) of `count`: `lmforge prepare --partition I/N`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Partition":
        index, slash, count = text.partition("/")
        if not (slash and index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise ConfigError(f"--partition: expected I/N with 0 <= I < N (0/4 is the first of four parts), got {text!r}")
        return cls(int(index), int(count))

    @property
    def name(self) -> str:
        return f"part-{self.index}-of-{self.count}"

    def files(self, sources: list[dict]) -> list[str]:
        """This part's share of the corpus's files: whole files, in order, each going to the part that holds the
        middle of its bytes, so that the N parts, one after another, are the corpus in order."""
        total = sum(s["bytes"] for s in sources) or 1
        before, mine = 0, []
        for s in sources:
            if min(self.count - 1, self.count * (2 * before + s["bytes"]) // (2 * total)) == self.index:
                mine.append(s["path"])
            before += s["bytes"]
        return mine


def parts_dir(out: Path) -> Path:
    """Where the parts of a partitioned prepare of `out` go (and are merged from): `<out>.parts/part-I-of-N`."""
    return out.with_name(out.name + ".parts")


def training_corpora(data: DataConfig) -> list[tuple[str | None, DataConfig]]:
    """The training corpora of a recipe as (source name, data settings that read it): data.path alone (name
    None), or each of data.sources in order."""
    if data.sources is None:
        return [(None, data.model_copy(update={"val_path": None, "test_path": None}))]
    return [(source.name, data.of_source(source)) for source in data.sources]


def _named(source: str | None, pieces: Iterator[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
    """A corpus's pieces; for a source of a mixture, its bad input is reported under the source's name."""
    try:
        yield from pieces
    except DataError as e:
        if source is None:
            raise
        raise DataError(f"data.sources {source!r}: {e}") from None


def _tokenizer(cfg: Config, progress: bool) -> Tokenizer:
    """tokenizer.path, or a tokenizer trained on a sample spread evenly over the whole training corpus (every
    source of a mixture, by bytes, not by weight)."""
    if cfg.tokenizer.path:
        return Tokenizer.load(cfg.tokenizer.path)
    corpora = training_corpora(cfg.data)
    pieces = itertools.chain.from_iterable(_named(name, corpus_pieces(cfg, data, ReadStats(), PIECE_CHARS))
                                           for name, data in corpora)
    corpus_bytes = sum(s.get("bytes", 0) for _, data in corpora for s in stat_sources(data))
    budget = cfg.tokenizer.train_sample_bytes
    texts = (first_bytes((piece for piece, _ in pieces), budget) if any(is_hub(data.path) for _, data in corpora)
             else sample_evenly((piece for piece, _ in pieces), corpus_bytes, budget))
    first = next(texts, None)
    if first is None:
        raise DataError(f"{cfg.data.path or DEFAULT_SOURCE}: corpus is empty")
    return Tokenizer.train(cfg.tokenizer, itertools.chain([first], texts), progress=progress)


def _check_partitionable(cfg: Config) -> None:
    if cfg.data.sources is not None:
        raise ConfigError("--partition: a mixture of data.sources is prepared whole; partition one corpus of many files")
    if cfg.data.path is None or is_hub(cfg.data.path):
        raise ConfigError("--partition: the built-in corpus and a hub dataset are one source each; partition a "
                          "corpus of several files")
    if cfg.curate is not None or cfg.augment is not None:
        raise ConfigError("--partition: the recipe's curate or augment stage works across the whole corpus "
                          "(deduplication, sampling); run lmforge curate/augment first and prepare its output in parts")
    if not cfg.tokenizer.path and cfg.tokenizer.kind in ("wordpiece", "unigram"):
        raise ConfigError(f"--partition: a {cfg.tokenizer.kind} tokenizer does not train to the same vocabulary on "
                          "every machine; train it once and set tokenizer.path")


def prepare(cfg: Config, out_dir: Path | None = None, progress: bool = True, partition: Partition | None = None) -> Path:
    """Train (or load) the tokenizer, encode the corpus into token shards, write meta.json; returns the dir.

    With `partition`, only that part's files are encoded (and, by the last part, the val and test corpora),
    into `parts_dir(out)/part-I-of-N`; the tokenizer is still trained on a sample of the whole corpus, the
    same on every machine. Without it, finished parts in `parts_dir(out)` are merged into `out` instead of
    encoding the corpus again."""
    out = Path(out_dir) if out_dir is not None else prepared_dir(cfg)
    if partition is not None:
        _check_partitionable(cfg)
    elif parts_dir(out).is_dir():
        return merge_parts(cfg, out)
    where = cfg.data.path or ("data.sources" if cfg.data.sources else DEFAULT_SOURCE)
    progress = progress and sys.stderr.isatty()  # bars would only clutter logs and pipes
    tokenizer = _tokenizer(cfg, progress)

    stats = ReadStats()
    # the corpus (or each source of a mixture, named), then any separate validation and test corpora, one after
    # another in the same shards
    parts: list[tuple[str, DataConfig, str | None]] = [("train", cfg.data, None)]
    if cfg.data.sources is not None:
        parts = [("train", data, name) for name, data in training_corpora(cfg.data)]
    if partition is not None:
        parts = [("train", cfg.data.model_copy(update={"path": path}), None) for path in partition.files(stat_sources(
            cfg.data.model_copy(update={"val_path": None, "test_path": None})))]
    if partition is None or partition.index == partition.count - 1:
        parts += [(name, cfg.data.model_copy(update={"path": path, "split": split, "sources": None}), None)
                  for name, path, split in (("val", cfg.data.val_path, cfg.data.val_split),
                                            ("test", cfg.data.test_path, cfg.data.test_split)) if path]
    total_bytes = sum(s.get("bytes", 0) for _, part, _ in parts for s in stat_sources(part.model_copy(update={
        "val_path": None, "test_path": None}))) or None
    target = out if partition is None else parts_dir(out) / partition.name
    with atomic_dir(target) as tmp:
        writer = ShardWriter(tmp, cfg.data.shard_tokens)
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"encoding {where}", disable=not progress)
        bounds: dict[str, list[int]] = {}
        source_bounds: dict[str, list[int]] = {}  # a mixture's sources, each [start, end] of the stream
        try:
            for name, part, source in parts:
                documents = stats.documents
                start = writer.total
                # corpus_pieces runs the recipe's clean and curate stages, if it names them
                pieces = _named(source, corpus_pieces(cfg, part, stats, PIECE_CHARS))
                if name == "train" and cfg.augment is not None:  # the training corpus only
                    pieces = augmented_pieces(cfg, pieces, tmp, PIECE_CHARS, progress)
                for tokens in encode_pieces(tokenizer, pieces, cfg.data.encode_batch_bytes, cfg.data.encoder):
                    writer.write(tokens)
                    bar.update(stats.bytes_read - bar.n)
                if stats.documents == documents and (partition is None or name != "train"):
                    # a part's one file may be empty
                    raise DataError(f"{f'data.sources {source!r}: ' if source else ''}{part.path or where}: corpus is empty")
                bounds[name] = [bounds.get(name, [start])[0], writer.total]
                if source is not None:
                    source_bounds[source] = [start, writer.total]
        finally:
            writer.close()
            bar.close()
        bounds.setdefault("train", [0, 0])
        counts = {k: getattr(stats, k) for k in ("documents", "empty_documents", "replaced_chars", "bytes_read")}
        if partition is not None:
            tokenizer.save(tmp / "tokenizer.json")
            atomic_write_json(tmp / "meta.json", {
                "partition": [partition.index, partition.count], "data_key": cfg.data_key(),
                "tokenizer_sha256": tokenizer.sha256, "shards": writer.shards, "total_tokens": writer.total,
                "bounds": bounds, **counts, "sources": stats.sources})
        else:
            _finish(tmp, cfg, tokenizer, writer.shards, bounds, counts, stats.sources, source_bounds)
    return target


def _held_out(lo: int, hi: int, val_fraction: float) -> dict[str, list[int]]:
    """nanoGPT's convention: the last val_fraction of tokens lo..hi is validation, the rest training."""
    cut = lo + int((hi - lo) * (1 - val_fraction))
    return {"train": [lo, cut], "val": [cut, hi]}


def _finish(tmp: Path, cfg: Config, tokenizer: Tokenizer, shards: list[dict], bounds: dict[str, list[int]],
            counts: dict[str, int], sources: list[dict], source_bounds: dict[str, list[int]] | None = None) -> None:
    """Write a prepared directory's tokenizer.json and meta.json, once its shards are in `tmp`. A mixture's
    sources (`source_bounds`) each hold out their own last val_fraction; the train and val splits are then the
    union of the sources' (in order), and meta.json's "mixture" gives each source's weight and splits."""
    where = cfg.data.path or ("data.sources" if cfg.data.sources else DEFAULT_SOURCE)
    total = sum(s["tokens"] for s in shards)
    per_source = {name: _held_out(lo, hi, cfg.data.val_fraction) for name, (lo, hi) in (source_bounds or {}).items()}
    if "val" not in bounds and not per_source:
        bounds.update(_held_out(*bounds["train"], cfg.data.val_fraction))
    checked = [(where, bounds)] if not per_source else [(f"data.sources {n!r}", b) for n, b in per_source.items()]
    if per_source and "test" in bounds:
        checked.append((where, {"test": bounds["test"]}))
    for what, spans in checked:
        for split, (lo, hi) in spans.items():
            if hi - lo < 2:
                raise DataError(f"{what}: the {'validation' if split == 'val' else split} split has {hi - lo} "
                                f"tokens of {total} (data.val_fraction={cfg.data.val_fraction}); it needs at least 2")
    splits = {name: ranges(shards, lo, hi) for name, (lo, hi) in bounds.items()}
    mixture = {}
    if per_source:
        weights = {s.name: s.weight for s in cfg.data.sources or ()}
        mixture = {name: {"weight": weights[name], "splits": {split: ranges(shards, lo, hi)
                                                              for split, (lo, hi) in spans.items()}}
                   for name, spans in per_source.items()}
        splits = {"train": [r for m in mixture.values() for r in m["splits"]["train"]],
                  "val": [r for m in mixture.values() for r in m["splits"]["val"]],
                  **{k: v for k, v in splits.items() if k == "test"}}
    tokenizer.save(tmp / "tokenizer.json")
    atomic_write_json(tmp / "meta.json", {
        "version": META_VERSION,
        "data_key": cfg.data_key(),
        "tokenizer_sha256": tokenizer.sha256,
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "vocab_size": tokenizer.vocab_size,
        "eod_id": tokenizer.eod_id,
        "shards": shards,
        "total_tokens": total,
        "splits": splits,
        **({"mixture": mixture} if mixture else {}),
        **counts,
        "sources": sources,
        # sources only when set, so that the meta.json of one corpus stays as it was
        "config": {"data": cfg.data.model_dump(mode="json", exclude=set() if cfg.data.sources else {"sources"}),
                   "tokenizer": cfg.tokenizer.model_dump(mode="json")},
    })


def merge_parts(cfg: Config, out: Path) -> Path:
    """Join the N parts of a partitioned prepare (`parts_dir(out)`) into the prepared directory `out`, as one
    prepare of the whole corpus would have written it: the same token stream and splits. The shards are
    hard-linked (copied across file systems); the parts are removed once `out` is in place."""
    folder = parts_dir(out)
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"part-\d+-of-\d+", p.name))
    counts = {int(name.rsplit("-", 1)[1]) for name in names}
    if len(counts) != 1:
        found = "no parts" if not counts else f"parts of {' and of '.join(map(str, sorted(counts)))}"
        raise DataError(f"{folder}: {found}; prepare every part of one partitioning (--partition I/N) or remove it")
    count = counts.pop()
    missing = [i for i in range(count) if f"part-{i}-of-{count}" not in names]
    if missing:
        raise DataError(f"{folder}: part {', '.join(map(str, missing))} of {count} missing; run lmforge prepare "
                        f"--partition {missing[0]}/{count} with the same recipe")
    sources = stat_sources(cfg.data)
    train_sources = stat_sources(cfg.data.model_copy(update={"val_path": None, "test_path": None}))
    metas = []
    for i in range(count):
        part = folder / f"part-{i}-of-{count}"
        try:
            meta = json.loads((part / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DataError(f"{part}: not a finished part (no readable meta.json); prepare it again") from None
        if meta.get("data_key") != cfg.data_key():
            raise DataError(f"{part}: prepared with other data or tokenizer settings; prepare it again")
        if meta.get("tokenizer_sha256") != (metas[0] if metas else meta).get("tokenizer_sha256"):
            raise DataError(f"{part}: its tokenizer differs from part 0's; set tokenizer.path and prepare the parts again")
        expected = Partition(i, count).files(train_sources)
        if [s["path"] for s in meta["sources"]][:len(expected)] != expected:
            raise DataError(f"{part}: holds other files than part {i} of {count} of {cfg.data.path or DEFAULT_SOURCE} "
                            f"(the corpus's files changed?); prepare the parts again")
        metas.append(meta)
    recorded = [s for meta in metas for s in meta["sources"]]
    if [(r["path"], r["bytes"], r["mtime_ns"]) for r in recorded] != [(c["path"], c["bytes"], c["mtime_ns"])
                                                                       for c in sources]:
        raise DataError(f"{folder}: the parts do not cover the corpus as it is now (a file added, removed or "
                        f"changed since); prepare the parts again")
    with atomic_dir(out) as tmp:
        shards: list[dict] = []
        bounds: dict[str, list[int]] = {}
        offset = 0
        for i, meta in enumerate(metas):
            part = folder / f"part-{i}-of-{count}"
            for s in meta["shards"]:
                name = f"tokens-{len(shards):05d}.bin"
                try:
                    os.link(part / s["file"], tmp / name)
                except OSError:  # another file system, or one without hard links
                    shutil.copyfile(part / s["file"], tmp / name)
                shards.append({**s, "file": name})
            for split, (lo, hi) in meta["bounds"].items():
                bounds[split] = [bounds.get(split, [offset + lo])[0], offset + hi]
            offset += meta["total_tokens"]
        totals = {k: sum(meta[k] for meta in metas) for k in ("documents", "empty_documents", "replaced_chars",
                                                             "bytes_read")}
        if not totals["documents"]:
            raise DataError(f"{cfg.data.path or DEFAULT_SOURCE}: corpus is empty")
        _finish(tmp, cfg, Tokenizer.load(folder / f"part-0-of-{count}" / "tokenizer.json"), shards, bounds, totals,
                recorded)
    shutil.rmtree(folder)
    return out


def ensure_prepared(cfg: Config, progress: bool = True) -> Path:
    """The prepared directory for cfg: reused when still current, else (re)built."""
    out = prepared_dir(cfg)
    if is_current(out, cfg):
        return out
    # two prepares of the same data at once (two trainings started together): the second waits for the first
    # and then finds its shards current, instead of encoding them again and replacing them under its reader
    with exclusive(out.with_name(f".{out.name}.lock"), f"preparing {out}"):
        if is_current(out, cfg):
            return out
        return prepare(cfg, out, progress)
