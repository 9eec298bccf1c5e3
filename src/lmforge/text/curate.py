"""Corpus curation: language and quality filters, exact and near-duplicate removal, label balancing and a
deterministic train/val/test split by document (docs/cleaning.md).

Work is split where it is cheap to move: workers (`Analyser`) compute per document its language, the first
quality filter it fails, an exact key and MinHash band keys; the main process (`Curator`) keeps the
duplicate index, assigns splits and resamples labels, in input order, so the result does not depend on
the number of workers.

A document's split comes from a hash of its cluster: the first document it duplicates (exactly, or in an
LSH band), else itself. So exact and near duplicates kept with `near_dedup=false` share a split, and
with dedup on, no two kept documents are near duplicates at all. Balancing applies to the train split
(evaluation splits keep the natural label distribution), or to everything when there is no split; it
holds the documents in a scratch file beside the output and resamples them at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from array import array
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Iterator

from lmforge.config import CleanConfig, CurateConfig, DataConfig
from lmforge.text.dedup import BandIndex, MinHasher, band_layout, exact_key
from lmforge.text.quality import first_failure
from lmforge.text.records import Doc
from lmforge.text.report import Report, Tally

_LANGID_CHARS = 2000  # language identification reads the start of a document: enough, and bounded
_LETTER = re.compile(r"[^\W\d_]")


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
            return Signals(rejected, language, 0, ())
        bands = self.minhasher.band_keys(text) if self.minhasher else ()
        return Signals(None, language, exact_key(text), bands)


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its arguments."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


class Balancer:
    """Holds labelled documents in a scratch file, then writes each label's documents as many times as its
    target count asks: copies = target // count for all, one more for the (target % count) documents with
    the smallest seeded draws. Down-sampling (target < count) keeps the `target` smallest draws."""

    def __init__(self, cfg: CurateConfig, scratch: Path):
        self.cfg, self.scratch = cfg, scratch
        self.labels: dict[str, int] = {}
        self.label_of = array("i")
        self.draws = array("d")
        self.rng = random.Random(cfg.seed)
        self.file: IO[str] | None = None  # opened at the first document, once the output folder is known good

    def label(self, doc: Doc) -> str | None:
        fields = doc.fields or {}
        value = fields.get(self.cfg.label_field) if self.cfg.label_field else None
        return None if value is None else str(value)

    def hold(self, doc: Doc, label: str) -> None:
        self.label_of.append(self.labels.setdefault(label, len(self.labels)))
        self.draws.append(self.rng.random())
        if self.file is None:
            self.file = open(self.scratch, "w", encoding="utf-8", errors="replace")
        self.file.write(json.dumps({"text": doc.text, "fields": doc.fields}, ensure_ascii=False) + "\n")

    def targets(self) -> dict[str, int]:
        counts = {label: self.label_of.count(i) for label, i in self.labels.items()}
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
        try:
            targets = self.targets()
            counts = {label: self.label_of.count(i) for label, i in self.labels.items()}
            extra_below = {}  # per label: the draw under which a document gets one extra copy
            for label, i in self.labels.items():
                draws = sorted(d for d, j in zip(self.draws, self.label_of) if j == i)
                extra = targets[label] % counts[label]
                extra_below[i] = draws[extra - 1] if extra else -1.0
            step = tally["balance"]
            step.counts.update({f"{label} before": n for label, n in counts.items()})
            step.counts.update({f"{label} after": n for label, n in targets.items()})
            with open(self.scratch, encoding="utf-8") as f:
                for line, i, draw in zip(f, self.label_of, self.draws):
                    label = next(k for k, v in self.labels.items() if v == i)
                    copies = targets[label] // counts[label] + (draw <= extra_below[i])
                    record = json.loads(line)
                    if copies == 0:
                        step.note_removed(record["text"])
                    for _ in range(copies):
                        yield Doc(record["text"], record["fields"])
        finally:
            self.scratch.unlink(missing_ok=True)

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.scratch.unlink(missing_ok=True)


class Curator:
    """Per-corpus work of curation, in the main process, in input order: duplicates, splits, balancing."""

    def __init__(self, cfg: CurateConfig, scratch_dir: Path | None):
        self.cfg = cfg
        self.exact_seen: set[int] = set()
        self.index = BandIndex(band_layout(cfg.near_threshold, cfg.num_perm)[0])
        self.splits = dict.fromkeys(self.split_names(), 0)
        self.balancer = None
        if cfg.balance != "none":
            assert scratch_dir is not None, "balancing needs a scratch folder"
            self.balancer = Balancer(cfg, scratch_dir / f".lmforge-balance-{os.getpid()}.jsonl")

    def split_names(self) -> list[str]:
        return ["train", "val", "test"] if self.cfg.val_fraction or self.cfg.test_fraction else ["all"]

    def _split(self, cluster: int) -> str:
        if not (self.cfg.val_fraction or self.cfg.test_fraction):
            return "all"
        u = _unit(self.cfg.seed, cluster)
        return "test" if u < self.cfg.test_fraction else "val" if u < self.cfg.test_fraction + self.cfg.val_fraction else "train"

    def admit(self, doc: Doc, signals: Signals, tally: Tally) -> list[tuple[Doc, str]]:
        """The (document, split) pairs to write now: none where it is filtered, a duplicate or held."""
        if signals.rejected is not None:
            tally[signals.rejected].note_removed(doc.text)
            if signals.rejected == "language":
                tally["language"].counts[signals.language or "unknown"] += 1
            return []
        if self.cfg.exact_dedup:
            if signals.exact in self.exact_seen:
                tally["exact_duplicate"].note_removed(doc.text)
                return []
            self.exact_seen.add(signals.exact)
        cluster = signals.exact
        if signals.bands:
            match = self.index.query(signals.bands)
            if match is not None:
                if self.cfg.near_dedup:
                    tally["near_duplicate"].note_removed(doc.text)
                    return []
                cluster = match
            self.index.insert(signals.bands, cluster)
        split = self._split(cluster)
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
            self.balancer.discard()

    def summary(self) -> dict:
        return {"splits": self.splits, "lsh_bands": len(self.index.tables), "dedup_index_documents": len(self.index),
                "exact_keys": len(self.exact_seen)}


def curate(source: str | Path, output: str | Path, cfg: CurateConfig | None = None, data: DataConfig | None = None,
           *, clean: CleanConfig | None = None, workers: int | None = None, partition: tuple[int, int] = (0, 1),
           progress: bool = True) -> Report:
    """Curate the corpus at `source` into `output` (.jsonl or .txt; with splits, `<stem>.train<ext>`,
    `.val`, `.test`), with a report beside it; `clean` runs a cleaning stage first, in the same pass."""
    from lmforge.text.clean import Cleaner
    from lmforge.text.pipeline import TextTask, run_files

    cfg = cfg or CurateConfig()
    settings: dict = {"curate": cfg.model_dump(mode="json")}
    cleaner = None
    if clean is not None:
        cleaner = Cleaner.from_config(clean)
        settings.update({"clean": clean.model_dump(mode="json"), **cleaner.notes})
    curator = Curator(cfg, Path(output).parent)
    try:
        return run_files("curate", source, output, data, TextTask(cleaner, Analyser(cfg)), curator,
                         settings=settings, workers=workers, partition=partition, progress=progress,
                         max_chars=cfg.max_chars)
    finally:
        curator.close()
