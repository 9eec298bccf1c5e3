"""The run directory: kinds, start and resume checks, the lock, checkpoint resolution."""

import json

import pytest

from lmforge.config import load_config
from lmforge.errors import CheckpointError
from lmforge.run import RunDir


def test_kind_follows_the_files(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.kind is None
    run.create(load_config(None))
    assert run.kind == "lm" and not run.is_trained()
    (run.path / "task.json").write_text(json.dumps({"task": "classify", "labels": [], "backbone": "gpt"}))
    assert run.kind == "task" and run.task_info()["task"] == "classify"


def test_start_refuses_an_existing_run_and_resume_needs_a_checkpoint(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        run.check_start(resume=True, overwrite=False)
    run.create(load_config(None))
    (run.path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(CheckpointError, match="already holds a run"):
        run.check_start(resume=False, overwrite=False)
    run.check_start(resume=False, overwrite=True)
    run.create(load_config(None), overwrite=True)
    assert not (run.path / "metrics.jsonl").exists()


def test_a_second_writer_is_refused_until_the_first_lets_go(tmp_path):
    first, second = RunDir(tmp_path / "r"), RunDir(tmp_path / "r")
    first.lock()
    with pytest.raises(CheckpointError, match="another process is writing"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_checkpoint_names(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create(load_config(None))
    with pytest.raises(CheckpointError, match="no checkpoints yet"):
        run.checkpoint()
    for step, loss in ((10, 2.0), (20, 3.0)):
        ckpt = run.path / "checkpoints" / f"step-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "state.json").write_text(json.dumps({"step": step, "val_loss": loss}))
    assert run.checkpoint().name == "step-20" and run.checkpoint("best").name == "step-10"
    with pytest.raises(CheckpointError, match="no checkpoint 'step-5'"):
        run.checkpoint("step-5")


def test_overwriting_a_run_keeps_the_writers_lock(tmp_path):
    writer = RunDir(tmp_path / "r")
    writer.lock()
    writer.create(load_config(None))
    (tmp_path / "r" / "metrics.jsonl").write_text("{}\n")
    writer.create(load_config(None), overwrite=True)
    assert (tmp_path / "r" / ".lock").is_file() and not (tmp_path / "r" / "metrics.jsonl").exists()
    with pytest.raises(CheckpointError, match="another process is writing"):
        RunDir(tmp_path / "r").lock()
    writer.unlock()


def test_a_config_cut_short_is_refused_but_an_edited_one_is_read(tmp_path):
    from lmforge.config import flatten
    run = RunDir(tmp_path / "r")
    cfg = load_config(None)
    run.create(cfg)
    ckpt = run.path / "checkpoints" / "step-1"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"step": 1, "model": cfg.model.model_dump(mode="json"),
                                                 "config_keys": sorted(flatten(cfg.model_dump(mode="json")))}))
    text = run.config_path.read_text()
    run.config_path.write_text(text.replace("max_new_tokens: ", "max_new_tokens: 1"))  # an edit: still read
    assert run.config().sample.max_new_tokens != cfg.sample.max_new_tokens
    lines = text.splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if line.startswith("train:"))
    run.config_path.write_text("".join(lines[:cut]))  # valid YAML, train and what follows gone
    with pytest.raises(CheckpointError, match=r"config.yaml: \d+ setting\(s\) step-1 was trained with are missing"):
        run.config()
