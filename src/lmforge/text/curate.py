"""Corpus curation: language and quality filters, exact and near-duplicate removal, label balancing and a
deterministic train/val/test split by document (docs/cleaning.md).

Work is split where it is cheap to move: workers (`Analyser`) compute per document its language, the first
quality filter it fails, an exact key and MinHash band keys; the main process (`Curator`) keeps the
duplicate index, assigns splits and resamples labels, in input order, so the result does not depend on
the number of workers.

A document's split comes from a hash of its cluster: the first document it duplicates (exactly, or as a
near duplicate: an LSH candidate whose shingle sets have Jaccard similarity `near_threshold` or more), else
itself. So exact and near duplicates kept with `near_dedup=false` share a split, and
with dedup on, no two kept documents are near duplicates at all. A copy made by `lmforge augment` goes to
its original's split (`OriginSplits`), however different its text. Balancing applies to the train split
(evaluation splits keep the natural label distribution), or to everything when there is no split; it
holds the documents in a scratch file and resamples them at the end.

What grows with the corpus (the duplicate index, the balancer's documents and draws) lives in a scratch
folder (`Scratch`), so that memory stays bounded whatever the corpus size. The folder is named after its
process, so that the next curation into the same folder removes one that a killed process left.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from lmforge.config import CurateConfig
from lmforge.io import pid_alive
from lmforge.text.dedup import DupIndex, MinHasher, band_layout, exact_key, open_scratch_db
from lmforge.text.quality import first_failure
from lmforge.text.records import AUGMENTED_FROM, Doc
from lmforge.text.report import Tally

_LANGID_CHARS = 2000  # language identification reads the start of a document: enough, and bounded
_LETTER = re.compile(r"[^\W\d_]")
_FLUSH_DRAWS = 1 << 15  # balance draws held in memory before they go to the scratch database
_NO_SHINGLES = np.empty(0, np.uint32)
_SCRATCH = ".lmforge-curate-"  # a scratch folder's name: this, the PID of the process using it, "-", random


@cache
def _language_identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify_language(text: str, min_score: float) -> tuple[str, float]:
    """(ISO 639-1 code, probability) by py3langid; "unknown" for text without letters or below min_score."""
    sample = text[:_LANGID_CHARS]
    if not _LETTER.search(sample):
        return "unknown", 0.0
    language, score = _language_identifier().classify(sample)
    return (language if score >= min_score else "unknown"), float(score)


@dataclass(slots=True)
class Signals:
    """What a worker found out about one document."""

    rejected: str | None  # the first filter it failed
    language: str | None
    exact: int
    bands: tuple[int, ...]
    shingles: np.ndarray  # sorted distinct shingle hashes, what a near-duplicate candidate is verified on


class Analyser:
    """Per-document work of curation, run in the workers."""

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg
        needs_bands = cfg.near_dedup or cfg.val_fraction > 0 or cfg.test_fraction > 0
        self.minhasher = MinHasher(cfg.num_perm, cfg.near_threshold, cfg.shingle_size) if needs_bands else None
        if cfg.languages:
            _language_identifier()  # load now, so that forked workers share it

    def __call__(self, text: str) -> Signals:
        cfg = self.cfg
        rejected = language = None
        if cfg.languages:
            language, _ = identify_language(text, cfg.min_language_score)
            if language not in cfg.languages:
                rejected = "unknown_language" if language == "unknown" else "language"
        if rejected is None and cfg.quality is not None:
            english = language in (None, "en")  # without a language filter, the text is taken as English
            rejected = first_failure(text, cfg.quality, english)
        if rejected is not None:
            return Signals(rejected, language, 0, (), _NO_SHINGLES)
        if self.minhasher is None:
            return Signals(None, language, exact_key(text), (), _NO_SHINGLES)
        shingles = self.minhasher.shingles(text)
        return Signals(None, language, exact_key(text), self.minhasher.band_keys(shingles), shingles)


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its arguments."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def clear_stale_scratch(parent: Path) -> None:
    """Remove the scratch folders in `parent` whose process is gone: a SIGKILL runs no cleanup, and each run
    makes a new folder, so without this every killed curation would leave one behind for good."""
    for leftover in parent.glob(_SCRATCH + "*"):
        m = re.match(rf"{re.escape(_SCRATCH)}(\d+)-", leftover.name)
        if m and not pid_alive(int(m.group(1))) and leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)


class Scratch:
    """A temporary folder for what curation holds per document: an SQLite database and the balancer's
    documents. It is made at first use, so that a bad output folder fails on its own clear error first, and
    removed by close(), or by the next curation there if this process is killed first. Beside the output
    where there is one: the system's temp folder is often RAM (tmpfs), which would defeat the point."""

    def __init__(self, parent: Path | None):
        self.parent = parent
        self._dir: Path | None = None
        self._db: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        if self._dir is None:
            parent = self.parent if self.parent is not None else Path(tempfile.gettempdir())
            clear_stale_scratch(parent)
            self._dir = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-", dir=parent))
        return self._dir

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_scratch_db(self.path / "scratch.sqlite")
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class OriginSplits:
    """The split each document id went to, so that an augmented copy (`augmented_from` names its original's id)
    joins its original's split instead of one drawn from its own text. Ids wait in memory and go to the
    scratch database in batches; lmforge augment writes each original just before its copies, so a copy's
    original is almost always still in memory."""

    CODES = {"train": 0, "val": 1, "test": 2}
    BATCH = 10_000

    def __init__(self, id_field: str, scratch: Scratch):
        self.id_field, self.scratch = id_field, scratch
        self.pending: dict[str, int] = {}
        self.stored = False

    def record(self, doc: Doc, split: str) -> None:
        if doc.fields and self.id_field in doc.fields:
            self.pending.setdefault(str(doc.fields[self.id_field]), self.CODES[split])
            if len(self.pending) >= self.BATCH:
                self._flush()

    def of(self, doc: Doc) -> str | None:
        """The split of the document `doc` is a copy of; None for an original, or one whose original was
        filtered out or never seen."""
        origin = doc.fields.get(AUGMENTED_FROM) if doc.fields else None
        if origin is None:
            return None
        code = self.pending.get(str(origin))
        if code is None and self.stored:
            row = self.scratch.db.execute("SELECT split FROM origins WHERE id = ?", (str(origin),)).fetchone()
            code = row and row[0]
        return None if code is None else list(self.CODES)[code]

    def _flush(self) -> None:
        db = self.scratch.db
        if not self.stored:
            db.execute("CREATE TABLE origins (id TEXT PRIMARY KEY, split INTEGER NOT NULL) WITHOUT ROWID")
            self.stored = True
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO origins VALUES (?, ?)", self.pending.items())
        db.execute("COMMIT")
        self.pending.clear()


class Balancer:
    """Holds labelled documents in a scratch file, then writes each label's documents as many times as its
    target count asks: copies = target // count for all, one more for the (target % count) documents with
    the smallest seeded draws. Down-sampling (target < count) keeps the `target` smallest draws. The draws
    go to the scratch database too, which finds each label's cut-off draw without holding them all."""

    def __init__(self, cfg: CurateConfig, scratch: Scratch):
        self.cfg, self.scratch = cfg, scratch
        self.labels: dict[str, int] = {}  # label -> its number, in order of first appearance
        self.counts: list[int] = []  # documents held per label number
        self.draws: list[tuple[int, float, int]] = []  # (label number, draw, index within the label), not yet stored
        self.rng = random.Random(cfg.seed)
        self.file: IO[str] | None = None  # opened at the first document, once the output folder is known good

    def label(self, doc: Doc) -> str | None:
        fields = doc.fields or {}
        value = fields.get(self.cfg.label_field) if self.cfg.label_field else None
        return None if value is None else str(value)

    def hold(self, doc: Doc, label: str) -> None:
        i = self.labels.setdefault(label, len(self.labels))
        if i == len(self.counts):
            self.counts.append(0)
        draw = self.rng.random()
        if self.file is None:
            self.scratch.db.execute("CREATE TABLE draws (label INTEGER, draw REAL, n INTEGER, "
                                    "PRIMARY KEY (label, draw, n)) WITHOUT ROWID")
            self.file = open(self.scratch.path / "balance.jsonl", "w", encoding="utf-8", errors="replace")
        record = {"text": doc.text, "fields": doc.fields, "label": i, "draw": draw}
        self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.draws.append((i, draw, self.counts[i]))
        self.counts[i] += 1
        if len(self.draws) >= _FLUSH_DRAWS:
            self._store_draws()

    def _store_draws(self) -> None:
        db = self.scratch.db
        db.execute("BEGIN")
        db.executemany("INSERT INTO draws VALUES (?, ?, ?)", sorted(self.draws))
        db.execute("COMMIT")
        self.draws.clear()

    def _nth_draw(self, label: int, n: int) -> float:
        """The label's n-th smallest draw (from 0), read off the table's (label, draw) order."""
        sql = "SELECT draw FROM draws WHERE label = ? ORDER BY draw LIMIT 1 OFFSET ?"
        return self.scratch.db.execute(sql, (label, n)).fetchone()[0]

    def targets(self) -> dict[str, int]:
        counts = {label: self.counts[i] for label, i in self.labels.items()}
        weights = self.cfg.label_weights or {label: 1.0 for label in counts}
        present = {label: w for label, w in weights.items() if counts.get(label)}
        if not present:
            return {label: 0 for label in counts}
        total = sum(present.values())
        ratios = [counts[label] / (w / total) for label, w in present.items()]
        size = min(ratios) if self.cfg.balance == "down" else max(ratios)
        rounding = math.floor if self.cfg.balance == "down" else round
        return {label: rounding(size * present[label] / total) if label in present else 0 for label in counts}

    def release(self, tally: Tally) -> Iterator[Doc]:
        if self.file is None:
            return
        self.file.close()
        self._store_draws()
        targets = self.targets()
        names = list(self.labels)
        extra_below = []  # per label number: the draw under which a document gets one extra copy
        for i, label in enumerate(names):
            extra = targets[label] % self.counts[i]
            extra_below.append(self._nth_draw(i, extra - 1) if extra else -1.0)
        step = tally["balance"]
        step.counts.update({f"{label} before": self.counts[i] for i, label in enumerate(names)})
        step.counts.update({f"{label} after": n for label, n in targets.items()})
        with open(self.file.name, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                i = record["label"]
                copies = targets[names[i]] // self.counts[i] + (record["draw"] <= extra_below[i])
                if copies == 0:
                    step.note_removed(record["text"])
                for _ in range(copies):
                    yield Doc(record["text"], record["fields"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class Curator:
    """Per-corpus work of curation, in the main process, in input order: duplicates, splits, balancing."""

    def __init__(self, cfg: CurateConfig, scratch_dir: Path | None):
        self.cfg = cfg
        self.bands = band_layout(cfg.near_threshold, cfg.num_perm)[0]
        self.scratch = Scratch(scratch_dir)
        self._index: DupIndex | None = None
        self.splits = dict.fromkeys(self.split_names(), 0)
        self.origins = OriginSplits(cfg.id_field, self.scratch) if "train" in self.splits else None
        self.balancer = Balancer(cfg, self.scratch) if cfg.balance != "none" else None

    @property
    def index(self) -> DupIndex:
        if self._index is None:
            self._index = DupIndex(self.scratch.db)
        return self._index

    def split_names(self) -> list[str]:
        return ["train", "val", "test"] if self.cfg.val_fraction or self.cfg.test_fraction else ["all"]

    def _split(self, cluster: int) -> str:
        if not (self.cfg.val_fraction or self.cfg.test_fraction):
            return "all"
        u = _unit(self.cfg.seed, cluster)
        return "test" if u < self.cfg.test_fraction else "val" if u < self.cfg.test_fraction + self.cfg.val_fraction else "train"

    def _record(self, doc: Doc, split: str) -> None:
        if self.origins is not None:
            self.origins.record(doc, split)

    def prefetch(self, signals: list[Signals | None]) -> None:
        """Look up together the index keys of the documents about to be admitted."""
        kept = [s for s in signals if s is not None and s.rejected is None]
        exact = [s.exact for s in kept] if self.cfg.exact_dedup else []
        bands = [key for s in kept for key in s.bands]
        if exact or bands:
            self.index.prefetch(exact, bands)

    def admit(self, doc: Doc, signals: Signals, tally: Tally) -> list[tuple[Doc, str]]:
        """The (document, split) pairs to write now: none where it is filtered, a duplicate or held."""
        if signals.rejected is not None:
            tally[signals.rejected].note_removed(doc.text)
            if signals.rejected == "language":
                tally["language"].counts[signals.language or "unknown"] += 1
            return []
        origin = self.origins.of(doc) if self.origins is not None else None
        if self.cfg.exact_dedup:
            if self.index.seen(signals.exact):
                tally["exact_duplicate"].note_removed(doc.text)
                self._record(doc, origin or self._split(signals.exact))  # the split its text went to
                return []
            self.index.add(signals.exact)
        cluster = signals.exact
        if signals.bands:
            match, found = self.index.query(signals.bands, signals.shingles, self.cfg.near_threshold)
            if match is not None:
                if self.cfg.near_dedup:
                    tally["near_duplicate"].note_removed(doc.text)
                    self._record(doc, origin or self._split(match))
                    return []
                cluster = match
            self.index.insert(signals.bands, found, cluster, signals.shingles)
        split = origin or self._split(cluster)
        self._record(doc, split)
        if self.balancer is not None and split in ("train", "all"):
            label = self.balancer.label(doc)
            if label is not None:
                self.balancer.hold(doc, label)
                return []
            tally["balance"].counts["no label (kept as is)"] += 1
        self.splits[split] += 1
        return [(doc, split)]

    def release(self, tally: Tally) -> Iterator[tuple[Doc, str]]:
        """The held documents, resampled, once the input is exhausted."""
        if self.balancer is None:
            return
        split = "train" if "train" in self.splits else "all"
        for doc in self.balancer.release(tally):
            self.splits[split] += 1
            yield doc, split

    def close(self) -> None:
        if self.balancer is not None:
            self.balancer.close()
        self.scratch.close()

    def summary(self) -> dict:
        index = self._index
        return {"splits": self.splits, "lsh_bands": self.bands,
                "dedup_index_documents": index.documents if index else 0,
                "near_candidates_verified": index.verified if index else 0,
                "exact_keys": index.exact_keys if index else 0}
