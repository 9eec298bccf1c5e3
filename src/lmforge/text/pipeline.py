"""The file-to-file verbs `clean` and `curate`, and the streaming loop they share with `prepare`'s text stages.

Documents are read in bounded pieces, sent in chunks to the workers (`TextTask`: cleaning, then the
per-document half of curation), and come back in input order to the main process, which runs the
per-corpus half of curation (`Curator`), writes the output and keeps the report.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from lmforge.config import CleanConfig, CurateConfig, DataConfig
from lmforge.corpora import PIECE_CHARS, ReadStats, list_sources
from lmforge.errors import DataError
from lmforge.text.clean import Cleaner
from lmforge.text.curate import Analyser, Curator, Signals
from lmforge.text.parallel import Progress, chunks, default_workers, ordered_map
from lmforge.text.records import Doc, DocWriter, Malformed, check_writable, partition_slice, read_docs
from lmforge.text.report import Report, Tally


@dataclass
class ChunkResult:
    texts: list[str]  # each piece after cleaning; "" where a step removed it
    signals: list[Signals | None]  # curation signals of each whole, non-empty document
    tally: Tally
    bytes_in: int


@dataclass
class TextTask:
    """What a worker does to a chunk: clean each piece, then analyse each whole document for curation."""

    cleaner: Cleaner | None
    analyser: Analyser | None

    def __call__(self, chunk: list[Doc]) -> ChunkResult:
        tally = Tally()
        texts: list[str] = []
        signals: list[Signals | None] = []
        nbytes = 0
        for doc in chunk:
            nbytes += len(doc.text.encode("utf-8", "surrogatepass"))
            text = self.cleaner.clean_piece(doc, tally) if self.cleaner is not None else doc.text
            texts.append(text)
            whole = doc.first and doc.last
            signals.append(self.analyser(text) if self.analyser is not None and text and whole else None)
        return ChunkResult(texts, signals, tally, nbytes)


def run_docs(docs: Iterable[Doc], task: TextTask, curator: Curator | None, report: Report, workers: int,
             progress: Progress | None = None) -> Iterator[tuple[Doc, str]]:
    """(piece, split) for each piece to write, in input order; split is "all" without a curation split."""
    for chunk, result in ordered_map(task, chunks(docs), workers):
        report.steps.merge(result.tally)
        report.bytes_in += result.bytes_in
        if curator is not None:
            curator.prefetch(result.signals)
        for doc, text, signals in zip(chunk, result.texts, result.signals):
            report.documents_in += doc.last
            out = Doc(text, doc.fields, doc.first, doc.last)
            if curator is None:
                yield out, "all"
            elif not (doc.first and doc.last):  # curation holds whole documents only
                if doc.last:
                    report.steps["too_long"].note_removed(doc.text)
            elif text and signals is not None:
                yield from curator.admit(out, signals, report.steps)
        if progress is not None:
            progress.update(sum(doc.last for doc in chunk))
    if curator is not None:
        yield from curator.release(report.steps)


def split_path(output: Path, split: str) -> Path:
    return output if split == "all" else output.with_name(f"{output.stem}.{split}{output.suffix}")


def run_files(command: str, source: str | Path, output: str | Path, data: DataConfig | None, task: TextTask,
              curator: Curator | None, settings: dict, workers: int | None = None,
              partition: tuple[int, int] = (0, 1), progress: bool = True, max_chars: int = PIECE_CHARS) -> Report:
    """Read `source`, run the task (and curator) over it, write `output` (or its splits) and the report.
    A missing input or an unwritable output fails before any work."""
    index, count = partition
    if not 0 <= index < count:
        raise DataError(f"partition {index} of {count}: needs 0 <= partition < num_partitions")
    output = Path(output)
    data = (data or DataConfig()).model_copy(update={"path": str(source)})
    sources = list_sources(str(source), data.split)  # none for an hf: dataset, whose size is unknown
    outputs = {split: split_path(output, split) for split in (curator.split_names() if curator else ["all"])}
    for path in outputs.values():
        check_writable(path)
    workers = workers or default_workers()
    report = Report(command, str(source), [str(p) for p in outputs.values()], settings, workers, partition)
    stats, bad = ReadStats(), Malformed()
    start = time.perf_counter()
    docs: Iterable[Doc] = read_docs(data, stats, bad, max_chars)
    if count > 1:  # a first, reading-only pass counts the documents so that the slices are contiguous
        total = sum(doc.last for doc in read_docs(data, ReadStats(), Malformed(), max_chars))
        docs = partition_slice(iter(docs), count, index, total)
    bar = Progress(stats, sum(p.stat().st_size for p in sources) or None, f"{command} {source}", progress)
    try:
        with ExitStack() as stack:
            writers = {split: stack.enter_context(DocWriter(path, data.field)) for split, path in outputs.items()}
            for doc, split in run_docs(docs, task, curator, report, workers, bar):
                writers[split].write(doc.text, doc.fields, doc.first, doc.last)
                report.bytes_out += len(doc.text.encode("utf-8", "surrogatepass"))
            if stats.documents == 0:  # raised inside the writers, so that no output is left
                raise DataError(f"{source}: no documents (empty, or only whitespace"
                                + (f"; {bad.count:,} malformed records, the first {bad.where[0]})" if bad.count else ")"))
            report.documents_out = sum(w.documents for w in writers.values())
    finally:
        bar.close()
    report.duration_s = time.perf_counter() - start
    report.read = {"files": stats.files, "documents": stats.documents, "empty_documents": stats.empty_documents,
                   "invalid_utf8_replaced_chars": stats.replaced_chars, "nul_chars": stats.nul_chars,
                   "bytes_read": stats.bytes_read,
                   "malformed_records": bad.count, "malformed_where": bad.where}
    if curator is not None:
        report.extra = curator.summary()
    report.write(output)
    return report


def clean(source: str | Path, output: str | Path, cfg: CleanConfig | None = None, data: DataConfig | None = None,
          *, workers: int | None = None, partition: tuple[int, int] = (0, 1), progress: bool = True) -> Report:
    """Clean the corpus at `source` (the formats prepare reads; `data` sets field, format and txt
    documents) into `output` (.jsonl or .txt), with a report beside it; see text/clean.py."""
    cfg = cfg or CleanConfig()
    cleaner = Cleaner.from_config(cfg)
    return run_files("clean", source, output, data, TextTask(cleaner, None), None,
                     settings={"clean": cfg.model_dump(mode="json"), **cleaner.notes},
                     workers=workers, partition=partition, progress=progress)


def curate(source: str | Path, output: str | Path, cfg: CurateConfig | None = None, data: DataConfig | None = None,
           *, clean: CleanConfig | None = None, workers: int | None = None, partition: tuple[int, int] = (0, 1),
           progress: bool = True) -> Report:
    """Curate the corpus at `source` into `output` (.jsonl or .txt; with splits, `<stem>.train<ext>`,
    `.val`, `.test`), with a report beside it; `clean` runs a cleaning stage first, in the same pass."""
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
