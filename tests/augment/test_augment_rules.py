"""Augmentation without models: EDA, character noise, extractive summaries; copies, fraction, seeding, exact
duplicates, splits that keep copies with their originals, long and empty texts."""

import json
from collections import Counter

import pytest

from lmforge.augment import FROM_FIELD, METHOD_FIELD, augment
from lmforge.augment.noise import KEY_NEIGHBOURS, typo
from lmforge.augment.summarize import extractive_summary
from lmforge.augment.words import Words, rng_of, sentences, split_to_fit
from lmforge.config import AugmentConfig, DataConfig
from lmforge.errors import ConfigError

TSV = DataConfig(field="sentence")


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def copies_of(records):
    return [r for r in records if FROM_FIELD in r]


def test_words_keep_the_spacing_they_do_not_touch():
    w = Words("  one two\tthree\nfour ")
    assert w.text() == "  one two\tthree\nfour "
    w.swap(0, 3)
    w.delete(1)
    w.insert(0, "zero")
    assert w.text() == "  zero four\tthree\none "
    assert sentences("First one. Second? \"Third!\" Fourth\nFifth") == ["First one.", "Second?", "\"Third!\"",
                                                                      "Fourth", "Fifth"]
    parts, too_long = split_to_fit("a b c. d e f g. h", lambda s: len(s.split()), 3)
    assert parts == ["a b c.", "d e f", "g. h"] and not too_long


@pytest.mark.parametrize("op", ["synonym", "insert", "swap", "delete"])
def test_eda_operations_change_the_words_as_named(labelled_tsv, tmp_path, wordnet, op):
    out = tmp_path / "out.jsonl"
    report = augment(labelled_tsv(), out, AugmentConfig(method="eda", eda_ops=[op], copies=2, alpha=0.2), TSV,
                     progress=False)
    records = rows(out)
    originals = {r["id"]: r for r in records if FROM_FIELD not in r}
    assert len(originals) == 8 and report.extra["warnings"] == []
    made = copies_of(records)
    assert made and report.steps["eda"].counts[f"op_{op}"] == 16
    for copy in made:
        original = originals[copy[FROM_FIELD]]
        assert copy["label"] == original["label"] and copy[METHOD_FIELD] == "eda"
        assert copy["id"].startswith(f"{copy[FROM_FIELD]}-eda-")
        before, after = original["sentence"].split(), copy["sentence"].split()
        assert before != after
        if op == "synonym":
            assert len(after) >= len(before)  # a lemma may be two words ("bear upon")
        elif op == "insert":
            assert len(after) > len(before)
        elif op == "swap":
            assert sorted(after) == sorted(before)
        else:
            assert len(after) < len(before) and set(after) <= set(before)


def test_eda_without_wordnet_says_so_and_uses_swap_and_delete(labelled_tsv, tmp_path, monkeypatch):
    monkeypatch.setattr("lmforge.augment.eda.find_wordnet", lambda: None)
    report = augment(labelled_tsv(), tmp_path / "out.jsonl", AugmentConfig(method="eda", copies=4), TSV,
                     progress=False)
    assert any("WordNet not found" in w and "swap and delete only" in w for w in report.extra["warnings"])
    assert {k for k in report.steps["eda"].counts if k.startswith("op_")} == {"op_swap", "op_delete"}
    with pytest.raises(ConfigError, match="synonym and insert need WordNet"):
        augment(labelled_tsv(), tmp_path / "o2.jsonl", AugmentConfig(method="eda", eda_ops=["synonym"]), TSV,
                progress=False)
    assert not (tmp_path / "o2.jsonl").exists()


def test_noise_makes_one_typo_per_chosen_word(labelled_tsv, tmp_path):
    assert set(KEY_NEIGHBOURS["s"]) == set("weadzx")
    rng = rng_of(1)
    assert typo("cat", "delete", rng) in {"at", "ct", "ca"}
    assert typo("cat", "insert", rng) in {"ccat", "caat", "catt"}
    assert typo("cat", "swap", rng) in {"act", "cta"}
    keyed = typo("Cat", "keyboard", rng)
    assert len(keyed) == 3 and sum(a != b for a, b in zip(keyed, "Cat")) == 1 and keyed[0].isupper()
    out = tmp_path / "out.jsonl"
    augment(labelled_tsv(), out, AugmentConfig(method="noise", alpha=0.1, copies=2), TSV, progress=False)
    originals = {r["id"]: r["sentence"] for r in rows(out) if FROM_FIELD not in r}
    for copy in copies_of(rows(out)):
        before, after = originals[copy[FROM_FIELD]].split(), copy["sentence"].split()
        assert len(before) == len(after)
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(changed) == max(1, round(0.1 * sum(any(c.isalpha() for c in w) for w in before)))
        assert all(abs(len(a) - len(b)) <= 1 for a, b in changed)


def test_extractive_summaries(tmp_path):
    text = ("The cat sat on the mat. The dog chased the cat around the garden. Birds sang in the tall trees. "
            "The cat finally escaped from the dog.")
    # the sentences about the cat and the dog share most words with the others: TextRank keeps them
    assert extractive_summary(text, 0.5, "textrank") == ("The dog chased the cat around the garden. "
                                                         "The cat finally escaped from the dog.")
    assert extractive_summary(text, 0.25, "lead") == "The cat sat on the mat."
    source = tmp_path / "docs.jsonl"
    source.write_text(json.dumps({"text": text, "label": "a"}) + "\n" + json.dumps({"text": "One only.", "label": "b"}) + "\n")
    out = tmp_path / "out.jsonl"
    report = augment(source, out, AugmentConfig(method="summarize", summary="lead", copies=2), progress=False)
    made = copies_of(rows(out))
    assert [(c["text"], c["label"]) for c in made] == [(extractive_summary(text, 0.5, "lead"), "a")]
    counts = report.steps["summarize"].counts
    # one text of one sentence (unchanged, both copies); the other's second copy repeats its first
    assert counts["one_sentence"] == 1 and counts["unchanged"] == 2 and counts["duplicate"] == 1


def test_copies_fraction_and_seed(labelled_tsv, tmp_path):
    source = labelled_tsv(20)
    cfg = AugmentConfig(method="noise", copies=3, fraction=0.5, seed=7)
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    report = augment(source, a, cfg, TSV, progress=False)
    augment(source, b, cfg, TSV, progress=False)
    augment(source, c, cfg.model_copy(update={"seed": 8}), TSV, progress=False)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    made = copies_of(rows(a))
    per_original = Counter(r[FROM_FIELD] for r in made)
    assert len(per_original) == 10 and report.extra["fraction_augmented"] == 0.5
    assert max(per_original.values()) <= 3 and len(made) == report.extra["copies_written"]
    assert report.extra["copies_requested"] == 30
    # each original is followed by its own copies
    records = rows(a)
    for i, r in enumerate(records):
        if FROM_FIELD in r:
            owner = next(x for x in reversed(records[:i]) if FROM_FIELD not in x)
            assert owner["id"] == r[FROM_FIELD]
    only = tmp_path / "only.jsonl"
    augment(source, only, cfg.model_copy(update={"keep_originals": False}), TSV, progress=False)
    assert rows(only) == made


def test_a_copy_that_equals_any_original_is_dropped(tmp_path):
    # the lead sentence of the first document is the second document
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "Short one. And a second sentence here."}\n{"text": "Short one."}\n')
    out = tmp_path / "out.jsonl"
    report = augment(source, out, AugmentConfig(method="summarize", summary="lead"), progress=False)
    assert copies_of(rows(out)) == [] and report.steps["summarize"].counts["duplicate"] == 1


def test_splits_keep_copies_with_their_originals_and_hold_out_unaugmented(labelled_tsv, tmp_path):
    duplicated = [f"sentence number {i} is here ." for i in range(30)] + ["sentence number 3 is here ."]
    source = labelled_tsv(rows=duplicated)
    out = tmp_path / "aug.jsonl"
    augment(source, out, AugmentConfig(method="eda", eda_ops=["swap", "delete"], copies=2, val_fraction=0.2,
                                       test_fraction=0.2, seed=3), TSV, progress=False)
    parts = {split: rows(tmp_path / f"aug.{split}.jsonl") for split in ("train", "val", "test")}
    assert all(parts.values())
    assert not copies_of(parts["val"]) and not copies_of(parts["test"])
    train_ids = {r["id"] for r in parts["train"] if FROM_FIELD not in r}
    assert {r[FROM_FIELD] for r in copies_of(parts["train"])} <= train_ids
    held_out = {r["sentence"] for split in ("val", "test") for r in parts[split]}
    assert not held_out & {r["sentence"] for r in parts["train"]}
    # the two copies of sentence 3 landed in one split
    assert sum(r["sentence"] == "sentence number 3 is here ." for part in parts.values() for r in part) == 2
    assert len({split for split, part in parts.items() for r in part if r["sentence"] == "sentence number 3 is here ."}) == 1


def test_long_and_empty_texts_are_counted_not_fatal(tmp_path):
    long_text = "word " * 400
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": long_text.strip(), "id": "L"}) + "\n" + '{"text": "   "}\n' +
                      '{"text": "a short text here"}\n')
    out = tmp_path / "out.jsonl"
    report = augment(source, out, AugmentConfig(method="noise", max_chars=1000), progress=False)
    records = rows(out)
    assert records[0] == {"text": long_text.strip(), "id": "L"}
    assert [r[FROM_FIELD] for r in copies_of(records)] == [1]  # positions count documents read, empties not
    warnings = " ".join(report.extra["warnings"])
    assert "1 empty text(s) skipped" in warnings and "1 text(s) longer than max_chars=1000" in warnings


def test_limit_reads_only_the_first_originals(labelled_tsv, tmp_path):
    out = tmp_path / "out.jsonl"
    report = augment(labelled_tsv(20), out, AugmentConfig(method="noise"), TSV, progress=False, limit=5)
    assert report.documents_in == 5 and len([r for r in rows(out) if FROM_FIELD not in r]) == 5
