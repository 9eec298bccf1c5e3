"""Bad files in every format a corpus reader takes, generated: each kind of damage that applies to a format,
plain and gzipped, at seeded positions. `corpus_files()` is the list; each entry writes its file into a folder
and says what the one-line error must contain besides the file's name."""

import gzip
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

DOCS = [f"document {i}: the cat sat on the mat and then it ran to see the dog" for i in range(40)]
FRENCH = "Les élèves étaient très fâchés à cause de la pièce où ça s'était passé. " * 30


EMPTY = ("empty", "no documents", "fewer than 2 tokens to evaluate")
DIRTY = {"binary", "latin-1", "utf-16", "gz-of-binary", "nul-bytes", "malformed", "not-an-object", "trailing-garbage",
         "missing-field", "cut-mid-record", "cut-mid-record.gz", "short-row"}


@dataclass(frozen=True)
class BadFile:
    id: str  # "jsonl/malformed@17"
    name: str  # the file's name, its extension the format
    content: Callable[[], bytes]
    needle: str | tuple[str, ...] = ""  # what the error says besides the file's name (one of them)

    @property
    def dirty(self) -> bool:
        """Damage inside the text (bad bytes, a bad record among good ones) that the text stages repair or skip
        and count, by design (docs/cleaning.md), where training and evaluation refuse the file."""
        kind = self.id.split("/", 1)[1].split("@")[0]
        return kind in DIRTY or kind.startswith("field-is-")


def _binary(n: int = 4096, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def _jsonl(records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def _csv(rows, sep: str = ",", header: str = "text") -> bytes:
    return (header + "\n" + "".join(r + "\n" for r in rows)).encode()


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _arrow(table: pa.Table, file_format: bool = False) -> bytes:
    sink = pa.BufferOutputStream()
    writer = (pa.ipc.new_file if file_format else pa.ipc.new_stream)(sink, table.schema)
    writer.write_table(table, max_chunksize=8)
    writer.close()
    return sink.getvalue().to_pybytes()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _text_kinds(fmt: str) -> dict[str, tuple[Callable[[], bytes], str]]:
    """Damage that every text format shares: (content, needle)."""
    good = {"txt": lambda: "\n\n".join(DOCS).encode(), "jsonl": lambda: _jsonl({"text": d} for d in DOCS),
            "csv": lambda: _csv(f'"{d}"' for d in DOCS), "tsv": lambda: _csv(DOCS)}[fmt]
    return {
        "binary": (lambda: _binary(), "not UTF-8 text" if fmt == "txt" else ""),
        "latin-1": (lambda: good().decode().replace("cat", FRENCH).encode("latin-1"), "not UTF-8 text"),
        "utf-16": (lambda: good().decode().encode("utf-16"),
                   {"txt": "not UTF-8 text", "jsonl": ("NUL bytes, so UTF-16", "malformed records")}.get(
                       fmt, "header is not UTF-8 text")),
        "gz-truncated": (lambda: _half(_gzip(good())), "unreadable"),
        "gz-of-binary": (lambda: _gzip(_binary()), "not UTF-8 text" if fmt == "txt" else ""),
        "not-gzip": (lambda: good(), "unreadable"),
    }


def corpus_files() -> list[BadFile]:
    rng = random.Random(20)
    out: list[BadFile] = []

    def add(fmt: str, kind: str, content, needle: str = "", gz: bool | None = None):
        gz = kind.startswith("gz") or kind == "not-gzip" if gz is None else gz
        out.append(BadFile(f"{fmt}/{kind}", f"bad.{fmt}{'.gz' if gz else ''}", content, needle))

    for fmt in ("txt", "jsonl", "csv", "tsv"):
        add(fmt, "empty", lambda: b"", EMPTY)
        add(fmt, "empty.gz", lambda: _gzip(b""), EMPTY, gz=True)
        for kind, (content, needle) in _text_kinds(fmt).items():
            add(fmt, kind, content, needle)
    add("txt", "blank", lambda: b"  \n\n \t\n", EMPTY)
    add("txt", "nul-bytes", lambda: "\n".join(DOCS).replace("cat", "c\0a\0t\0" * 20).encode(), "not UTF-8 text")

    for at in sorted(rng.sample(range(len(DOCS)), 3)):
        for what, bad in (("malformed", '{"text": "unclosed'), ("not-an-object", '["text"]'),
                          ("trailing-garbage", '{"text": "x"} }')):
            records = [{"text": d} for d in DOCS]
            records[at] = bad
            add("jsonl", f"{what}@{at + 1}", lambda r=records: _jsonl(r), f"line {at + 1}")
        records = [{"text": d} for d in DOCS]
        records[at] = {"body": DOCS[at]}
        add("jsonl", f"missing-field@{at + 1}", lambda r=records: _jsonl(r), f"line {at + 1}: no field 'text'")
    for name, value in (("number", 3), ("list", ["a"]), ("object", {"a": 1}), ("bool", True)):
        add("jsonl", f"field-is-{name}", lambda v=value: _jsonl([{"text": DOCS[0]}, {"text": v}]),
            "line 2: field 'text' holds")
    add("jsonl", "cut-mid-record", lambda: _jsonl({"text": d} for d in DOCS)[:-20], "not valid JSON")
    add("jsonl", "cut-mid-record.gz", lambda: _gzip(_jsonl({"text": d} for d in DOCS)[:-20]), "not valid JSON",
        gz=True)

    for fmt, sep in (("csv", ","), ("tsv", "\t")):
        add(fmt, "no-text-column", lambda s=sep: _csv(DOCS, s, header="body"), "no column 'text'")
        add(fmt, "header-only", lambda s=sep: _csv([], s, header=f"id{s}text"), EMPTY)
        at = rng.randrange(2, len(DOCS))
        rows = [f"{i}{sep}{d}" for i, d in enumerate(DOCS)]
        rows[at] = str(at)
        add(fmt, f"short-row@{at + 2}", lambda r=rows, s=sep: _csv(r, s, header=f"id{s}text"),
            f"line {at + 2}: 1 columns")
    add("csv", "unterminated-quote", lambda: _csv([*DOCS[:5], '"never closed, ' + DOCS[6]]), "")

    table = pa.table({"text": DOCS})
    add("parquet", "empty", lambda: b"", "not a readable parquet file")
    add("parquet", "binary", lambda: _binary(), "not a readable parquet file")
    add("parquet", "truncated", lambda: _half(_parquet(table)), "not a readable parquet file")
    add("parquet", "footer-only", lambda: _parquet(table)[-200:], "not a readable parquet file")
    add("parquet", "no-text-column", lambda: _parquet(pa.table({"body": DOCS})), "no column 'text'")
    add("parquet", "int-column", lambda: _parquet(pa.table({"text": list(range(40))})), "not strings")
    add("parquet", "gz-truncated", lambda: _half(_gzip(_parquet(table))), "", gz=True)
    add("parquet", "not-gzip", lambda: _parquet(table), "", gz=True)
    add("parquet", "no-rows", lambda: _parquet(table.slice(0, 0)), EMPTY)

    add("arrow", "empty", lambda: b"", "not a readable Arrow IPC file")
    add("arrow", "binary", lambda: _binary(), "not a readable Arrow IPC file")
    add("arrow", "stream-truncated", lambda: _half(_arrow(table)), "unreadable Arrow IPC data")
    add("arrow", "file-truncated", lambda: _half(_arrow(table, file_format=True)), "not a readable Arrow IPC file")
    add("arrow", "no-text-column", lambda: _arrow(pa.table({"body": DOCS})), "no column 'text'")
    add("arrow", "int-column", lambda: _arrow(pa.table({"text": list(range(40))})), "not strings")
    return out


def write(bad: BadFile, folder: Path) -> Path:
    path = Path(folder) / bad.name
    path.write_bytes(bad.content())
    return path
