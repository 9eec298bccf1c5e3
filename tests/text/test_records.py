import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.config import DataConfig
from lmforge.corpora import ReadStats
from lmforge.errors import DataError
from lmforge.text.records import Doc, DocWriter, Malformed, docs_of_pieces, partition_slice, read_docs


def read(path, max_chars=1 << 20, **data):
    stats, bad = ReadStats(), Malformed()
    docs = list(read_docs(DataConfig(path=str(path), **data), stats, bad, max_chars))
    return docs, stats, bad


def test_structured_records_keep_their_other_fields(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "one", "label": 1, "meta": {"k": [1]}}\n\n{"text": null, "label": 0}\n')
    (tmp_path / "b.csv").write_text('id,text,label\n7,"two, quoted\nlines",pos\n8,short\n')
    with gzip.open(tmp_path / "c.tsv.gz", "wt") as f:
        f.write('text\tlabel\n"three\tneg\n')
    pq.write_table(pa.table({"text": ["four", None], "score": [0.5, 1.5]}), tmp_path / "d.parquet")
    docs, stats, bad = read(tmp_path)
    assert [(d.text, d.fields) for d in docs] == [
        ("one", {"label": 1, "meta": {"k": [1]}}), ("two, quoted\nlines", {"id": "7", "label": "pos"}),
        ('"three', {"label": "neg"}), ("four", {"score": 0.5})]
    assert (stats.documents, stats.empty_documents, stats.files) == (4, 2, 4)
    assert bad.count == 1 and "b.csv line 4: expected 3 columns" in bad.where[0]


def test_invalid_utf8_and_json_escaped_surrogates_are_replaced_and_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "caf\xe9 \xef\xbf\xbd ok"}\n{"text": "lone \\ud800 surrogate"}\n')
    docs, stats, _ = read(path)
    assert [d.text for d in docs] == ["caf\ufffd \ufffd ok", "lone \ufffd surrogate"]
    assert stats.replaced_chars == 2  # the U+FFFD that was valid UTF-8 is not counted


def test_a_structured_column_that_is_missing_is_one_line_error(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="no column 'text'"):
        read(tmp_path / "x.csv")


def test_long_texts_come_in_pieces_cut_at_whitespace(tmp_path):
    text = " ".join(f"w{i}" for i in range(3000))
    (tmp_path / "l.jsonl").write_text(json.dumps({"text": text, "id": 1}) + "\n")
    docs, _, _ = read(tmp_path / "l.jsonl", max_chars=1024)
    assert len(docs) > 10 and "".join(d.text for d in docs) == text
    assert [d.first for d in docs[:2]] == [True, False] and docs[-1].last and docs[-1].fields == {"id": 1}
    assert all(d.fields is None and not d.text[:1].isspace() for d in docs[1:-1])


def test_docs_of_pieces_moves_leading_whitespace_back():
    docs = list(docs_of_pieces([("a b", False), (" c\n", False), ("\nd", True), (" e", True)]))
    assert [(d.text, d.first, d.last) for d in docs] == [("a b ", True, False), ("c\n\n", False, False),
                                                        ("d", False, True), (" e", True, True)]


def test_partition_slices_are_contiguous_and_cover_everything():
    docs = [Doc(str(i)) for i in range(10)]
    slices = [[d.text for d in partition_slice(iter(docs), 3, i, 10)] for i in range(3)]
    assert slices == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8", "9"]]


def test_writer_joins_pieces_and_is_atomic(tmp_path):
    out = tmp_path / "o.jsonl"
    with DocWriter(out, "review") as w:
        w.write('say "hi"\n', None, True, False)
        w.write("", None, False, False)
        w.write("there", {"label": 1}, False, True)
        w.write("", {"label": 2}, True, True)  # a removed document writes nothing
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"review": 'say "hi"\nthere', "label": 1}]
    txt = tmp_path / "o.txt"
    with DocWriter(txt) as w:
        w.write("one", None)
        w.write("two", None)
    assert txt.read_text() == "one\n\ntwo\n"
    with pytest.raises(RuntimeError):
        with DocWriter(tmp_path / "never.txt") as w:
            w.write("half", None)
            raise RuntimeError("killed")
    assert not (tmp_path / "never.txt").exists() and len(list(tmp_path.iterdir())) == 2
