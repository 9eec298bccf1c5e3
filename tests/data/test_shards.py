import os
from pathlib import Path

import numpy as np
import pytest
from test_prepare import DOCS, config

from lmforge.config import load_config
from lmforge.data.shards import encode_file, load_prepared, prepared_dir
from lmforge.errors import DataError
from lmforge.prepare import ensure_prepared, prepare
from lmforge.tokenizer import Tokenizer


def test_default_dir_is_keyed_by_the_data_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config(tmp_path, "data.prepared_dir=null")
    assert prepared_dir(cfg) == Path("prepared") / cfg.data_key()
    assert ensure_prepared(cfg, progress=False) == Path("prepared") / cfg.data_key()
    other = config(tmp_path, "data.prepared_dir=null", "tokenizer.vocab_size=280")
    assert prepared_dir(other) != prepared_dir(cfg)


def test_an_existing_tokenizer_and_encode_file(tmp_path):
    first = load_prepared(prepare(config(tmp_path), progress=False))
    first.tokenizer.save(tmp_path / "tok.json")
    cfg = config(tmp_path, f"tokenizer.path={tmp_path / 'tok.json'}", f"data.prepared_dir={tmp_path / 'again'}")
    again = load_prepared(ensure_prepared(cfg, progress=False))
    assert again.tokenizer.sha256 == first.tokenizer.sha256
    assert np.array_equal(np.concatenate(again.split("train")), np.concatenate(first.split("train")))

    tokens, n_bytes = encode_file(first.tokenizer, cfg.data.path, cfg.data)
    assert tokens.dtype == np.uint16 and n_bytes == sum(len(d.encode()) for d in DOCS)
    assert tokens.tolist() == np.concatenate(first.split("train") + first.split("val")).tolist()


def test_a_large_vocabulary_uses_uint32(tmp_path):
    corpus = tmp_path / "chars.txt"
    corpus.write_text("".join(chr(c) for c in range(0x20000, 0x20000 + 66_000)))  # CJK extensions B and on
    cfg = load_config(None, [f"data.path={corpus}", "tokenizer.kind=char", "tokenizer.eod=false"])
    data = load_prepared(prepare(cfg, tmp_path / "out", progress=False))
    assert data.meta["dtype"] == "uint32" and data.tokenizer.vocab_size == 66_001
    tokens = np.concatenate(data.split("train") + data.split("val"))
    assert data.tokenizer.decode(tokens) == corpus.read_text()


def test_bad_corpora_and_directories(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": ""}\n{"text": "  "}\n')
    with pytest.raises(DataError, match=rf"^{empty}: corpus is empty$"):
        prepare(config(tmp_path, f"data.path={empty}"), progress=False)
    with pytest.raises(DataError, match=rf"^{empty}: corpus is empty$"):  # also with a ready tokenizer
        Tokenizer.train(config(tmp_path).tokenizer, ["some text"]).save(tmp_path / "tok.json")
        prepare(config(tmp_path, f"data.path={empty}", f"tokenizer.path={tmp_path / 'tok.json'}"), progress=False)
    assert not (tmp_path / "prepared").exists()  # nothing half-written

    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc")
    with pytest.raises(DataError, match=r"the validation split has 1 tokens of 4 \(data.val_fraction=0.1\)"):
        prepare(config(tmp_path, f"data.path={tiny}", "tokenizer.kind=char"), progress=False)

    with pytest.raises(DataError, match="no meta.json"):
        load_prepared(tmp_path)
    out = prepare(config(tmp_path), progress=False)
    (out / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match=r"meta\.json: unreadable"):
        load_prepared(out)
    os.remove(out / "meta.json")
    with pytest.raises(DataError, match="no meta.json"):
        load_prepared(out)
