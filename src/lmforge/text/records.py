"""Documents in and out of the text stages: records keep their fields, long texts come in pieces.

`read_docs` reads any corpus the corpora readers take (a file, folder or glob of .txt, .jsonl, .csv/.tsv,
.parquet, .arrow, optionally .gz; a datasets save_to_disk folder; an `hf:` dataset, streamed) as `Doc`s. A
jsonl, csv, parquet, arrow or dataset record keeps its other fields (labels, ids), so they reach the output. A text longer than `max_chars` arrives as several pieces (`first`/`last`), so a
100 MB line never has to be cleaned whole. Bad input is counted, never fatal: undecodable bytes become
U+FFFD (`ReadStats.replaced_chars`), whitespace-only documents are skipped (`empty_documents`), a record
that is not a JSON object or lacks the text field is skipped (`malformed_records`, with where).

`DocWriter` writes documents, piece by piece, as jsonl (the text under the input's field name, then the
record's other fields) or txt (documents separated by a blank line), to a temporary file that replaces
the output only when complete.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import sys
import tempfile
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator

from lmforge.config import DataConfig
from lmforge.corpora import (ReadStats, arrow_batches, cut_pieces, format_of, is_hub, iter_pieces, list_sources,
                             no_column, open_hub, open_parquet)
from lmforge.errors import DataError
from lmforge.io import atomic_path

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
_WHERE_EXAMPLES = 5  # locations of malformed records kept for the report
_SURROGATE = re.compile("[\ud800-\udfff]")
_EXTRA_COLUMNS = "\0extra"  # where csv.DictReader puts the values of a row longer than its header


AUGMENTED_FROM = "augmented_from"  # lmforge augment: the field of a copy that holds its original's id


@dataclass(slots=True)
class Doc:
    """A document, or one piece of a long one; `fields` (the record's other fields) ride on the last piece."""

    text: str
    fields: dict | None = None
    first: bool = True
    last: bool = True


@dataclass
class Malformed:
    """Records skipped because they could not be read as a document, with a few of their locations."""

    count: int = 0
    where: list[str] = field(default_factory=list)

    def note(self, where: str) -> None:
        self.count += 1
        if len(self.where) < _WHERE_EXAMPLES:
            self.where.append(where)


def _decoded(raw: bytes, stats: ReadStats) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        # a U+FFFD that was in the input as valid UTF-8 is not a replacement
        stats.replaced_chars += text.count("\ufffd") - raw.count("\ufffd".encode())
        return text


def _lines(path: Path, stats: ReadStats) -> Iterator[str]:
    """The decoded lines of a (possibly gzipped) file, line ends kept, a leading byte-order mark dropped."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for n, raw in enumerate(f):
                stats.bytes_read += len(raw)
                line = _decoded(raw, stats)
                yield line.removeprefix("\ufeff") if n == 0 else line
    except (EOFError, OSError) as e:  # a truncated or corrupt .gz
        raise DataError(f"{path}: unreadable ({e})") from None


def _jsonl_records(path: Path, name: str, stats: ReadStats, bad: Malformed) -> Iterator[tuple[object, dict]]:
    for n, line in enumerate(_lines(path, stats), 1):
        if line.isspace() or not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad.note(f"{path} line {n}: not valid JSON")
            continue
        if not isinstance(record, dict) or name not in record:
            bad.note(f"{path} line {n}: " + (f"no field {name!r}" if isinstance(record, dict) else "not a JSON object"))
            continue
        text = record.pop(name)
        if isinstance(text, str) and not text.isascii() and _SURROGATE.search(text):
            stats.replaced_chars += len(_SURROGATE.findall(text))  # "\ud800" escapes decode to no character
            text = _SURROGATE.sub("\ufffd", text)
        yield text, record


def _csv_records(path: Path, name: str, delimiter: str, stats: ReadStats, bad: Malformed) -> Iterator[tuple[object, dict]]:
    # TSV files (GLUE and friends) do not quote, as corpora's reader assumes too
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the default 128 KiB rejects long documents
    # strict: a quote never closed is an error, not the rest of the file read as one field
    rows = csv.DictReader(_lines(path, stats), delimiter=delimiter, quoting=quoting, restkey=_EXTRA_COLUMNS,
                          strict=True)
    try:
        if rows.fieldnames is not None and name not in rows.fieldnames:
            raise no_column(path, name, list(rows.fieldnames))
        for row in rows:
            if _EXTRA_COLUMNS in row or None in row.values():  # too many or too few columns
                bad.note(f"{path} line {rows.line_num}: expected {len(rows.fieldnames or [])} columns")
                continue
            yield row.pop(name), row
    except csv.Error as e:
        raise DataError(f"{path} line {rows.line_num}: {e}") from None


def _parquet_records(path: Path, name: str, stats: ReadStats) -> Iterator[tuple[object, dict]]:
    with gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb") as f:
        pf = open_parquet(f, path, name)
        stats.bytes_read += os.path.getsize(path)
        # row-group-sized batches bound memory
        for batch in pf.iter_batches(batch_size=1024):
            table = batch.to_pydict()
            texts = table.pop(name)
            for i, text in enumerate(texts):
                yield text, {k: v[i] for k, v in table.items()}


def _arrow_records(path: Path, name: str, stats: ReadStats) -> Iterator[tuple[object, dict]]:
    with gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb") as f:
        stats.bytes_read += os.path.getsize(path)
        for batch in arrow_batches(f, path, name):  # type: ignore[arg-type]
            yield from _table_records(batch.to_pydict(), name)


def _table_records(table: dict, name: str) -> Iterator[tuple[object, dict]]:
    texts = table.pop(name)
    for i, text in enumerate(texts):
        yield text, {k: v[i] for k, v in table.items()}


def _hub_records(data: DataConfig, stats: ReadStats) -> Iterator[tuple[object, dict]]:
    assert data.path is not None
    batches, source = open_hub(data.path, data.split, data)
    for batch in batches:
        for text, fields in _table_records(batch, data.field):
            stats.bytes_read += len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else 0
            yield text, fields
    stats.sources.append(source)


def _records(path: Path | str, fmt: str, data: DataConfig, stats: ReadStats, bad: Malformed) -> Iterator[tuple[str, dict]]:
    if fmt == "hub":
        records = _hub_records(data, stats)
    elif fmt == "jsonl":
        records = _jsonl_records(path, data.field, stats, bad)  # type: ignore[arg-type]
    elif fmt == "parquet":
        records = _parquet_records(path, data.field, stats)  # type: ignore[arg-type]
    elif fmt == "arrow":
        records = _arrow_records(path, data.field, stats)  # type: ignore[arg-type]
    else:
        records = _csv_records(path, data.field, "\t" if fmt == "tsv" else ",", stats, bad)  # type: ignore[arg-type]
    for n, (text, fields) in enumerate(records, 1):
        if text is None:
            text = ""  # a null field is an empty document, as in parquet
        if not isinstance(text, str):
            bad.note(f"{path} record {n}: field {data.field!r} holds {type(text).__name__}, not a string")
            continue
        if not text or text.isspace():
            stats.empty_documents += 1
            continue
        stats.documents += 1
        yield text, fields
    stats.files += fmt != "hub"  # a streamed dataset is not a file


def docs_of_pieces(pieces: Iterable[tuple[str, bool]]) -> Iterator[Doc]:
    """`iter_pieces`' (piece, ends_document) stream as Docs. Whitespace that a piece starts with moves to
    the end of the piece before it in the same document, so that a cut has whitespace on one side only."""
    first, held = True, None
    for piece, end in pieces:
        if held is not None:
            if not held.last:
                rest = piece.lstrip()
                held.text += piece[:len(piece) - len(rest)]
                piece = rest
            yield held
        held = Doc(piece, None, first, end)
        first = end
    if held is not None:
        yield held


def read_docs(data: DataConfig, stats: ReadStats, bad: Malformed, max_chars: int) -> Iterator[Doc]:
    """The corpus at data.path as documents in pieces of at most max_chars characters (see the module doc)."""
    assert data.path is not None
    sources: list[tuple[Path | str, str]] = [(data.path, "hub")] if is_hub(data.path) else [
        (path, data.format if data.format != "auto" else (format_of(path) or "txt"))
        for path in list_sources(data.path, data.split)]
    for path, fmt in sources:
        if fmt == "txt":
            one_file = data.model_copy(update={"path": str(path), "format": "txt"})
            yield from docs_of_pieces(iter_pieces(one_file, stats, max_chars, require_text=False))
            continue
        for text, fields in _records(path, fmt, data, stats, bad):
            if len(text) <= max_chars:
                yield Doc(text, fields)
                continue
            pieces = list(cut_pieces(text, max_chars))  # of a text already in memory, not of a file
            for doc in docs_of_pieces((piece, i == len(pieces) - 1) for i, piece in enumerate(pieces)):
                if doc.last:
                    doc.fields = fields
                yield doc


def partition_slice(docs: Iterator[Doc], count: int, index: int, total: int) -> Iterator[Doc]:
    """Partition `index` of `count`: the index-th of `count` contiguous runs of the `total` documents, so
    the partitions' outputs concatenate, in order, to the whole run's output."""
    lo, hi = total * index // count, total * (index + 1) // count
    n = 0
    for doc in docs:
        if n >= hi:
            return
        if n >= lo:
            yield doc
        n += doc.last


def output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: the output must end in {', '.join(OUTPUT_FORMATS)}")
    return fmt


def check_writable(path: Path) -> None:
    """Fail now, before any work, where `path` could not be written."""
    output_format(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give an output file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise DataError(f"{path}: cannot write there ({e.strerror or e})") from None


class DocWriter(AbstractContextManager):
    """Writes documents, piece by piece, to `path` (jsonl or txt by its extension); the file appears whole
    when the context exits cleanly and not at all otherwise."""

    def __init__(self, path: Path, text_key: str = "text"):
        self.path, self.fmt, self.text_key = path, output_format(path), text_key
        self.documents = 0
        self._atomic = atomic_path(path)
        self._file: IO[str] | None = None
        self._open = False  # a document's first piece is written, its last is not

    def __enter__(self) -> "DocWriter":
        # a lone surrogate from a JSON escape in a carried field cannot be UTF-8: it is written as "?"
        self._file = open(self._atomic.__enter__(), "w", encoding="utf-8", errors="replace")
        return self

    def __exit__(self, *exc) -> bool | None:
        assert self._file is not None
        self._file.close()
        return self._atomic.__exit__(*exc)

    def write(self, text: str, fields: dict | None, first: bool = True, last: bool = True) -> None:
        """Write one piece; an empty piece writes nothing but still ends its document when `last`."""
        f = self._file
        assert f is not None
        if text and not self._open:
            if self.fmt == "jsonl":
                f.write("{" + json.dumps(self.text_key) + ': "')
            elif self.documents:
                f.write("\n")  # with the previous document's closing newline, a blank line
            self._open = True
        if text:
            f.write(json.dumps(text, ensure_ascii=False)[1:-1] if self.fmt == "jsonl" else text)
        if last and self._open:
            if self.fmt == "jsonl":
                rest = ", " + json.dumps(fields, ensure_ascii=False, default=str)[1:] if fields else "}"
                f.write('"' + rest + "\n")
            else:
                f.write("\n")
            self.documents += 1
            self._open = False
