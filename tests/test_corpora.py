import csv
import gzip
import hashlib
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.config import DataConfig
from lmforge.corpora import DEFAULT_SOURCE, ReadStats, default_documents, iter_pieces, list_sources, stat_sources
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


def write_arrow(path, table: pa.Table, file_format: bool = False, batch_rows: int = 2, gz: bool = False):
    """`table` as an Arrow IPC stream (what datasets writes) or IPC file, in batches of batch_rows rows."""
    sink = pa.BufferOutputStream()
    writer = (pa.ipc.new_file if file_format else pa.ipc.new_stream)(sink, table.schema)
    writer.write_table(table, max_chunksize=batch_rows)
    writer.close()
    data = sink.getvalue().to_pybytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("file_format", [False, True], ids=["stream", "file"])
def test_arrow_files_both_ipc_formats(tmp_path, file_format, gz):
    path = write_arrow(tmp_path / ("c.arrow.gz" if gz else "c.arrow"), pa.table({"id": [0, 1, 2], "text": DOCS}),
                       file_format, gz=gz)
    stats = ReadStats()
    assert documents(path, stats) == DOCS
    raw = path.read_bytes()
    assert stats.files == 1 and stats.bytes_read == len(raw) and stats.sources[0]["sha256"] == hashlib.sha256(raw).hexdigest()
    with pytest.raises(DataError, match=r"c\.arrow(\.gz)?: column 'id' holds int64, not strings"):
        documents(path, field="id")
    with pytest.raises(DataError, match=r"c\.arrow(\.gz)?: no column 'body' \(columns: id, text\)"):
        documents(path, field="body")


@pytest.mark.parametrize("file_format", [False, True], ids=["stream", "file"])
def test_arrow_is_read_a_record_batch_at_a_time(tmp_path, file_format):
    # 32 batches of ~1 MB; pyarrow reads a Python file into bytes objects, which tracemalloc sees
    table = pa.table({"text": [f"{i:06d} " + "x" * 100_000 for i in range(320)]})
    path = write_arrow(tmp_path / "big.arrow", table, file_format, batch_rows=10)
    del table
    tracemalloc.start()
    try:
        n = sum(end for _, end in iter_pieces(DataConfig(path=str(path))))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 320 and peak < 8_000_000, peak  # the file is 32 MB; reading it whole peaks above that


def save_to_disk(folder, texts, num_shards=1, **columns):
    import datasets

    datasets.Dataset.from_dict({"text": texts, **columns}).save_to_disk(str(folder), num_shards=num_shards)
    return folder


def test_a_save_to_disk_folder_is_its_arrow_files_in_order(tmp_path):
    texts = [f"doc {i}" for i in range(25)]
    folder = save_to_disk(tmp_path / "ds", texts, num_shards=3, label=list(range(25)))
    files = list_sources(str(folder))
    assert [f.name for f in files] == [f"data-0000{i}-of-00003.arrow" for i in range(3)]
    assert documents(folder) == texts
    with pytest.raises(DataError, match=r"ds/data-00000-of-00003\.arrow: no column 'body' \(columns: text, label\)"):
        documents(folder, field="body")


def test_a_datasetdict_folder_reads_the_chosen_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"]}),
                               "validation": datasets.Dataset.from_dict({"text": ["v"]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert documents(tmp_path / "dd") == ["a", "b"]
    assert documents(tmp_path / "dd", split="validation") == ["v"]
    with pytest.raises(DataError, match=r"dd: no split 'test' in this DatasetDict folder \(splits: train, "
                                        r"validation\); choose one with data.split"):
        documents(tmp_path / "dd", split="test")
    with pytest.raises(DataError, match=rf"{tmp_path}: holds a datasets save_to_disk folder, {tmp_path}/dd/train: "
                                        "give that folder as the path"):
        documents(tmp_path)  # not every split's files, one after another


@pytest.mark.parametrize("damage,message", [
    ("no-state", r"ds: has dataset_info\.json but no state\.json: not a whole Dataset\.save_to_disk folder"),
    ("state-of-a-checkpoint", r"ds: state\.json is not a datasets save_to_disk state"),
    ("state-not-json", r"ds/state\.json: not readable JSON"),
    ("state-lists-a-missing-file", r"ds/data-00000-of-00001\.arrow: missing, though .*ds/state\.json lists it"),
    ("state-lists-a-path", r"ds: state\.json is not a datasets save_to_disk state"),
    ("dict-without-splits", r"ds: dataset_dict\.json has no list of splits"),
    ("dict-split-folder-missing", r"ds/train: missing, though dataset_dict\.json lists split 'train'"),
])
def test_a_datasets_folder_of_the_wrong_kind_is_one_line_naming_it(tmp_path, damage, message):
    folder = save_to_disk(tmp_path / "ds", ["a", "b"])
    (folder / "notes.txt").write_text("a text file that a plain folder read would take")
    if damage == "no-state":
        (folder / "state.json").unlink()
    elif damage == "state-of-a-checkpoint":
        (folder / "state.json").write_text(json.dumps({"step": 4, "tokens_seen": 100}))
    elif damage == "state-not-json":
        (folder / "state.json").write_text("{not json")
    elif damage == "state-lists-a-missing-file":
        (folder / "data-00000-of-00001.arrow").unlink()
    elif damage == "state-lists-a-path":
        (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../x.arrow"}]}))
    elif damage == "dict-without-splits":
        (folder / "dataset_dict.json").write_text(json.dumps({"split": "train"}))
    else:
        (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(DataError, match=message) as e:
        documents(folder)
    assert "\n" not in str(e.value)


def local_hub(tmp_path, fmt="jsonl"):
    """A folder `datasets.load_dataset` takes as a dataset: train and test files, found by their names."""
    folder = tmp_path / "hub"
    folder.mkdir()
    for split, texts in (("train", DOCS), ("test", ["held out"])):
        if fmt == "parquet":
            pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), folder / f"{split}.parquet")
        else:
            (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n"
                                                             for i, t in enumerate(texts)))
    return folder


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_an_hf_dataset_is_streamed_by_load_dataset(tmp_path, fmt, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = local_hub(tmp_path, fmt)
    built = []
    real = datasets.load_dataset_builder
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda *a, **k: built.append((a, k)) or real(*a, **k))
    stats = ReadStats()
    assert documents(f"hf:{folder}", stats) == DOCS
    assert built == [((str(folder), None), {"revision": None})]
    assert documents(f"hf:{folder}", split="test") == ["held out"]
    source = stats.sources[0]
    assert {k: source[k] for k in ("path", "config", "split", "revision")} == \
        {"path": f"hf:{folder}", "config": None, "split": "train", "revision": None}
    text = "".join(d + "\0" for d in DOCS).encode()
    assert source["sha256"] == hashlib.sha256(text).hexdigest() and source["bytes"] == len(text) - len(DOCS)
    assert isinstance(source["fingerprint"], str) and source["fingerprint"]
    # nothing to stat: the staleness check compares what names the dataset
    assert stat_sources(DataConfig(path=f"hf:{folder}", hf_config="c", hf_revision="v1")) == \
        [{"path": f"hf:{folder}", "config": "c", "split": "train", "revision": "v1"}]
    assert list_sources(f"hf:{folder}") == []


def test_hf_dataset_errors_are_one_line_naming_the_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = local_hub(tmp_path)
    with pytest.raises(DataError, match=rf"hf:{folder} \(split 'train'\): no field 'body' \(fields: text, id\)"):
        documents(f"hf:{folder}", field="body")
    with pytest.raises(DataError, match=rf"hf:{folder} \(split 'dev'\): cannot load the dataset \(Bad split: dev"):
        documents(f"hf:{folder}", split="dev")
    with pytest.raises(DataError, match=r"hf:no-such-user/no-such-set \(split 'train'\): cannot load the dataset"):
        documents("hf:no-such-user/no-such-set")
