"""Task-file readers: tables in every format, and a missing column named."""

import json

import pytest

from lmforge.data.taskfiles import column, read_table
from lmforge.errors import DataError


def test_tables_in_every_format(tmp_path):
    (tmp_path / "a.tsv").write_text('sentence\tlabel\nit \'s "fine" \t1\n')
    (tmp_path / "a.csv").write_text('sentence,label\n"it \'s, fine",1\n')
    (tmp_path / "a.jsonl").write_text(json.dumps({"sentence": "it 's fine", "label": 1}) + "\n")
    assert column(read_table(tmp_path / "a.tsv", "auto", "sentence"), "sentence", "text") == ['it \'s "fine"']
    assert column(read_table(tmp_path / "a.csv", "auto", "sentence"), "sentence", "text") == ["it 's, fine"]
    assert column(read_table(tmp_path / "a.jsonl", "auto", "sentence"), "label", "label") == ["1"]


def test_missing_text_column_is_named(tmp_path):
    (tmp_path / "a.tsv").write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(DataError, match=r"a.tsv: no text column 'text' \(columns: sentence, label\)"):
        column(read_table(tmp_path / "a.tsv", "auto", "text"), "text", "text")
