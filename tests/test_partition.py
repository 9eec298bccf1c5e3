"""Partitioned prepare: N parts of a corpus's files prepared apart (as on N machines) and merged are the
tokens and splits of one prepare; partitions that do not cover the corpus are one line."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_one_line_error, invoke, leftovers

from lmforge.config import load_config
from lmforge.data.shards import is_current, load_prepared
from lmforge.prepare import Partition, parts_dir, prepare


def corpus(folder: Path, n_files: int = 7) -> Path:
    rng = random.Random(0)
    words = "the cat sat on a mat and then naïve émigré ran to see 中文 dog who was not there".split()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):  # files of very different sizes, so that parts balance bytes, not file counts
        docs = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 40))) for _ in range(rng.randint(5, 120))]
        (folder / f"f{i}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return folder


def overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [f"data.path={tmp_path / 'corpus'}", f"data.prepared_dir={tmp_path / 'prepared'}", "data.shard_tokens=1024",
            "tokenizer.kind=bpe", "tokenizer.vocab_size=300", *extra]


def streams(directory: Path) -> dict[str, list[int]]:
    data = load_prepared(directory)
    return {name: np.concatenate(data.split(name)).tolist() for name in data.meta["splits"]}


@pytest.mark.parametrize("separate_val", [False, True])
def test_three_parts_merged_are_the_tokens_of_one_prepare(tmp_path, separate_val):
    corpus(tmp_path / "corpus")
    extra = []
    if separate_val:
        (tmp_path / "val.txt").write_text("a cat sat\n" * 30)
        (tmp_path / "test.txt").write_text("the dog\n" * 30)
        extra = [f"data.val_path={tmp_path / 'val.txt'}", f"data.test_path={tmp_path / 'test.txt'}"]
    whole = streams(prepare(load_config(None, overrides(tmp_path, *extra, f"data.prepared_dir={tmp_path / 'one'}")),
                            progress=False))
    cfg = load_config(None, overrides(tmp_path, *extra))
    for i in (2, 0, 1):  # in any order, as machines finish
        part = prepare(cfg, progress=False, partition=Partition(i, 3))
        assert part == parts_dir(tmp_path / "prepared") / f"part-{i}-of-3"
    files = [json.loads((parts_dir(tmp_path / "prepared") / f"part-{i}-of-3" / "meta.json").read_text())["sources"]
             for i in range(3)]
    assert all(files) and len({s["path"] for part in files for s in part}) == 7 + 2 * separate_val
    out = prepare(cfg, progress=False)  # a plain prepare merges the parts
    assert streams(out) == whole
    assert is_current(out, cfg) and not parts_dir(out).exists() and not leftovers(tmp_path)
    meta, one = load_prepared(out).meta, load_prepared(tmp_path / "one").meta
    assert {k: meta[k] for k in ("documents", "bytes_read", "sources", "total_tokens")} == \
        {k: one[k] for k in ("documents", "bytes_read", "sources", "total_tokens")}


def test_partition_assigns_whole_files_in_order_balanced_by_bytes():
    sources = [{"path": f"f{i}", "bytes": b} for i, b in enumerate([10, 10, 10, 10, 60])]
    assert [Partition(i, 2).files(sources) for i in range(2)] == [["f0", "f1", "f2", "f3"], ["f4"]]
    assert [Partition(i, 3).files(sources) for i in range(3)] == [["f0", "f1", "f2"], ["f3"], ["f4"]]
    parts = [Partition(i, 8).files(sources) for i in range(8)]
    assert [f for part in parts for f in part] == [s["path"] for s in sources]  # every file once, in order


def test_the_cli_prepares_parts_and_merges_them(tmp_path):
    corpus(tmp_path / "corpus", 4)
    for i in range(2):
        code, out, err = invoke("prepare", *overrides(tmp_path), "--partition", f"{i}/2", "--no-progress")
        assert code == 0, err
        assert f"prepared part {i} of 2" in out
    assert not (tmp_path / "prepared").exists()
    code, out, err = invoke("prepare", *overrides(tmp_path), "--no-progress")
    assert code == 0 and out.startswith(f"prepared {tmp_path / 'prepared'}"), err


@pytest.mark.parametrize("partition", ["3/3", "1", "a/2", "-1/2", "1/0"])
def test_a_malformed_partition_is_one_line(tmp_path, partition):
    corpus(tmp_path / "corpus", 2)
    code, _, err = invoke("prepare", *overrides(tmp_path), "--partition", partition)
    assert_one_line_error(code, err, "--partition: expected I/N")
    assert not parts_dir(tmp_path / "prepared").exists()


def test_parts_that_do_not_cover_the_corpus_are_one_line_and_merge_nothing(tmp_path):
    corpus(tmp_path / "corpus", 5)
    cfg = load_config(None, overrides(tmp_path))
    for i in (0, 2):
        prepare(cfg, progress=False, partition=Partition(i, 3))
    code, _, err = invoke("prepare", *overrides(tmp_path))
    assert_one_line_error(code, err, "part 1 of 3 missing; run lmforge prepare --partition 1/3")
    prepare(cfg, progress=False, partition=Partition(1, 3))
    prepare(cfg, progress=False, partition=Partition(0, 2))  # a part of another partitioning
    code, _, err = invoke("prepare", *overrides(tmp_path))
    assert_one_line_error(code, err, "parts of 2 and of 3")
    (parts_dir(tmp_path / "prepared") / "part-0-of-2").rename(tmp_path / "aside")
    os.utime(tmp_path / "corpus" / "f4.jsonl", ns=(1, 1))  # a file changed since its part was prepared
    code, _, err = invoke("prepare", *overrides(tmp_path))
    assert_one_line_error(code, err, "do not cover the corpus as it is now")
    (tmp_path / "corpus" / "f5.jsonl").write_text('{"text": "a file added after the parts"}\n' * 500)
    code, _, err = invoke("prepare", *overrides(tmp_path))
    assert_one_line_error(code, err, "holds other files than part")
    assert not (tmp_path / "prepared").exists() and not leftovers(tmp_path)


def test_a_part_of_other_settings_is_one_line(tmp_path):
    corpus(tmp_path / "corpus", 3)
    prepare(load_config(None, overrides(tmp_path, "tokenizer.vocab_size=280")), progress=False,
            partition=Partition(0, 2))
    prepare(load_config(None, overrides(tmp_path)), progress=False, partition=Partition(1, 2))
    code, _, err = invoke("prepare", *overrides(tmp_path))
    assert_one_line_error(code, err, "part-0-of-2: prepared with other data or tokenizer settings")


@pytest.mark.parametrize("extra, needle", [
    (["curate.exact_dedup=true"], "curate or augment stage works across the whole corpus"),
    (["tokenizer.kind=unigram"], "set tokenizer.path"),
    (["data.path="], "the built-in corpus and a hub dataset are one source each"),
    (["data.path=hf:some/dataset"], "the built-in corpus and a hub dataset are one source each"),
])
def test_recipes_that_cannot_be_partitioned_are_one_line(tmp_path, extra, needle):
    corpus(tmp_path / "corpus", 2)
    code, _, err = invoke("prepare", *overrides(tmp_path), *extra, "--partition", "0/2")
    assert_one_line_error(code, err, needle)
