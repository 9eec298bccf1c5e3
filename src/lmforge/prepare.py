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
import sys
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


def prepare(cfg: Config, out_dir: Path | None = None, progress: bool = True) -> Path:
    """Train (or load) the tokenizer, encode the corpus into token shards, write meta.json; returns the dir."""
    out = Path(out_dir) if out_dir is not None else prepared_dir(cfg)
    where = cfg.data.path or DEFAULT_SOURCE
    progress = progress and sys.stderr.isatty()  # bars would only clutter logs and pipes
    if cfg.tokenizer.path:
        tokenizer = Tokenizer.load(cfg.tokenizer.path)
    else:
        pieces = corpus_pieces(cfg, cfg.data, ReadStats(), PIECE_CHARS)
        corpus_bytes = sum(s.get("bytes", 0) for s in stat_sources(cfg.data.model_copy(update={"val_path": None,
                                                                                          "test_path": None})))
        budget = cfg.tokenizer.train_sample_bytes
        texts = (first_bytes((piece for piece, _ in pieces), budget) if is_hub(cfg.data.path)
                 else sample_evenly((piece for piece, _ in pieces), corpus_bytes, budget))
        first = next(texts, None)
        if first is None:
            raise DataError(f"{where}: corpus is empty")
        tokenizer = Tokenizer.train(cfg.tokenizer, itertools.chain([first], texts), progress=progress)

    stats = ReadStats()
    total_bytes = sum(s.get("bytes", 0) for s in stat_sources(cfg.data)) or None
    # the corpus, then any separate validation and test corpora, one after another in the same shards
    parts = [("train", cfg.data)] + [(name, cfg.data.model_copy(update={"path": path, "split": split}))
                                     for name, path, split in (("val", cfg.data.val_path, cfg.data.val_split),
                                                               ("test", cfg.data.test_path, cfg.data.test_split))
                                     if path]
    with atomic_dir(out) as tmp:
        writer = ShardWriter(tmp, cfg.data.shard_tokens)
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"encoding {where}", disable=not progress)
        bounds = {}
        try:
            for name, part in parts:
                documents = stats.documents
                start = writer.total
                # corpus_pieces runs the recipe's clean and curate stages, if it names them
                pieces = corpus_pieces(cfg, part, stats, PIECE_CHARS)
                if name == "train" and cfg.augment is not None:  # the training corpus only
                    pieces = augmented_pieces(cfg, pieces, tmp, PIECE_CHARS, progress)
                for tokens in encode_pieces(tokenizer, pieces, cfg.data.encode_batch_bytes):
                    writer.write(tokens)
                    bar.update(stats.bytes_read - bar.n)
                if stats.documents == documents:
                    raise DataError(f"{part.path or where}: corpus is empty")
                bounds[name] = (start, writer.total)
        finally:
            writer.close()
            bar.close()

        if "val" not in bounds:  # nanoGPT's convention: the last val_fraction of the stream
            n = bounds["train"][1]
            n_train = int(n * (1 - cfg.data.val_fraction))
            bounds["train"], bounds["val"] = (0, n_train), (n_train, n)
        total = writer.total
        for split, (lo, hi) in bounds.items():
            if hi - lo < 2:
                raise DataError(f"{where}: the {'validation' if split == 'val' else split} split has {hi - lo} "
                                f"tokens of {total} (data.val_fraction={cfg.data.val_fraction}); it needs at least 2")
        tokenizer.save(tmp / "tokenizer.json")
        atomic_write_json(tmp / "meta.json", {
            "version": META_VERSION,
            "data_key": cfg.data_key(),
            "tokenizer_sha256": tokenizer.sha256,
            "dtype": token_dtype(tokenizer.vocab_size).name,
            "vocab_size": tokenizer.vocab_size,
            "eod_id": tokenizer.eod_id,
            "shards": writer.shards,
            "total_tokens": writer.total,
            "splits": {name: ranges(writer.shards, lo, hi) for name, (lo, hi) in bounds.items()},
            "documents": stats.documents,
            "empty_documents": stats.empty_documents,
            "replaced_chars": stats.replaced_chars,
            "bytes_read": stats.bytes_read,
            "sources": stats.sources,
            "config": {"data": cfg.data.model_dump(mode="json"), "tokenizer": cfg.tokenizer.model_dump(mode="json")},
        })
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
