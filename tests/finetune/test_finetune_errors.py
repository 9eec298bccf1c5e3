"""Bad input: one-line errors naming the thing (exit status 2 on the command line), and the defined behaviour
for labels that training never saw."""

import json

import pytest
from ft_data import save_tiny_bert, squad_data, write_json
from typer.testing import CliRunner

import lmforge.finetune.train as recipe
from lmforge.cli import app
from lmforge.config import load_config
from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.finetune.task import evaluate_task_run

FAST = ["train.num_threads=1", "train.tensorboard=false", "schedule.name=constant", "schedule.warmup_steps=0",
        "finetune.epochs=1", "finetune.batch_size=8", "finetune.text_column=sentence"]


def config(backbone, train_path, *extra):
    return load_config(None, [f"finetune.backbone={backbone}", f"finetune.train_path={train_path}", *FAST, *extra])


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_unseen_label_in_eval_data_is_counted_and_scored_wrong(tiny_bert, sentiment_tsv, tmp_path):
    train = sentiment_tsv()
    val = sentiment_tsv("val.tsv", n=4, seed=1, extra=[("a film", "neutral"), ("a story", "neutral"), ("it", "meh")])
    result = recipe.finetune(config(tiny_bert, train, f"finetune.val_path={val}"), tmp_path / "run", progress=False)
    [warning] = result.metrics["warnings"]
    assert "val.tsv: 3 labels that training never saw ('neutral' x2, 'meh' x1)" in warning
    assert result.metrics["per_class"]["neutral"]["support"] == 2  # kept in the gold data: each one an error
    assert result.metrics["accuracy"] <= 4 / 7
    code, out, err = run("eval", tmp_path / "run", "--json")
    assert code == 0 and "warning: " in err and "never saw" in err
    assert json.loads(out)["accuracy"] == result.metrics["accuracy"]


def test_missing_text_column(tiny_bert, sentiment_tsv, tmp_path):
    train = sentiment_tsv()
    code, out, err = run("finetune", f"finetune.backbone={tiny_bert}", f"finetune.train_path={train}",
                         "finetune.text_column=review", "--run-dir", tmp_path / "run")
    assert code == 2
    assert err.strip() == f"error: {train}: no text column 'review' (columns: sentence, label)"
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_missing_finetune_section(tmp_path):
    code, _, err = run("finetune", "train.max_steps=3", "--run-dir", tmp_path / "run")
    assert code == 2 and err.startswith("error: finetune: the recipe has no finetune section")


def test_qa_answer_not_in_its_context(tiny_bert, tmp_path):
    data = squad_data(3)
    data["data"][0]["paragraphs"][2]["qas"][0]["answers"][0]["text"] = "purple"
    train = write_json(tmp_path / "train.json", data)
    with pytest.raises(DataError, match=r"train.json: question q2: answer 'purple' is not in its context"):
        recipe.finetune(config(tiny_bert, train, "finetune.task=qa"), tmp_path / "run", progress=False)


def test_backbone_folder_without_weights(sentiment_tsv, tmp_path):
    empty = save_tiny_bert(tmp_path / "no-weights", with_weights=False)
    with pytest.raises(CheckpointError, match=r"no-weights: backbone folder has no weights \(model.safetensors or "
                                              r"pytorch_model.bin\)"):
        recipe.finetune(config(empty, sentiment_tsv()), tmp_path / "run", progress=False)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CheckpointError, match="neither an lmforge run directory"):
        recipe.finetune(config(tmp_path / "nothing", sentiment_tsv()), tmp_path / "run", progress=False)


@pytest.mark.parametrize("extra, message", [
    (["finetune.pooling=first"], "finetune.pooling=first: the gpt backbone is causal"),
    (["finetune.max_length=512"], "finetune.max_length: 512 is longer than the backbone takes (64 positions)"),
])
def test_head_that_does_not_fit_a_gpt(extra, message, tiny_gpt_run, sentiment_tsv, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        recipe.finetune(config(tiny_gpt_run, sentiment_tsv(), "finetune.max_length=64", *extra), tmp_path / "run",
                        progress=False)


def test_lm_task_or_lora_that_does_not_fit(tiny_bert, tiny_lstm_run, sentiment_tsv, tmp_path):
    with pytest.raises(ConfigError, match="finetune.task=lm: .* without an LM head"):
        recipe.finetune(config(tiny_bert, sentiment_tsv(), "finetune.task=lm"), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="finetune.lora: peft has no LoRA for lstm layers"):
        recipe.finetune(config(tiny_lstm_run, sentiment_tsv(), "finetune.lora.r=2", "finetune.pooling=mean"),
                        tmp_path / "b", progress=False)


def test_weights_that_do_not_fit_the_head(tiny_bert, sentiment_tsv, tmp_path):
    recipe.finetune(config(tiny_bert, sentiment_tsv()), tmp_path / "run", progress=False)
    task = tmp_path / "run" / "task.json"
    task.write_text(json.dumps({**json.loads(task.read_text()), "labels": ["a", "b", "c"]}))
    code, _, err = run("eval", tmp_path / "run", "--data", sentiment_tsv())
    assert code == 2 and err.count("\n") == 1 and "weights do not fit this model" in err, err
    with pytest.raises(CheckpointError):
        evaluate_task_run(tmp_path / "run", sentiment_tsv())
