"""The prepare recipe: shards, splits and meta.json written from a corpus, reused while current, and the
recipe's clean and curate stages run before tokenizing."""

import csv
import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shared_data import SHARED_DATA

from lmforge.config import Config, load_config
from lmforge.corpora import iter_pieces
from lmforge.data.shards import PIECE_CHARS, load_prepared
from lmforge.errors import ConfigError, DataError
from lmforge.prepare import ensure_prepared, prepare

SHAKESPEARE = SHARED_DATA / "tinyshakespeare" / "input.txt"
DOCS = [f"document {i}: " + "the cat sat on the mat. " * (i % 7 + 1) for i in range(200)]


def config(tmp_path: Path, *overrides: str) -> Config:
    corpus = tmp_path / "corpus.jsonl"
    if not corpus.exists():
        corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    return load_config(None, [f"data.path={corpus}", f"data.prepared_dir={tmp_path / 'prepared'}",
                              "data.shard_tokens=1024", "data.encode_batch_bytes=2048", "tokenizer.kind=bpe",
                              "tokenizer.vocab_size=300", *overrides])


def test_prepare_writes_shards_splits_and_meta(tmp_path):
    cfg = config(tmp_path)
    out = prepare(cfg, progress=False)
    assert out == tmp_path / "prepared" and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    data = load_prepared(out)
    meta, tok = data.meta, data.tokenizer
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == tok.vocab_size <= 300  # few merges to learn
    assert meta["data_key"] == cfg.data_key() and meta["tokenizer_sha256"] == tok.sha256
    assert (meta["documents"], meta["empty_documents"], meta["replaced_chars"]) == (200, 0, 0)
    assert meta["sources"][0]["path"] == cfg.data.path and meta["config"]["tokenizer"]["kind"] == "bpe"

    # shards rotate at shard_tokens and hold every token exactly once
    n = meta["total_tokens"]
    assert [s["tokens"] for s in meta["shards"]][:-1] == [1024] * (len(meta["shards"]) - 1) and n > 3 * 1024
    assert sum(s["tokens"] for s in meta["shards"]) == n
    for s in meta["shards"]:
        assert (out / s["file"]).stat().st_size == 2 * s["tokens"]
    train, val = data.split("train"), data.split("val")
    assert sum(map(len, train)) == int(n * 0.9) and sum(map(len, val)) == n - int(n * 0.9)

    # the stream is each document's tokens followed by the end-of-document id
    stream = np.concatenate(train + val)
    expected = [t for d in DOCS for t in tok.encode(d) + [tok.eod_id]]
    assert stream.tolist() == expected
    with pytest.raises(ValueError):
        train[0][0] = 1  # the memory maps are read-only


def test_ensure_prepared_reuses_until_the_corpus_changes(tmp_path):
    cfg = config(tmp_path)
    out = ensure_prepared(cfg, progress=False)
    stamp = (out / "meta.json").stat().st_mtime_ns
    assert ensure_prepared(cfg, progress=False) == out and (out / "meta.json").stat().st_mtime_ns == stamp

    corpus = Path(cfg.data.path)
    corpus.write_text(corpus.read_text() + json.dumps({"text": "one more document"}) + "\n")
    ensure_prepared(cfg, progress=False)
    assert load_prepared(out).meta["documents"] == 201

    # a truncated shard is an error when loading, and ensure_prepared rebuilds it
    shard = out / "tokens-00001.bin"
    with open(shard, "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match=r"tokens-00001\.bin: 100 bytes, expected 2,048 \(1,024 tokens\)"):
        load_prepared(out)
    ensure_prepared(cfg, progress=False)
    assert load_prepared(out).meta["total_tokens"] > 0


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="needs ../shared/data/tinyshakespeare")
def test_tiny_shakespeare_matches_nanogpt_char_split(tmp_path):
    cfg = load_config(None, [f"data.path={SHAKESPEARE}", "tokenizer.kind=char", "tokenizer.eod=false"])
    data = load_prepared(prepare(cfg, tmp_path / "out", progress=False))
    text = SHAKESPEARE.read_text()
    assert data.tokenizer.vocab_size == 66 and len(set(text)) == 65  # 65 characters and <unk>
    n = data.meta["total_tokens"]
    assert n == len(text) == 1_115_394
    train, val = data.split("train"), data.split("val")
    assert sum(map(len, train)) == int(n * 0.9) == 1_003_854 and sum(map(len, val)) == 111_540
    assert data.tokenizer.decode(np.concatenate(val)) == text[1_003_854:]


PTB = SHAKESPEARE.parents[1] / "ptb" / "ptb.train.txt"


@pytest.mark.skipif(not PTB.is_file(), reason="needs ../shared/data/ptb")
def test_ptb_word_level_reproduces_the_10k_vocabulary(tmp_path):
    cfg = load_config(None, [f"data.path={PTB}", "data.txt_documents=line", "tokenizer.kind=word",
                             "tokenizer.word_split=whitespace", "tokenizer.vocab_size=10000",
                             "tokenizer.min_frequency=1"])
    data = load_prepared(prepare(cfg, tmp_path / "out", progress=False))
    # 10,000 words including <unk> and <eos> (our end-of-document token); 887,521 words + 42,068 lines
    assert data.tokenizer.vocab_size == 10_000 and data.meta["total_tokens"] == 929_589


def test_separate_validation_and_test_corpora(tmp_path):
    train_txt, val_txt, test_txt = (tmp_path / f"{n}.txt" for n in ("train", "valid", "test"))
    train_txt.write_text("the cat sat on the mat\n" * 50)
    val_txt.write_text("a cat sat\n" * 5)
    test_txt.write_text("the zebra\n" * 3)
    cfg = load_config(None, [f"data.path={train_txt}", f"data.val_path={val_txt}", f"data.test_path={test_txt}",
                             f"data.prepared_dir={tmp_path / 'p'}", "tokenizer.kind=char", "tokenizer.eod=false"])
    data = load_prepared(ensure_prepared(cfg, progress=False))
    decode = lambda name: "".join(data.tokenizer.decode(s) for s in data.split(name))  # noqa: E731
    # the tokenizer learns only from the training text: "z" and "b" of the test text are unknown
    assert decode("train") == train_txt.read_text() and decode("val") == val_txt.read_text()
    assert decode("test") == "the ea\n" * 3
    assert [s["path"] for s in data.meta["sources"]] == [str(train_txt), str(val_txt), str(test_txt)]
    test_txt.write_text("changed\n")  # a changed test corpus makes the prepared data stale
    assert load_prepared(ensure_prepared(cfg, progress=False)).meta["total_tokens"] != data.meta["total_tokens"]


def tokens_and_text(cfg):
    data = load_prepared(ensure_prepared(cfg, progress=False))
    tokens = np.concatenate([*data.split("train"), *data.split("val")])
    return data, data.tokenizer.decode(tokens.tolist())


def test_prepare_runs_the_recipe_clean_and_curate_stages(tiny_config, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where prepare's curation keeps its index
    corpus = tmp_path / "c.txt"
    lines = tiny_corpus.read_text().splitlines()
    corpus.write_text("\n".join(f"<p>{line.upper()}</p>" for line in lines + lines[:100]) + "\n")
    base = ["tokenizer.eod=false", f"data.path={corpus}", "data.txt_documents=line"]

    stages = {"raw": [], "cleaned": ["clean.steps=[html,lowercase]"],
              "curated": ["clean.steps=[html,lowercase]", "curate.quality=null"]}
    configs = {k: tiny_config(*base, *v, f"data.prepared_dir={tmp_path / k}") for k, v in stages.items()}
    assert len({cfg.data_key() for cfg in configs.values()}) == 3  # the stages are part of the data key
    (raw, raw_text), (cleaned, clean_text), (curated, curated_text) = map(tokens_and_text, configs.values())

    assert "<p>" in raw_text and "<p>" not in clean_text and clean_text == clean_text.lower()
    assert len(clean_text) == sum(len(line) for line in lines + lines[:100])
    assert len(curated_text) == sum(len(line) for line in dict.fromkeys(lines))  # the repeats are gone
    assert raw.meta["sources"] == curated.meta["sources"]  # what was read is the raw corpus
    assert not list(tmp_path.glob(".lmforge-curate-*"))
    mtime = (curated.path / "meta.json").stat().st_mtime_ns
    ensure_prepared(configs["curated"], progress=False)  # reused while nothing changed
    assert (curated.path / "meta.json").stat().st_mtime_ns == mtime


def test_prepare_refuses_curate_splits(tiny_config):
    with pytest.raises(ConfigError, match="curate.val_fraction"):
        prepare(tiny_config("curate.val_fraction=0.1"), progress=False)


def test_the_tokenizer_sample_is_spread_evenly_over_the_corpus():
    from lmforge.prepare import sample_evenly

    texts = [f"{i:03d}" + "x" * 996 for i in range(100)]  # 1,000 bytes each
    kept = list(sample_evenly(texts, 100_000, 10_000))
    assert [t[:3] for t in kept] == [f"{i:03d}" for i in range(9, 100, 10)]  # every tenth, to the end
    assert list(sample_evenly(texts, 100_000, 100_000)) == texts  # a corpus within the budget: all of it
    assert list(sample_evenly(texts, 0, 10)) == texts  # size unknown (the built-in corpus): all of it


def test_a_corpus_larger_than_the_sample_trains_its_tokenizer_on_all_its_parts(tmp_path):
    """Three files, each with its own words, and a sample a third of their size: the word vocabulary holds
    words of all three, where the first third of the corpus would give only the first file's."""
    words = {name: [f"{name}{i}" for i in range(30)] for name in ("alpha", "beta", "gamma")}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, vocab in words.items():
        (corpus / f"{name}.txt").write_text("\n".join(" ".join(vocab) for _ in range(40)))
    size = sum(f.stat().st_size for f in corpus.iterdir())
    common = [f"data.path={corpus}", "data.txt_documents=line", "tokenizer.kind=word", "tokenizer.vocab_size=200",
              "tokenizer.min_frequency=1"]
    out = prepare(load_config(None, [*common, f"tokenizer.train_sample_bytes={size // 3}"]), tmp_path / "sampled",
                  progress=False)
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert all(any(w in vocab for w in ws) for ws in words.values()), sorted(vocab)[:20]
    whole = prepare(load_config(None, common), tmp_path / "whole", progress=False)
    assert len(json.loads((whole / "tokenizer.json").read_text())["model"]["vocab"]) >= len(vocab)


def test_train_max_bytes_is_the_old_name_of_train_sample_bytes_and_keeps_the_data_key():
    old = load_config(None, ["tokenizer.train_max_bytes=1000"])
    new = load_config(None, ["tokenizer.train_sample_bytes=1000"])
    assert old.tokenizer.train_sample_bytes == 1000 and old.data_key() == new.data_key()
    assert Config().data_key() == "3e517cf7803c"  # the default job's key before the rename: its shards stay current


READER_DOCS = ([f"doc {i}: naïve émigré Ωμέγα 中文 👩‍👧 don't   stop\tnow {i * 37} <|endoftext|>!" * (i % 5 + 1)
                for i in range(120)]
               + ["a long document, 中文字符 " * 5000])  # longer than a piece: cut


def reader_corpus(tmp_path: Path, reader: str) -> list[str]:
    """data.* overrides for a corpus of READER_DOCS in the reader's format (txt modes: one per line...)."""
    if reader == "builtin":
        return []
    fmt, _, mode = reader.partition(" ")
    gz = fmt.endswith(".gz")
    path = tmp_path / f"corpus.{fmt}"
    docs = READER_DOCS
    if fmt == "parquet":
        pq.write_table(pa.table({"text": docs}), path, row_group_size=16)
    elif fmt.startswith("jsonl"):
        data = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs).encode()
        path.write_bytes(gzip.compress(data) if gz else data)
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, delimiter="," if fmt == "csv" else "\t", quoting=csv.QUOTE_MINIMAL if fmt == "csv"
                       else csv.QUOTE_NONE, escapechar="\\").writerows([["text"]] + [[d] for d in docs])
    else:
        sep = {"file": "\n", "line": "\n", "blank_line": "\n\n"}[mode]
        path.write_text(sep.join(docs), encoding="utf-8")
        return [f"data.path={path}", f"data.txt_documents={mode}"]
    return [f"data.path={path}"]


@pytest.mark.parametrize("kind", ["bpe", "char"])
@pytest.mark.parametrize("reader", ["txt file", "txt line", "txt blank_line", "jsonl", "jsonl.gz", "csv", "tsv",
                                    "parquet", "builtin"])
def test_shards_are_byte_identical_with_either_encoder_and_are_tokenizers_ids(tmp_path, reader, kind):
    data = reader_corpus(tmp_path, reader)
    shards = {}
    for encoder in ("auto", "tokenizers"):
        cfg = load_config(None, [*data, f"data.prepared_dir={tmp_path / encoder}", f"data.encoder={encoder}",
                                 "data.shard_tokens=4096", "data.encode_batch_bytes=20000", f"tokenizer.kind={kind}",
                                 "tokenizer.vocab_size=400"])
        out = prepare(cfg, progress=False)
        shards[encoder] = [(out / s["file"]).read_bytes() for s in load_prepared(out).meta["shards"]]
    assert shards["auto"] == shards["tokenizers"]
    tok = load_prepared(out).tokenizer
    assert (tok.tiktoken_encoding if kind == "bpe" else tok.char_table) is not None  # auto used the fast engine
    # the reference: tokenizers' own encode of each piece prepare reads, the end-of-document id after each document
    expected = [t for piece, end in iter_pieces(cfg.data, max_chars=PIECE_CHARS)
                for t in tok.encode(piece) + ([tok.eod_id] if end else [])]
    assert np.frombuffer(b"".join(shards["auto"]), dtype="<u2").tolist() == expected


def test_datasets_corpora_hub_and_datasetdict_splits(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = tmp_path / "hub"  # a local folder that datasets.load_dataset streams as hf:, offline
    hub.mkdir()
    (hub / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS[:50]))
    dd = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["not this one"]}),
                          "dev": datasets.Dataset.from_dict({"text": ["a cat sat on the mat"]})}
                         ).save_to_disk(str(dd))
    cfg = load_config(None, [f"data.path=hf:{hub}", f"data.val_path={dd}", "data.val_split=dev",
                             f"data.prepared_dir={tmp_path / 'p'}", "tokenizer.kind=char", "tokenizer.eod=false"])
    out = ensure_prepared(cfg, progress=False)
    data = load_prepared(out)
    decode = lambda name: "".join(data.tokenizer.decode(s) for s in data.split(name))  # noqa: E731
    assert decode("train") == "".join(DOCS[:50]) and decode("val") == "a cat sat on the mat"
    hub_source, val_source = data.meta["sources"]
    assert {k: hub_source[k] for k in ("path", "config", "split", "revision")} == \
        {"path": f"hf:{hub}", "config": None, "split": "train", "revision": None} and hub_source["fingerprint"]
    assert val_source["path"] == str(dd / "dev" / "data-00000-of-00001.arrow")
    # a hub corpus is current while its name, config, split and revision are: reused, not streamed again
    stamp = (out / "meta.json").stat().st_mtime_ns
    assert ensure_prepared(cfg, progress=False) == out and (out / "meta.json").stat().st_mtime_ns == stamp
    assert cfg.model_copy(update={"data": cfg.data.model_copy(update={"split": "test"})}).data_key() != cfg.data_key()


def test_an_hf_corpus_trains_its_tokenizer_on_its_first_sample_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "train.jsonl").write_text(json.dumps({"text": "ab " * 100}) + "\n"
                                                  + json.dumps({"text": "xyz " * 100}) + "\n")
    cfg = load_config(None, [f"data.path=hf:{tmp_path / 'hub'}", f"data.prepared_dir={tmp_path / 'p'}",
                             "tokenizer.kind=char", "tokenizer.train_sample_bytes=100"])
    vocab = set(load_prepared(prepare(cfg, progress=False)).tokenizer.decode(list(range(2, 10))))
    assert {"a", "b"} <= vocab and not {"x", "y", "z"} & vocab  # the stream's size is unknown: its start is the sample


MIXED_DOCS = [d.strip() for d in DOCS]


def mixture(tmp_path: Path, *overrides: str, weights=(3, 1), field: str = "body") -> Config:
    """A mixture of a .txt source (a line per document) and a .jsonl source whose text is in `field`."""
    (tmp_path / "a.txt").write_text("".join(d + "\n" for d in MIXED_DOCS[:120]))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"body": d.upper()}) + "\n" for d in MIXED_DOCS[120:]))
    sources = (f"[{{path: {tmp_path / 'a.txt'}, weight: {weights[0]}}}, "
               f"{{path: {tmp_path / 'b.jsonl'}, weight: {weights[1]}, field: {field}, name: shouty}}]")
    return load_config(None, [f"data.sources={sources}", "data.txt_documents=line", "tokenizer.kind=char",
                              f"data.prepared_dir={tmp_path / 'prepared'}", "data.shard_tokens=1024", *overrides])


def test_mixture_sources_share_the_shards_and_each_holds_out_its_own_validation(tmp_path):
    cfg = mixture(tmp_path)
    data = load_prepared(prepare(cfg, progress=False))
    tok, meta = data.tokenizer, data.meta
    assert data.mixture == {"a": 3.0, "shouty": 1.0}
    assert [s["path"] for s in meta["sources"]] == [str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")]
    streams = {"a": [t for d in MIXED_DOCS[:120] for t in tok.encode(d + "\n") + [tok.eod_id]],  # a line keeps its end
               "shouty": [t for d in MIXED_DOCS[120:] for t in tok.encode(d.upper()) + [tok.eod_id]]}
    for name, stream in streams.items():
        train, val = (np.concatenate(data.source_split(name, split)).tolist() for split in ("train", "val"))
        cut = int(len(stream) * (1 - cfg.data.val_fraction))  # the source's own last val_fraction
        assert train == stream[:cut] and val == stream[cut:]
    # the splits every other reader uses are the union of the sources', in order
    for split in ("train", "val"):
        union = np.concatenate(data.split(split)).tolist()
        assert union == sum((np.concatenate(data.source_split(n, split)).tolist() for n in streams), [])
    assert ensure_prepared(cfg, progress=False) == data.path  # current: reused
    (tmp_path / "b.jsonl").write_text((tmp_path / "b.jsonl").read_text() + json.dumps({"body": "more"}) + "\n")
    from lmforge.data.shards import is_current
    assert not is_current(data.path, cfg)  # a source changed: stale


def test_mixture_settings_decide_the_data_key_and_one_corpus_keeps_its_key(tmp_path):
    cfg = mixture(tmp_path)
    assert cfg.data_key() != mixture(tmp_path, weights=(1, 1)).data_key()
    assert cfg.data_key() != mixture(tmp_path, field="text").data_key()
    assert Config().data_key() == "3e517cf7803c"  # recipes without data.sources keep their keys (and shards)


def test_mixture_bad_input_is_one_line_and_leaves_nothing(tmp_path):
    from cli_checks import assert_one_line_error, invoke, leftovers

    cfg = mixture(tmp_path)
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(json.dumps({"data": cfg.data.model_dump(mode="json", exclude_none=True),
                                  "tokenizer": {"kind": "char"}}))
    for overrides, needle in [
            (["data.sources=[{path: x.txt, weight: 0}]"], "data.sources.0: source 'x': weight must be a positive number, got 0"),
            (["data.sources=[{path: x.txt, weight: -1, name: web}]"], "source 'web': weight must be a positive number"),
            ([f"data.sources=[{{path: {tmp_path / 'gone.txt'}, weight: 1}}]"], f"{tmp_path / 'gone.txt'}: no such file"),
            ([f"data.sources=[{{path: {tmp_path / 'a.txt'}, weight: 1}}, {{path: {tmp_path / 'b.jsonl'}, weight: 1, field: title}}]"],
             f"data.sources 'b': {tmp_path / 'b.jsonl'} line 1: no field 'title'")]:
        code, _, err = invoke("prepare", recipe, *overrides)
        assert_one_line_error(code, err, needle)
        assert not (tmp_path / "prepared").exists() and not leftovers(tmp_path)


def test_mixture_recipes_refused_where_they_cannot_work(tmp_path):
    with pytest.raises(ConfigError, match="data.path and data.sources"):
        mixture(tmp_path, f"data.path={tmp_path / 'a.txt'}")
    with pytest.raises(ConfigError, match="data.val_path: each of data.sources holds out its own"):
        mixture(tmp_path, f"data.val_path={tmp_path / 'a.txt'}")
    with pytest.raises(ConfigError, match="two sources are named 'a'"):
        load_config(None, ["data.sources=[{path: x/a.txt, weight: 1}, {path: y/a.jsonl, weight: 1}]"])
    with pytest.raises(ConfigError, match=r"data.sources: a recurrent model \(lstm\)"):
        mixture(tmp_path, "model.arch=lstm")
    with pytest.raises(ConfigError, match="--partition: a mixture of data.sources is prepared whole"):
        from lmforge.prepare import Partition
        prepare(mixture(tmp_path), progress=False, partition=Partition(0, 2))
    cfg = mixture(tmp_path)
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}) + "\n")  # 2 tokens: x and end-of-document
    with pytest.raises(DataError, match="data.sources 'shouty': the train split has 1 tokens"):
        prepare(cfg, progress=False)
    assert not (tmp_path / "prepared").exists()
