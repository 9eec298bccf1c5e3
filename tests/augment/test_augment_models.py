"""Methods through local model folders, on tiny random models saved with save_pretrained (the real loading and
generation code runs): back-translation, abstractive summaries, masked-LM replacement; bad folders."""

import json
import re
import shutil

import pytest
from tiny_models import WORDS

from lmforge.augment import FROM_FIELD, augment
from lmforge.augment.mask import MaskReplace
from lmforge.config import AugmentConfig, DataConfig
from lmforge.errors import CheckpointError

TSV = DataConfig(field="sentence")


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_backtranslation_through_two_seq2seq_folders(labelled_tsv, tmp_path, tiny_bart, tiny_marian):
    source = labelled_tsv(4)
    cfg = AugmentConfig(method="backtranslate", model=str(tiny_bart), back_model=str(tiny_marian), copies=2,
                        decoding="sample", max_new_tokens=6, batch_size=3, seed=1)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    report = augment(source, a, cfg, TSV, progress=False)
    augment(source, b, cfg, TSV, progress=False)
    assert a.read_bytes() == b.read_bytes()  # seeded, sampling included
    counts = report.steps["backtranslate"].counts
    assert counts["copies_made"] == 8
    assert counts["copies_made"] == report.extra["copies_written"] + sum(
        counts[k] for k in ("unchanged", "duplicate", "empty_output"))
    originals = {r["id"]: r for r in rows(a) if FROM_FIELD not in r}
    made = [r for r in rows(a) if FROM_FIELD in r]
    assert made, "a random model's samples still make some copies"
    for copy in made:
        assert copy["label"] == originals[copy[FROM_FIELD]]["label"]
        # the tiny models speak only their vocabulary: the copy came out of the back model
        assert set(re.findall(r"\w+|[^\w\s]", copy["sentence"])) <= set(WORDS)
    beams = augment(source, tmp_path / "beam.jsonl", cfg.model_copy(update={"decoding": "beam", "num_beams": 2}),
                    TSV, progress=False)
    assert beams.steps["backtranslate"].counts["copies_made"] == 8


def test_long_texts_are_split_or_truncated_and_counted(labelled_tsv, tmp_path, tiny_bart, tiny_marian):
    long_text = " ".join(["the film was good ."] * 30)  # 150 tokens; the window is 64
    source = labelled_tsv(rows=[long_text, "a dull film ."])
    common = dict(method="backtranslate", model=str(tiny_bart), back_model=str(tiny_marian), max_new_tokens=4)
    report = augment(source, tmp_path / "s.jsonl", AugmentConfig(**common), TSV, progress=False)
    assert report.steps["backtranslate"].counts["model_split"] == 1
    assert any("1 text(s) longer than the model's window, split" in w for w in report.extra["warnings"])
    report = augment(source, tmp_path / "t.jsonl", AugmentConfig(**common, long_texts="truncate"), TSV, progress=False)
    assert report.steps["backtranslate"].counts["model_truncated"] == 1


def test_abstractive_summaries_through_a_seq2seq_folder(labelled_tsv, tmp_path, tiny_marian):
    out = tmp_path / "out.jsonl"
    report = augment(labelled_tsv(4), out, AugmentConfig(method="summarize", summary="abstractive",
                                                         model=str(tiny_marian), prefix="summarize: ",
                                                         max_new_tokens=6), TSV, progress=False)
    assert report.settings["method"]["summary"] == "abstractive"
    assert report.steps["summarize"].counts["copies_made"] == 4
    assert all(len(r["sentence"].split()) <= 6 for r in rows(out) if FROM_FIELD in r)


def test_masked_lm_replacement_never_draws_the_original_word(labelled_tsv, tmp_path, tiny_mlm):
    out = tmp_path / "out.jsonl"
    cfg = AugmentConfig(method="mask", model=str(tiny_mlm), copies=3, alpha=0.3, top_k=5)
    report = augment(labelled_tsv(), out, cfg, TSV, progress=False)
    originals = {r["id"]: r for r in rows(out) if FROM_FIELD not in r}
    made = [r for r in rows(out) if FROM_FIELD in r]
    assert len(made) == report.extra["copies_written"] > 12
    for copy in made:
        before, after = originals[copy[FROM_FIELD]]["sentence"].split(), copy["sentence"].split()
        assert len(before) == len(after) and copy["label"] == originals[copy[FROM_FIELD]]["label"]
        eligible = [w for w in before if w.isalpha()]
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        # every masked word was replaced by a different whole word of the vocabulary
        assert len(changed) == max(1, round(0.3 * len(eligible)))
        assert all(b in WORDS and b.isalpha() and b != a for a, b in changed)
    again = tmp_path / "again.jsonl"
    augment(labelled_tsv(), again, cfg, TSV, progress=False)
    assert again.read_bytes() == out.read_bytes()


def test_masked_lm_splits_texts_longer_than_its_window(labelled_tsv, tmp_path, tiny_mlm):
    long_text = " ".join(["the film was good ."] * 12)  # 60 tokens; the window is 32
    out = tmp_path / "out.jsonl"
    report = augment(labelled_tsv(rows=[long_text]), out, AugmentConfig(method="mask", model=str(tiny_mlm), alpha=0.2),
                     TSV, progress=False)
    assert report.steps["mask"].counts["split"] == 1
    copy = [r for r in rows(out) if FROM_FIELD in r][0]["sentence"].split()
    changed = sum(a != b for a, b in zip(long_text.split(), copy))
    assert len(copy) == 60 and changed >= 4  # words replaced in every window, not only the first


def test_bad_model_folders_are_one_line_errors(labelled_tsv, tmp_path, tiny_bart, tiny_mlm, tiny_bert_encoder):
    from transformers import GPT2Config

    (tmp_path / "empty").mkdir()
    GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50).save_pretrained(tmp_path / "gpt2")
    cases = [
        (dict(method="mask", model=str(tmp_path / "gpt2")), "not a masked-LM model (model_type gpt2)"),
        (dict(method="mask", model=str(tiny_bert_encoder)), "lack 6 tensors of a masked-LM head"),
        (dict(method="mask", model=str(tiny_bart)), "a sequence-to-sequence model (bart)"),
        (dict(method="backtranslate", model=str(tiny_mlm), back_model=str(tiny_bart)), "not a sequence-to-sequence model"),
        (dict(method="summarize", summary="abstractive", model=str(tmp_path / "empty")), "no config.json"),
        (dict(method="mask", model=str(tmp_path / "none")), "model folder not found"),
    ]
    for options, message in cases:
        with pytest.raises(CheckpointError) as info:
            augment(labelled_tsv(), tmp_path / "o.jsonl", AugmentConfig(**options), TSV, progress=False)
        assert message in str(info.value) and "\n" not in str(info.value)
        assert not list(tmp_path.glob("o.*"))


def test_mask_candidates_are_whole_words(tiny_mlm):
    method = MaskReplace(AugmentConfig(method="mask", model=str(tiny_mlm)))
    allowed = {method.lm.texts[i] for i in method.lm.candidates.nonzero().flatten().tolist()}
    assert allowed == {w for w in WORDS if w.isalpha()}  # no [CLS], [MASK], punctuation


@pytest.fixture(scope="session")
def tiny_encoder_run(tmp_path_factory, tiny_corpus):
    """An lmforge masked-LM encoder trained for a few steps on the tiny corpus, with a word tokenizer."""
    from lmforge.config import load_config
    from lmforge.train.trainer import train

    root = tmp_path_factory.mktemp("encoder")
    cfg = load_config(None, [f"data.path={tiny_corpus}", f"data.prepared_dir={root / 'prepared'}", "model.arch=encoder",
                             "tokenizer.kind=word", "tokenizer.vocab_size=64", "tokenizer.min_frequency=1",
                             "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
                             "train.max_steps=4", "train.eval_interval=4", "train.micro_batch_size=4",
                             "train.tensorboard=false", "train.num_threads=1", "sample.num_samples=0"])
    train(cfg, root / "run", progress=False)
    return root / "run"


def test_mask_with_an_lmforge_encoder_run(tmp_path, tiny_encoder_run, tiny_corpus):
    source = tmp_path / "in.txt"
    source.write_text("the cat sat on a mat\nthe dog ran to see the cat who was not there\n")
    out = tmp_path / "out.jsonl"
    report = augment(source, out, AugmentConfig(method="mask", model=str(tiny_encoder_run), copies=2, alpha=0.3),
                     DataConfig(txt_documents="line"), progress=False)
    assert report.settings["method"]["kind"] == "LmforgeMaskedLM"
    vocabulary = set(tiny_corpus.read_text().split())
    originals = {r["id"]: r["text"].split() for r in rows(out) if FROM_FIELD not in r}
    made = [r for r in rows(out) if FROM_FIELD in r]
    assert made
    for copy in made:
        before, after = originals[copy[FROM_FIELD]], copy["text"].split()
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(before) == len(after) and len(changed) == max(1, round(0.3 * len(before)))
        assert all(b in vocabulary for _, b in changed)
    # a run that is not an encoder is refused by name
    from lmforge.config import GPTConfig, load_config, save_config

    gpt = tmp_path / "gpt"
    shutil.copytree(tiny_encoder_run, gpt)
    cfg = load_config(gpt / "config.yaml")
    cfg.model = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=cfg.model.vocab_size)
    save_config(cfg, gpt / "config.yaml")
    with pytest.raises(CheckpointError, match="an lmforge gpt run, not a masked-LM encoder"):
        augment(source, tmp_path / "o.jsonl", AugmentConfig(method="mask", model=str(gpt)),
                DataConfig(txt_documents="line"), progress=False)
