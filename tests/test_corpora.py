import csv
import gzip
import hashlib
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.config import DataConfig
from lmforge.corpora import DEFAULT_SOURCE, ReadStats, default_documents, iter_pieces, list_sources
from lmforge.errors import DataError

DOCS = ['first doc, with "quotes", commas\tand a tab', "second\nspans two lines", "ünïcödé third ✓"]


def documents(path, stats=None, **cfg) -> list[str]:
    """The corpus at `path` as whole documents (pieces joined)."""
    docs, current = [], []
    for piece, end in iter_pieces(DataConfig(path=str(path), **cfg), stats):
        current.append(piece)
        if end:
            docs.append("".join(current))
            current = []
    assert not current, "the last piece must end its document"
    return docs


def write(path, fmt: str, docs: list, gz: bool = False):
    """Write docs as a file of format fmt (txt: one document per file) under path, optionally gzipped."""
    if fmt == "parquet":
        pq.write_table(pa.table({"id": list(range(len(docs))), "text": docs}), path, row_group_size=2)
        data = path.read_bytes()
    elif fmt == "jsonl":
        data = "".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)).encode()
    elif fmt in ("csv", "tsv"):
        path.write_text("")
        with open(path, "w", newline="", encoding="utf-8") as f:
            if fmt == "tsv":  # GLUE style: no quoting, so documents must not hold tabs or newlines
                f.write("id\ttext\n" + "".join(f"{i}\t{d}\n" for i, d in enumerate(docs)))
            else:
                w = csv.writer(f)
                w.writerow(["id", "text"])
                w.writerows(enumerate(docs))
        data = path.read_bytes()
    else:
        data = "".join(docs).encode()
    if gz:
        path.unlink(missing_ok=True)
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_record_formats(tmp_path, fmt, gz):
    path = write(tmp_path / f"c.{fmt}", fmt, DOCS, gz)
    stats = ReadStats()
    assert documents(path, stats) == DOCS
    raw = path.read_bytes()
    assert stats.files == 1 and stats.documents == 3 and stats.bytes_read == len(raw)
    assert stats.sources == [{"path": str(path), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                              "mtime_ns": path.stat().st_mtime_ns}]


@pytest.mark.parametrize("gz", [False, True])
def test_tsv_does_not_treat_quotes_as_quoting(tmp_path, gz):
    docs = ['"a quote at the start', "it 's a tsv , as in glue ", "ok"]
    assert documents(write(tmp_path / "c.tsv", "tsv", docs, gz)) == docs


def test_csv_keeps_long_fields_and_quoted_newlines(tmp_path):
    docs = ["x" * 300_000, "a,b\nc"]  # beyond the csv module's default 128 KiB field limit
    assert documents(write(tmp_path / "c.csv", "csv", docs)) == docs


@pytest.mark.parametrize("gz", [False, True])
def test_txt_modes(tmp_path, gz):
    path = write(tmp_path / "c.txt", "txt", ["para one\nline two\n\n  \n\npara two\n\nlast line no newline"], gz)
    assert documents(path) == ["para one\nline two\n\n  \n\npara two\n\nlast line no newline"]
    assert documents(path, txt_documents="blank_line") == ["para one\nline two\n", "para two\n", "last line no newline"]
    stats = ReadStats()
    assert documents(path, stats, txt_documents="line") == ["para one\n", "line two\n", "para two\n",
                                                            "last line no newline"]
    assert stats.empty_documents == 4  # the blank and whitespace-only lines


def test_format_override_and_unknown_extension(tmp_path):
    log = tmp_path / "records.log"
    log.write_text('{"body": "from a .log file"}\n')
    assert documents(log, format="jsonl", field="body") == ["from a .log file"]
    raw = tmp_path / "wiki.valid.raw"  # a file named explicitly is text when its extension says nothing
    raw.write_text("plain text")
    assert documents(raw) == ["plain text"]


def test_folder_is_recursive_sorted_and_filtered(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    write(tmp_path / "b" / "2.txt", "txt", ["two"])
    write(tmp_path / "b" / "1.jsonl", "jsonl", ["one"], gz=True)
    write(tmp_path / "a.txt", "txt", ["zero"])
    (tmp_path / "notes.md").write_text("not a corpus file")
    (tmp_path / ".hidden" / "x.txt").write_text("hidden")
    assert [p.relative_to(tmp_path).as_posix() for p in list_sources(str(tmp_path))] == \
        ["a.txt", "b/1.jsonl.gz", "b/2.txt"]
    assert documents(tmp_path) == ["zero", "one", "two"]
    assert documents(tmp_path / "b" / "*.txt") == ["two"]
    assert documents(f"{tmp_path}/**/*.txt") == ["zero", "two"]


def test_missing_paths_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt: no such file"):
        list_sources(str(tmp_path / "nope.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \.txt/\.jsonl/.* files found"):
        list_sources(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="no files match"):
        list_sources(str(tmp_path / "*.parquet"))


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": oops}\n')
    with pytest.raises(DataError, match=rf"^{path} line 3: not valid JSON"):
        documents(path)
    path.write_text('{"text": "fine"}\n{"body": "x", "id": 1}\n')
    with pytest.raises(DataError, match=rf"^{path} line 2: no field 'text' \(fields: body, id\)$"):
        documents(path)
    path.write_text('{"text": 3}\n')
    with pytest.raises(DataError, match=rf"^{path} line 1: field 'text' holds int, not a string"):
        documents(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match=rf"^{path} line 1: expected a JSON object"):
        documents(path)


def test_table_errors_list_the_columns(tmp_path):
    path = write(tmp_path / "c.csv", "csv", DOCS)
    with pytest.raises(DataError, match=rf"^{path}: no column 'body' \(columns: id, text\)$"):
        documents(path, field="body")
    path = write(tmp_path / "c.parquet", "parquet", DOCS)
    with pytest.raises(DataError, match=rf"^{path}: no column 'body' \(columns: id, text\)$"):
        documents(path, field="body")
    with pytest.raises(DataError, match="column 'id' holds int64, not strings"):
        documents(path, field="id")
    packed = gzip.compress(bytes(range(256)) * 400)
    bad = tmp_path / "trunc.txt.gz"
    bad.write_bytes(packed[:-20])
    with pytest.raises(DataError, match=rf"^{bad}: unreadable"):
        documents(bad)
    bad.write_bytes(packed[:40] + bytes(b ^ 0x55 for b in packed[40:80]) + packed[80:])
    with pytest.raises(DataError, match=rf"^{bad}: unreadable"):
        documents(bad)


def test_undecodable_bytes_are_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok \xff\xfe bad \xe2\x9c\x93 real \xef\xbf\xbd then cut \xc3")
    stats = ReadStats()
    assert documents(path, stats) == ["ok \ufffd\ufffd bad \u2713 real \ufffd then cut \ufffd"]
    assert stats.replaced_chars == 3  # the U+FFFD that was in the file is not counted


def test_empty_documents_are_skipped_and_counted(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n{"text": ""}\n{"text": "  \\n "}\n{"text": null}\n{"text": "b"}\n')
    stats = ReadStats()
    assert documents(path, stats) == ["a", "b"]
    assert (stats.documents, stats.empty_documents) == (2, 3)


def test_a_huge_line_streams_in_bounded_pieces(tmp_path):
    path = tmp_path / "one-line.txt"
    text = "lorem " * 900_000  # 5.4 MB, no newline
    path.write_text(text)
    limit = 1 << 16
    for mode in ("file", "line", "blank_line"):
        tracemalloc.start()
        pieces = []
        for piece, end in iter_pieces(DataConfig(path=str(path), txt_documents=mode), max_chars=limit):
            # every cut lands before a space, where a tokenizer would split anyway
            assert len(piece) <= limit and (end or piece.endswith("m"))
            pieces.append((len(piece), end))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert sum(n for n, _ in pieces) == len(text) and len(pieces) > 80
        assert [e for _, e in pieces] == [False] * (len(pieces) - 1) + [True]
        assert peak < 0.4 * len(text), f"{mode}: peak {peak:,} bytes while streaming {len(text):,}"


def test_long_documents_cut_after_newlines(tmp_path):
    path = tmp_path / "lines.txt"
    lines = [f"line {i} " + "x" * (i % 50) + "\n" for i in range(5000)]
    path.write_text("".join(lines))
    pieces = [p for p, _ in iter_pieces(DataConfig(path=str(path)), max_chars=4096)]
    assert "".join(pieces) == "".join(lines)
    assert all(p.endswith("\n") for p in pieces) and max(map(len, pieces)) <= 4096


def test_default_corpus_is_python_docs_and_deterministic():
    docs = default_documents()
    size = sum(len(d.encode()) for d in docs)
    assert 1_500_000 <= size <= 3_000_000
    assert docs == default_documents.__wrapped__()  # a fresh walk of the stdlib gives the same corpus
    assert len(set(docs)) == len(docs) and all(len(d) >= 200 for d in docs[100:])
    stats = ReadStats()
    first = next(iter_pieces(DataConfig(), stats))
    assert first == (docs[0], True)
    for _ in iter_pieces(DataConfig(), stats):
        pass
    assert stats.sources[-1]["path"] == DEFAULT_SOURCE and stats.sources[-1]["bytes"] == size
