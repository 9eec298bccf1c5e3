"""A recipe's augment stage touches the training data only: finetune.train_path (not val_path), and prepare's
corpus (not data.val_path)."""

import json

import pytest

from lmforge.config import load_config
from lmforge.errors import ConfigError


def finetune_config(backbone, train, val, *extra):
    return load_config(None, ["finetune.task=classify", f"finetune.backbone={backbone}", f"finetune.train_path={train}",
                              f"finetune.val_path={val}", "finetune.text_column=sentence", "finetune.max_length=16",
                              "finetune.epochs=1", "finetune.batch_size=4", "train.tensorboard=false",
                              "train.num_threads=1", "augment.method=noise", *extra])


def test_finetune_trains_on_the_augmented_training_file_only(labelled_tsv, tmp_path, tiny_bert_encoder):
    from lmforge.finetune.train import finetune

    train, val = labelled_tsv(8), labelled_tsv(4, name="val.tsv")
    result = finetune(finetune_config(tiny_bert_encoder, train, val), tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "augment" / "train.jsonl").read_text().splitlines()]
    assert len(records) == 16 and sum("augmented_from" in r for r in records) == 8
    assert (tmp_path / "run" / "augment" / "train.report.json").is_file()
    assert result.step == 4  # 16 sequences in batches of 4
    assert result.metrics["data"] == str(val)  # evaluated on val_path, as it is
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.augment is not None and saved.augment.method == "noise"
    # max_train_examples picks the originals, before their copies are made
    limited = finetune(finetune_config(tiny_bert_encoder, train, val, "finetune.max_train_examples=2"),
                       tmp_path / "limited", progress=False)
    assert limited.step == 1
    assert len((tmp_path / "limited" / "augment" / "train.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("extra,message", [
    (["augment.val_fraction=0.2"], "the stage augments the training data only"),
    (["finetune.task=tag"], "it takes classify and lm"),
])
def test_finetune_stage_refusals(labelled_tsv, tmp_path, tiny_bert_encoder, extra, message):
    from lmforge.finetune.train import finetune

    cfg = finetune_config(tiny_bert_encoder, labelled_tsv(), labelled_tsv(name="val.tsv"), *extra)
    with pytest.raises(ConfigError, match=message):
        finetune(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_prepare_augments_the_training_corpus_not_the_validation_corpus(tmp_path):
    from lmforge.data.shards import load_prepared
    from lmforge.prepare import ensure_prepared

    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("".join(f"the cat number {i} sat on the mat\n" for i in range(40)))
    val.write_text("".join(f"a dog number {i} ran in the park\n" for i in range(10)))
    common = [f"data.path={train}", f"data.val_path={val}", "data.txt_documents=line", "tokenizer.kind=char"]
    plain = load_config(None, [*common, f"data.prepared_dir={tmp_path / 'plain'}"])
    augmented = load_config(None, [*common, f"data.prepared_dir={tmp_path / 'aug'}", "augment.method=noise"])
    assert plain.data_key() != augmented.data_key()
    sizes = {}
    for name, cfg in (("plain", plain), ("aug", augmented)):
        data = load_prepared(ensure_prepared(cfg, progress=False))
        sizes[name] = {split: sum(len(s) for s in data.split(split)) for split in ("train", "val")}
    assert sizes["aug"]["val"] == sizes["plain"]["val"]
    assert sizes["aug"]["train"] == pytest.approx(2 * sizes["plain"]["train"], rel=0.05)
    report = json.loads((tmp_path / "aug" / "augment.report.json").read_text())
    assert report["extra"]["copies_written"] == 40
    with pytest.raises(ConfigError, match="give data.val_path"):
        ensure_prepared(load_config(None, [f"data.path={train}", "data.txt_documents=line", "tokenizer.kind=char",
                                           f"data.prepared_dir={tmp_path / 'none'}", "augment.method=noise"]),
                        progress=False)
