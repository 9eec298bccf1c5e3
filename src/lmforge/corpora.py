"""Read a corpus in any supported format as a stream of bounded text pieces.

`iter_pieces(cfg)` yields `(piece, ends_document)`: a document arrives as one or more pieces of at most
`max_chars` characters (1 Mi by default), so a 100 MB single line never sits in memory whole. A long
document is cut after a newline or before a space near the limit, where subword tokenizers split anyway.

Formats (from the extension, `.gz` of any allowed, or forced with `data.format`): `.txt` (a document is
the whole file, each line, or each blank-line-separated paragraph: `data.txt_documents`), `.jsonl` and
`.csv`/`.tsv`/`.parquet`/`.arrow` (the `data.field` value or column of each record; `.arrow` is Arrow IPC,
the stream format that `datasets` writes or the file format, read a record batch at a time). Undecodable
bytes become U+FFFD and are counted, never fatal; whitespace-only documents are skipped and counted.

Hugging Face `datasets`: a folder written by `Dataset.save_to_disk` (known by its `state.json`, which
lists its `.arrow` files in order) is read as those files; a `DatasetDict.save_to_disk` folder (known by
its `dataset_dict.json`) as its `data.split` subfolder (`data.val_split`/`data.test_split` for the
validation and test corpora). A folder with any of those marker files that is not a whole such folder is
an error, never read as a plain folder. `hf:NAME` (a hub id, or a local folder `load_dataset` takes)
streams `datasets.load_dataset(NAME, data.hf_config, split=..., revision=data.hf_revision,
streaming=True)`. A hub corpus has no file to stat: the staleness check (`stat_sources`) compares its
name, config, split and revision; the read also records the builder's hash and the text's sha256.

The built-in default corpus (`data.path` empty) needs no download: the pydoc topics that Python's `help()`
shows (`pydoc_data.topics`), then every module, class and function docstring of at least 200 characters in
the standard library's `.py` files (parsed with `ast`, never imported; tests, idlelib, lib2to3,
ensurepip, turtledemo and site-packages skipped; duplicates dropped), in sorted path order. About 1.7 MB
of English on CPython 3.11; it differs a little between Python versions, so its source is named after
the version.
"""

from __future__ import annotations

import ast
import codecs
import csv
import functools
import glob
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import sysconfig
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, Iterator

from lmforge.config import DataConfig
from lmforge.errors import DataError

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.parquet

PIECE_CHARS = 1 << 20
FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet", ".arrow": "arrow"}
HUB = "hf:"  # data.path's prefix for a dataset that datasets.load_dataset streams
DEFAULT_SOURCE = f"builtin:python-{platform.python_version()}-docs"
_KNOWN = "/".join(FORMATS)


@dataclass
class ReadStats:
    """What reading a corpus found; `sources` gets one entry per source once it is read to the end."""

    files: int = 0
    documents: int = 0
    empty_documents: int = 0
    bytes_read: int = 0
    replaced_chars: int = 0
    nul_chars: int = 0
    chars_read: int = 0
    sources: list[dict] = field(default_factory=list)


# Undecodable bytes are replaced like errors="replace" does, and counted. The count is per thread and
# only grows, so a reader adds the difference across each of its own read calls.
_replaced = threading.local()


def _replace_and_count(err: UnicodeError) -> tuple[str, int]:
    _replaced.n = getattr(_replaced, "n", 0) + 1
    return "\ufffd", err.end  # type: ignore[attr-defined]


codecs.register_error("lmforge.replace", _replace_and_count)


def _reads(read: Callable[[int], str], size: int, stats: ReadStats) -> Iterator[str]:
    """Call `read(size)` until it returns "", counting the characters that had to be replaced."""
    while True:
        before = getattr(_replaced, "n", 0)
        text = read(size)
        stats.replaced_chars += getattr(_replaced, "n", 0) - before
        if not text:
            return
        stats.chars_read += len(text)
        stats.nul_chars += text.count("\0")
        yield text


class _Hashed(io.RawIOBase):
    """A raw file that hashes and counts the bytes as they are read (one pass, no second read)."""

    def __init__(self, f: BinaryIO, stats: ReadStats):
        self.f, self.stats = f, stats
        self.sha = hashlib.sha256()
        self.nbytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = self.f.readinto(b)  # type: ignore[attr-defined]
        self.sha.update(memoryview(b)[:n])
        self.nbytes += n
        self.stats.bytes_read += n
        return n


def format_of(path: Path) -> str | None:
    """The format a file's extension names (`.gz` looked through), or None."""
    name = path.name.lower().removesuffix(".gz")
    return FORMATS.get(os.path.splitext(name)[1])


def is_hub(path: str | None) -> bool:
    """Whether a corpus path names a dataset for `datasets.load_dataset` (`hf:NAME`)."""
    return path is not None and path.startswith(HUB)


_DATASET_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


def _json_file(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None


def dataset_files(folder: Path, split: str) -> list[Path] | None:
    """The `.arrow` files of a `datasets` save_to_disk folder in their order (of split `split` where it is
    a DatasetDict's), None for a folder with no datasets marker file; a DataError for a folder that has a
    marker but is not a whole save_to_disk folder."""
    markers = [name for name in _DATASET_MARKERS if (folder / name).exists()]
    if not markers:
        return None
    if "dataset_dict.json" in markers:
        splits = _json_file(folder / "dataset_dict.json")
        splits = splits.get("splits") if isinstance(splits, dict) else None
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise DataError(f"{folder}: dataset_dict.json has no list of splits: not a DatasetDict.save_to_disk folder")
        if split not in splits:
            raise DataError(f"{folder}: no split {split!r} in this DatasetDict folder (splits: {', '.join(splits)}); "
                            "choose one with data.split (data.val_split, data.test_split for val_path, test_path)")
        folder = folder / split
        if not folder.is_dir():
            raise DataError(f"{folder}: missing, though dataset_dict.json lists split {split!r}")
        if not (folder / "state.json").exists():
            raise DataError(f"{folder}: not a Dataset.save_to_disk folder (no state.json)")
    elif "state.json" not in markers:
        raise DataError(f"{folder}: has {markers[0]} but no state.json: not a whole Dataset.save_to_disk folder "
                        "(save it again, or move that file out to read the folder's files as plain text)")
    state = _json_file(folder / "state.json")
    entries = state.get("_data_files") if isinstance(state, dict) else None
    names = [e.get("filename") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    if not entries or len(names) != len(entries) or not all(isinstance(n, str) and n.endswith(".arrow")
                                                             and Path(n).name == n for n in names):
        raise DataError(f"{folder}: state.json is not a datasets save_to_disk state (no _data_files list of .arrow "
                        "files)")
    files = [folder / n for n in names]
    for f in files:
        if not f.is_file():
            raise DataError(f"{f}: missing, though {folder / 'state.json'} lists it")
    return files


def list_sources(path: str, split: str = "train") -> list[Path]:
    """The files of a corpus: one file, a save_to_disk folder's `.arrow` files (of `split` in a
    DatasetDict's), every known-format file under any other folder, or a glob's matches; none for `hf:`."""
    if is_hub(path):
        return []
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        if (arrow := dataset_files(p, split)) is not None:
            return arrow
        # hidden files and folders (.git, editors' temp files) are never corpus text
        files = sorted(f for f in p.rglob("*") if f.is_file() and format_of(f)
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not files:
            raise DataError(f"{path}: no {_KNOWN} files found (optionally .gz)")
        # a save_to_disk folder inside would be read as every split's .arrow files, in name order
        for sub in sorted({f.parent for f in files}):
            if any((sub / name).exists() for name in _DATASET_MARKERS):
                raise DataError(f"{path}: holds a datasets save_to_disk folder, {sub}: give that folder as the path")
        return files
    if glob.has_magic(path):
        files = sorted(Path(f) for f in glob.glob(os.path.expanduser(path), recursive=True) if Path(f).is_file())
        if not files:
            raise DataError(f"{path}: no files match")
        return files
    raise DataError(f"{path}: no such file")


def _cut(text: str, lo: int, hi: int) -> int:
    """Where a piece of text[lo:] that must end by `hi` ends: after a newline, else before a space, in
    the window's second half; else at `hi`."""
    mid = lo + (hi - lo) // 2
    i = text.rfind("\n", mid, hi)
    if i >= 0:
        return i + 1
    i = max(text.rfind(c, mid + 1, hi) for c in " \t")
    return i if i >= 0 else hi


def cut_pieces(text: str, max_chars: int) -> Iterator[str]:
    """`text` in pieces of at most max_chars characters, cut where `iter_pieces` cuts a long document."""
    start = 0
    while len(text) - start > max_chars:
        cut = _cut(text, start, start + max_chars)
        yield text[start:cut]
        start = cut
    yield text[start:]


def _pieces(chunks: Iterable[tuple[str, bool]], max_chars: int, stats: ReadStats) -> Iterator[tuple[str, bool]]:
    """Turn (text, ends_document) chunks of any size into pieces of at most max_chars characters."""
    parts: list[str] = []
    size, started = 0, False  # started: a piece of the current document was already yielded
    for chunk, end in chunks:
        if chunk:
            parts.append(chunk)
            size += len(chunk)
        if size > max_chars:
            buf, start = "".join(parts), 0
            while len(buf) - start > max_chars:
                cut = _cut(buf, start, start + max_chars)
                yield buf[start:cut], False
                start, started = cut, True
            parts, size = [buf[start:]], len(buf) - start
        if end:
            text = "".join(parts)
            if started or (text and not text.isspace()):
                stats.documents += 1
                yield text, True
            else:
                stats.empty_documents += 1
            parts, size, started = [], 0, False


def _txt_chunks(f: io.TextIOBase, mode: str, max_chars: int, stats: ReadStats) -> Iterator[tuple[str, bool]]:
    if mode == "file":
        for text in _reads(f.read, max_chars, stats):
            yield text, False
        yield "", True
        return
    # readline(max_chars) hands a long line over in parts; a part ending in "\n" ends its line
    open_doc, line_start = False, True
    for part in _reads(f.readline, max_chars, stats):
        ends_line = part.endswith("\n")
        if mode == "line":
            yield part, ends_line
            open_doc = not ends_line
        elif line_start and ends_line and part.isspace():  # a blank line ends a paragraph
            if open_doc:
                yield "", True
            open_doc = False
        else:
            yield part, False
            open_doc = True
        line_start = ends_line
    if open_doc:
        yield "", True


def no_column(path: Path, name: str, columns: list[str]) -> DataError:
    """The error for a table without column `name`; a header of NULs and U+FFFD is text in UTF-16 or binary."""
    listed = ", ".join(columns)
    if "\0" in listed or "\ufffd" in listed:
        return DataError(f"{path}: no column {name!r}: the header is not UTF-8 text (UTF-16, or a binary file; "
                         "convert it: iconv -f ENCODING -t UTF-8)")
    return DataError(f"{path}: no column {name!r} (columns: {listed})")


def _text_of(value: object, where: str, name: str) -> str:
    if value is None:
        return ""  # a null field is an empty document, as in parquet
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} holds {type(value).__name__}, not a string")
    return value


def json_record(line: str, where: str) -> dict:
    """One JSONL line as a dict, or a DataError naming `where` (file and line) and what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        hint = ": NUL bytes, so UTF-16 or binary" if "\0" in line else ""
        raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno}{hint})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got a {type(record).__name__}")
    return record


def _jsonl_chunks(f: io.TextIOBase, path: Path, name: str, stats: ReadStats) -> Iterator[tuple[str, bool]]:
    for n, line in enumerate(_reads(f.readline, -1, stats), 1):
        if line.isspace():
            continue
        record = json_record(line, f"{path} line {n}")
        if name not in record:
            raise DataError(f"{path} line {n}: no field {name!r} (fields: {', '.join(record) or 'none'})")
        yield _text_of(record[name], f"{path} line {n}", name), True


def _csv_chunks(f: io.TextIOBase, path: Path, name: str, delimiter: str,
                stats: ReadStats) -> Iterator[tuple[str, bool]]:
    # TSV files (GLUE and friends) do not quote: a field may start with '"'
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the default 128 KiB rejects long documents
    # strict: a quote never closed is an error, not the rest of the file read as one field
    reader = csv.reader(_reads(f.readline, -1, stats), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        if name not in header:
            raise no_column(path, name, header)
        col = header.index(name)
        for row in reader:
            if not row:
                continue
            if col >= len(row):
                raise DataError(f"{path} line {reader.line_num}: {len(row)} columns, no value for {name!r}")
            yield row[col], True
    except csv.Error as e:
        raise DataError(f"{path} line {reader.line_num}: {e}") from None


def _check_text_column(where: object, schema: "pyarrow.Schema", name: str) -> None:
    import pyarrow as pa

    if name not in schema.names:
        raise DataError(f"{where}: no column {name!r} (columns: {', '.join(schema.names)})")
    kind = schema.field(name).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{where}: column {name!r} holds {kind}, not strings")


def open_parquet(f: BinaryIO, path: Path, name: str) -> "pyarrow.parquet.ParquetFile":
    """A pyarrow ParquetFile whose column `name` holds strings, or a DataError naming what is wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(f)
    except (pa.ArrowException, OSError, EOFError, zlib.error) as e:  # EOFError: a truncated .parquet.gz
        raise DataError(f"{path}: not a readable parquet file ({e or type(e).__name__})") from None
    _check_text_column(path, pf.schema_arrow, name)
    return pf


def arrow_batches(f: BinaryIO, path: Path, name: str) -> Iterator["pyarrow.RecordBatch"]:
    """The record batches of an Arrow IPC file (stream or file format, told by the file format's magic
    bytes) whose column `name` holds strings, one batch in memory at a time; a DataError naming what is
    wrong, here or while reading."""
    import pyarrow as pa

    errors = (pa.ArrowException, OSError, EOFError, zlib.error)  # EOFError: a truncated .arrow.gz
    try:
        file_format = f.read(6) == b"ARROW1"
        f.seek(0)
        reader = pa.ipc.open_file(f) if file_format else pa.ipc.open_stream(f)
    except errors as e:
        raise DataError(f"{path}: not a readable Arrow IPC file ({e or type(e).__name__})") from None
    _check_text_column(path, reader.schema, name)
    try:
        if file_format:
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        else:
            yield from reader
    except errors as e:
        raise DataError(f"{path}: unreadable Arrow IPC data ({e or type(e).__name__})") from None


def _parquet_chunks(f: BinaryIO, path: Path, name: str) -> Iterator[tuple[str, bool]]:
    pf = open_parquet(f, path, name)
    # row-group-sized batches bound memory; a batch's strings come out as Python str one at a time
    for batch in pf.iter_batches(batch_size=1024, columns=[name]):
        for value in batch.column(0).to_pylist():
            yield value or "", True


def _arrow_chunks(f: BinaryIO, path: Path, name: str) -> Iterator[tuple[str, bool]]:
    for batch in arrow_batches(f, path, name):
        for value in batch.column(name).to_pylist():
            yield value or "", True


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_hub(path: str, split: str, cfg: DataConfig) -> tuple[Iterator[dict], dict]:
    """A streamed `hf:` dataset as batches (dicts of column lists) holding column `cfg.field`, and the
    source record of the read: name, config, split, revision and the builder's hash (of the hub commit, or
    of a local folder's files)."""
    import datasets
    import pyarrow as pa

    name = path[len(HUB):]
    where = f"{path} (split {split!r})"
    errors = (OSError, ValueError, datasets.exceptions.DatasetsError, pa.ArrowException)
    try:
        # what load_dataset(name, config, split=split, revision=..., streaming=True) does, keeping the builder
        # for its hash; remote code is never run (datasets 4+ refuses dataset scripts)
        builder = datasets.load_dataset_builder(name, cfg.hf_config, revision=cfg.hf_revision)
        stream = builder.as_streaming_dataset(split=split)
    except errors as e:
        raise DataError(f"{where}: cannot load the dataset ({_first_line(e)})") from None
    if stream.features is not None and cfg.field not in stream.features:
        raise DataError(f"{where}: no field {cfg.field!r} (fields: {', '.join(stream.features)})")
    source = {**hub_source(path, split, cfg), "fingerprint": builder.hash}

    def batches() -> Iterator[dict]:
        try:
            for batch in stream.iter(batch_size=1024):
                if cfg.field not in batch:  # features unknown until read (json files, say)
                    raise DataError(f"{where}: no field {cfg.field!r} (fields: {', '.join(batch) or 'none'})")
                yield batch
        except errors as e:
            raise DataError(f"{where}: unreadable ({_first_line(e)})") from None
    return batches(), source


def hub_source(path: str, split: str, cfg: DataConfig) -> dict:
    """What identifies an `hf:` corpus for the staleness check: a hub dataset has no file to stat."""
    return {"path": path, "config": cfg.hf_config, "split": split, "revision": cfg.hf_revision}


def _hub_chunks(cfg: DataConfig, stats: ReadStats) -> Iterator[tuple[str, bool]]:
    assert cfg.path is not None
    batches, source = open_hub(cfg.path, cfg.split, cfg)
    sha, nbytes, n = hashlib.sha256(), 0, 0
    for batch in batches:
        for value in batch[cfg.field]:
            n += 1
            text = _text_of(value, f"{cfg.path} (split {cfg.split!r}) record {n}", cfg.field)
            data = text.encode("utf-8", "surrogatepass")
            sha.update(data + b"\0")
            nbytes += len(data)
            stats.bytes_read += len(data)
            yield text, True
    stats.sources.append({**source, "bytes": nbytes, "sha256": sha.hexdigest()})


def _file_chunks(path: Path, cfg: DataConfig, max_chars: int, stats: ReadStats,
                 require_text: bool) -> Iterator[tuple[str, bool]]:
    fmt = cfg.format if cfg.format != "auto" else (format_of(path) or "txt")
    gz = path.name.lower().endswith(".gz")
    mtime_ns = path.stat().st_mtime_ns
    before = (stats.replaced_chars + stats.nul_chars, stats.chars_read)
    with open(path, "rb", buffering=0) as raw:
        hashed = _Hashed(raw, stats)
        try:
            if fmt in ("parquet", "arrow"):
                # a parquet reader seeks (it starts at the footer), as an Arrow one does to tell the IPC file
                # format from the stream one, so the hash gets a pass of its own
                while hashed.read(1 << 20):
                    pass
                chunks = _parquet_chunks if fmt == "parquet" else _arrow_chunks
                with gzip.open(path, "rb") if gz else open(path, "rb") as f:
                    yield from chunks(f, path, cfg.field)  # type: ignore[arg-type]
            else:
                binary: BinaryIO = io.BufferedReader(hashed, 1 << 18)  # type: ignore[assignment]
                if gz:
                    binary = gzip.GzipFile(fileobj=binary, mode="rb")  # type: ignore[assignment]
                # utf-8-sig drops a byte-order mark; csv needs newline="" to see quoted newlines itself
                newline = "" if fmt in ("csv", "tsv") else None
                text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="lmforge.replace", newline=newline)
                if fmt == "txt":
                    yield from _txt_chunks(text, cfg.txt_documents, max_chars, stats)
                elif fmt == "jsonl":
                    yield from _jsonl_chunks(text, path, cfg.field, stats)
                else:
                    yield from _csv_chunks(text, path, cfg.field, "\t" if fmt == "tsv" else ",", stats)
            while hashed.read(1 << 20):  # hash the whole file even where a reader stopped before its end
                pass
        except (EOFError, OSError, zlib.error) as e:  # a truncated or corrupt .gz
            raise DataError(f"{path}: unreadable ({e})") from None
    # a few undecodable bytes are repaired and counted; a file full of them (or of NULs, as UTF-16 text
    # read as UTF-8 is) is binary or in another encoding, and training on its replacement marks is no use
    bad, chars = stats.replaced_chars + stats.nul_chars - before[0], stats.chars_read - before[1]
    if require_text and bad > max(16, chars // 100):  # more than 1 %, and more than a stray few
        raise DataError(f"{path}: not UTF-8 text ({bad:,} of {chars:,} characters undecodable or NUL): a binary "
                        "file, or text in another encoding (convert it: iconv -f ENCODING -t UTF-8)")
    stats.files += 1
    stats.sources.append({"path": str(path), "bytes": hashed.nbytes, "sha256": hashed.sha.hexdigest(),
                          "mtime_ns": mtime_ns})


def _default_chunks(stats: ReadStats) -> Iterator[tuple[str, bool]]:
    sha, nbytes = hashlib.sha256(), 0
    for doc in default_documents():
        data = doc.encode("utf-8")
        sha.update(data + b"\0")
        nbytes += len(data)
        stats.bytes_read += len(data)
        yield doc, True
    stats.sources.append({"path": DEFAULT_SOURCE, "bytes": nbytes, "sha256": sha.hexdigest(), "mtime_ns": None})


def iter_pieces(cfg: DataConfig, stats: ReadStats | None = None, max_chars: int = PIECE_CHARS,
                require_text: bool = True) -> Iterator[tuple[str, bool]]:
    """Stream the corpus as (text piece, ends_document); pieces hold at most max_chars characters. With
    `require_text`, a file that is mostly undecodable or NUL is a DataError; the text stages turn it off,
    since their cleaner repairs and counts such input (its `binary` guard, docs/cleaning.md)."""
    stats = stats if stats is not None else ReadStats()
    if cfg.path is None:
        yield from _pieces(_default_chunks(stats), max_chars, stats)
        return
    if is_hub(cfg.path):
        yield from _pieces(_hub_chunks(cfg, stats), max_chars, stats)
        return
    for path in list_sources(cfg.path, cfg.split):
        yield from _pieces(_file_chunks(path, cfg, max_chars, stats, require_text), max_chars, stats)


_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "ensurepip", "turtledemo", "__pycache__"}
_MIN_DOCSTRING = 200


@functools.cache
def default_documents() -> tuple[str, ...]:
    """The built-in corpus (see the module docstring); cached, as parsing the stdlib takes seconds."""
    from pydoc_data.topics import topics

    docs = list(dict.fromkeys(topics[k] for k in sorted(topics)))  # two topics share a text
    seen = set(docs)
    root = Path(sysconfig.get_paths()["stdlib"])
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(Path(dirpath, name).read_bytes())
            except (SyntaxError, ValueError, OSError):
                continue  # a broken or unreadable stdlib file costs a few docstrings, not the corpus
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= _MIN_DOCSTRING and doc not in seen:
                        seen.add(doc)
                        docs.append(doc)
    return tuple(docs)


def stat_sources(cfg: DataConfig) -> list[dict]:
    """The (path, bytes, mtime_ns) a fresh read of the corpus or of each of its mixture's sources (and of its
    separate validation and test corpora) would record, from file metadata only; for an `hf:` corpus, its name,
    config, split and revision (nothing is fetched)."""
    out = [{"path": DEFAULT_SOURCE}] if cfg.path is None and not cfg.sources else []
    for path, split in ((cfg.path, cfg.split), *((s.path, cfg.split) for s in cfg.sources or ()),
                        (cfg.val_path, cfg.val_split), (cfg.test_path, cfg.test_split)):
        if is_hub(path):
            out.append(hub_source(path, split, cfg))  # type: ignore[arg-type]
            continue
        for p in list_sources(path, split) if path is not None else []:
            st = p.stat()
            out.append({"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out

