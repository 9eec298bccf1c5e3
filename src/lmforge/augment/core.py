"""The augmentation run: read a corpus, choose the examples to augment, make and filter their copies, write
originals and copies (with ids) to jsonl, split by original, and report.

Two passes over the input keep memory small: the first reads every document once to fix its split (a hash
of its whitespace-normalised text, so exact duplicates share a split), the exact set of examples to augment
(`fraction` of the train split, by a seeded draw per example), and the hashes of all originals; the second
writes each original followed by its copies. A copy is dropped, and counted, when it is empty, equal to its
original, or equal to any original or earlier copy: so no copy of a training example can reproduce a
validation or test text. Only the train split is augmented; a copy always lands in its original's split.

Every random choice is drawn from a seed made of `seed`, the method and the example's position, so a run
repeats exactly, and an example's copies do not depend on which other examples are in the input.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lmforge.augment.words import seed_of, unit
from lmforge.config import AugmentConfig, DataConfig
from lmforge.corpora import ReadStats, list_sources
from lmforge.errors import DataError
from lmforge.text.pipeline import split_path
from lmforge.text.records import AUGMENTED_FROM, DocWriter, Malformed, check_writable, output_format, read_docs
from lmforge.text.report import Report

FROM_FIELD = AUGMENTED_FROM  # a copy's original's id (the first original, for a copy of a copy)
METHOD_FIELD = "augment_method"
SPLITS = ("train", "val", "test")


def build_method(cfg: AugmentConfig):
    """The method object: `method(texts, seeds, copies, counts) -> copies candidate texts per text`, with
    `name`, `settings` and `warnings`. Model methods load (and check) their models here."""
    if cfg.method == "eda":
        from lmforge.augment.eda import EDA

        return EDA(cfg)
    if cfg.method == "noise":
        from lmforge.augment.noise import Noise

        return Noise(cfg)
    if cfg.method == "summarize":
        from lmforge.augment.summarize import Summarize

        return Summarize(cfg)
    if cfg.method == "backtranslate":
        from lmforge.augment.seq2seq import BackTranslate

        return BackTranslate(cfg)
    from lmforge.augment.mask import MaskReplace

    return MaskReplace(cfg)


def normalised(text: str) -> str:
    return " ".join(text.split())


def text_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(normalised(text).encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little")


def split_of(cfg: AugmentConfig, key: int) -> str:
    if not cfg.val_fraction and not cfg.test_fraction:
        return "all"
    u = unit(cfg.seed, "split", key)
    return "val" if u < cfg.val_fraction else "test" if u < cfg.val_fraction + cfg.test_fraction else "train"


@dataclass
class Plan:
    """What the first pass found: per document (by position) its split and whether it gets copies."""

    splits: list[str] = field(default_factory=list)
    chosen: set[int] = field(default_factory=set)
    eligible: int = 0  # whole train documents that could be augmented
    original_keys: set[int] = field(default_factory=set)


def _plan(data: DataConfig, cfg: AugmentConfig, limit: int | None, bad: Malformed) -> Plan:
    plan = Plan()
    roots: dict[str, str] = {}  # an original's id -> its split, for copies already in the input
    inherited: list[tuple[int, str]] = []
    draws: list[tuple[float, int]] = []
    hasher = None
    for doc in read_docs(data, ReadStats(), bad, cfg.max_chars):
        if doc.first:
            hasher = hashlib.blake2b(digest_size=8)
        hasher.update(doc.text.encode("utf-8", "surrogatepass"))
        if not doc.last:
            continue
        index = len(plan.splits)
        whole = doc.first
        key = text_key(doc.text) if whole else int.from_bytes(hasher.digest(), "little")
        split = split_of(cfg, key)
        fields = doc.fields or {}
        plan.splits.append(split)
        if whole:
            plan.original_keys.add(key)
        if FROM_FIELD in fields:
            inherited.append((index, str(fields[FROM_FIELD])))
        else:
            roots[str(fields.get(cfg.id_field, index))] = split
        if whole and split in ("train", "all"):
            draws.append((unit(cfg.seed, "pick", index), index))
        if limit is not None and len(plan.splits) >= limit:
            break
    for index, root in inherited:  # a copy in the input goes where its original went
        plan.splits[index] = roots.get(root, plan.splits[index])
    draws = [(u, i) for u, i in draws if plan.splits[i] in ("train", "all")]
    plan.eligible = len(draws)
    if draws:
        k = max(1, round(cfg.fraction * len(draws)))
        plan.chosen = {i for _, i in sorted(draws)[:k]}
    return plan


@dataclass
class _Pending:
    index: int
    text: str
    fields: dict
    split: str


class _Run:
    """The second pass's state: writers, the batch waiting for the method, counts."""

    def __init__(self, cfg: AugmentConfig, method, plan: Plan, writers: dict[str, DocWriter], report: Report):
        self.cfg, self.method, self.plan, self.writers, self.report = cfg, method, plan, writers, report
        self.tally = report.steps[cfg.method]
        self.counts = self.tally.counts
        self.seen = set(plan.original_keys)  # originals and the copies written so far
        self.buffer: list[_Pending] = []
        self.to_augment: list[_Pending] = []
        self.per_split = {name: Counter() for name in writers}

    def add(self, pending: _Pending) -> None:
        self.buffer.append(pending)
        if pending.index in self.plan.chosen:
            self.to_augment.append(pending)
            if len(self.to_augment) >= self.cfg.batch_size:
                self.flush()

    def write_original(self, text: str, fields: dict | None, split: str, first: bool = True, last: bool = True) -> None:
        if self.cfg.keep_originals:
            self.writers[split].write(text, fields, first, last)
            self.report.bytes_out += len(text.encode("utf-8", "surrogatepass"))
        if last:
            self.per_split[split]["originals"] += 1

    def flush(self) -> None:
        cfg = self.cfg
        made: dict[int, list[str]] = {}
        if self.to_augment:
            seeds = [seed_of(cfg.seed, cfg.method, p.index) for p in self.to_augment]
            outputs = self.method([p.text for p in self.to_augment], seeds, cfg.copies, self.counts)
            made = {p.index: out for p, out in zip(self.to_augment, outputs)}
        for p in self.buffer:
            self.write_original(p.text, p.fields, p.split)
            for k, copy in enumerate(made.get(p.index, ())):
                self._write_copy(p, k, copy)
        self.buffer, self.to_augment = [], []

    def _write_copy(self, p: _Pending, k: int, copy: str) -> None:
        self.counts["copies_made"] += 1
        copy = copy.strip()
        if not copy:
            self.counts["empty_output"] += 1
            return
        if normalised(copy) == normalised(p.text):
            self.counts["unchanged"] += 1
            return
        key = text_key(copy)
        if key in self.seen:
            self.counts["duplicate"] += 1
            return
        self.seen.add(key)
        original_id = p.fields[self.cfg.id_field]
        fields = {**p.fields, self.cfg.id_field: f"{original_id}-{self.cfg.method}-{k}",
                  FROM_FIELD: p.fields.get(FROM_FIELD, original_id), METHOD_FIELD: self.cfg.method}
        self.writers[p.split].write(copy, fields)
        self.report.bytes_out += len(copy.encode("utf-8", "surrogatepass"))
        self.per_split[p.split]["copies"] += 1
        self.tally.note_changed(p.text, copy)


def augment(source: str | Path, output: str | Path, cfg: AugmentConfig | None = None, data: DataConfig | None = None,
            *, progress: bool = True, limit: int | None = None) -> Report:
    """Augment the corpus at `source` (any format `lmforge clean` reads) into `output` (.jsonl; with
    val/test fractions, `<stem>.train.jsonl`, ...); `limit` reads only the first that many documents. Writes
    `<stem>.report.json` and `.report.md` beside it and returns the report."""
    cfg = cfg or AugmentConfig()
    output = Path(output)
    if output_format(output) != "jsonl":
        raise DataError(f"{output}: the output must be .jsonl: augmented rows carry their original's id and the "
                        f"method beside the text and the record's other fields")
    data = (data or DataConfig()).model_copy(update={"path": str(source)})
    sources = list_sources(str(source), data.split)
    names = [s for s, f in zip(SPLITS, (1.0, cfg.val_fraction, cfg.test_fraction)) if f] \
        if cfg.val_fraction or cfg.test_fraction else ["all"]
    outputs = {name: split_path(output, name) for name in names}
    for path in outputs.values():
        check_writable(path)
    method = build_method(cfg)  # a bad model folder fails here, before anything is read or written
    started = time.perf_counter()
    skipped = Malformed()
    plan = _plan(data, cfg, limit, skipped)
    if not plan.splits:
        raise DataError(f"{source}: no texts to augment (empty, or only whitespace"
                        + (f"; {skipped.count:,} malformed records, the first {skipped.where[0]})" if skipped.count
                           else ")"))
    report = Report("augment", str(source), [str(p) for p in outputs.values()],
                    {"augment": cfg.model_dump(mode="json"), "method": method.settings,
                     "data": {"field": data.field, "format": data.format}}, workers=1)
    stats, bad = ReadStats(), Malformed()
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(plan.splits), unit="doc", desc=f"augment ({cfg.method}) {source}", disable=not show)
    index = 0
    try:
        with ExitStack() as stack:
            writers = {name: stack.enter_context(DocWriter(path, data.field)) for name, path in outputs.items()}
            run = _Run(cfg, method, plan, writers, report)
            for doc in read_docs(data, stats, bad, cfg.max_chars):
                if index >= len(plan.splits):
                    break  # the limit
                report.bytes_in += len(doc.text.encode("utf-8", "surrogatepass"))
                split = plan.splits[index]
                fields = dict(doc.fields or {}) if doc.last else None
                if fields is not None:
                    fields.setdefault(cfg.id_field, index)
                if doc.first and doc.last:
                    run.add(_Pending(index, doc.text, fields, split))
                else:  # longer than max_chars: written as it came, piece by piece, after what waits
                    run.flush()
                    run.write_original(doc.text, fields, split, doc.first, doc.last)
                    if doc.last:
                        run.counts["too_long"] += 1
                if doc.last:
                    index += 1
                    bar.update()
            run.flush()
            report.documents_out = sum(w.documents for w in writers.values())
    finally:
        bar.close()
    report.documents_in = index
    report.duration_s = time.perf_counter() - started
    report.read = {"files": len(sources), "documents": stats.documents, "empty_documents": stats.empty_documents,
                   "invalid_utf8_replaced_chars": stats.replaced_chars, "nul_chars": stats.nul_chars,
                   "bytes_read": stats.bytes_read,
                   "malformed_records": bad.count, "malformed_where": bad.where}
    counts = run.counts
    written = sum(c["copies"] for c in run.per_split.values())
    report.steps[cfg.method].changed = written
    report.steps[cfg.method].removed = sum(counts[k] for k in ("empty_output", "unchanged", "duplicate"))
    warnings = list(method.warnings)
    if stats.empty_documents:
        warnings.append(f"{stats.empty_documents} empty text(s) skipped")
    if bad.count:
        warnings.append(f"{bad.count} malformed record(s) skipped (first: {bad.where[0]})")
    for name, what in (("too_long", f"longer than max_chars={cfg.max_chars}, written but not augmented"),
                       ("split", "longer than the model's window, split into parts"),
                       ("truncated", "longer than the model's window, truncated"),
                       ("model_split", "longer than the model's window, split into parts"),
                       ("model_truncated", "longer than the model's window, truncated"),
                       ("back_model_split", "longer than the back model's window, split into parts"),
                       ("back_model_truncated", "longer than the back model's window, truncated")):
        if counts[name]:
            warnings.append(f"{counts[name]} text(s) {what}")
    report.extra = {
        "examples_eligible": plan.eligible, "examples_augmented": len(plan.chosen),
        "fraction_augmented": round(len(plan.chosen) / plan.eligible, 4) if plan.eligible else 0.0,
        "copies_requested": len(plan.chosen) * cfg.copies, "copies_written": written,
        "copies_per_augmented_example": round(written / len(plan.chosen), 3) if plan.chosen else 0.0,
        "splits": {name: dict(c) for name, c in run.per_split.items()}, "warnings": warnings,
    }
    report.write(output)
    return report
