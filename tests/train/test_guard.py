"""The non-finite guard (train/guard.py): a step whose loss or gradient is NaN or infinite is skipped, with
nothing updated; too many in a row stop the run in one line with the last good weights saved; metrics.jsonl
stays strict JSON whatever the values."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import lmforge.train.trainer as trainer
from lmforge.cli import app
from lmforge.train.guard import DivergedError, NonFiniteGuard
from lmforge.train.logging import strict_json

runner = CliRunner()


def strict_records(path):
    """The records of metrics.jsonl, read as strictly as jq does: a bare NaN or Infinity fails."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def nan_gradients_at(monkeypatch, calls: set[int] | None = None, from_call: int | None = None):
    """Make the gradient of one weight NaN on the chosen backward passes (1-based), as a fault would."""
    build = trainer.build_parts
    seen = {"n": 0}

    def poisoned(n: int) -> bool:
        return n in (calls or set()) or (from_call is not None and n >= from_call)

    def build_poisoned(*args, **kwargs):
        parts = build(*args, **kwargs)
        first = next(parts.raw_model.parameters())

        def hook(grad):
            seen["n"] += 1
            return torch.full_like(grad, math.nan) if poisoned(seen["n"]) else grad
        first.register_hook(hook)
        return parts
    monkeypatch.setattr(trainer, "build_parts", build_poisoned)
    return seen


def test_the_guard_counts_in_a_row_and_in_all():
    guard = NonFiniteGuard(2)
    assert guard.ok(torch.tensor(1.0), torch.tensor(0.5))
    assert not guard.ok(torch.tensor(math.nan), torch.tensor(0.5))
    assert not guard.ok(torch.tensor(1.0), torch.tensor(math.inf))
    assert guard.exhausted and (guard.in_a_row, guard.total) == (2, 2)
    assert guard.ok(torch.tensor(2.0), None) and not guard.exhausted and guard.total == 2


def test_metrics_lines_stay_strict_json():
    line = strict_json({"step": 3, "loss": math.nan, "grad_norm": math.inf, "lr": 0.1, "lr_groups": [0.1, -math.inf]})
    record = json.loads(line, parse_constant=lambda t: pytest.fail(f"bare {t}"))
    assert record["loss"] is None and record["grad_norm"] is None and record["lr_groups"] == [0.1, None]
    assert record["nonfinite"] == {"loss": "nan", "grad_norm": "inf", "lr_groups": "[0.1, -inf]"}
    assert "nonfinite" not in json.loads(strict_json({"step": 1, "loss": 2.5}))


def test_bad_steps_are_skipped_and_the_run_still_makes_its_steps(tiny_config, tmp_path, monkeypatch):
    seen = nan_gradients_at(monkeypatch, calls={3, 7, 8})
    result = trainer.train(tiny_config("train.max_steps=12", "train.log_interval=1", "train.report=false"),
                           tmp_path / "run", progress=False)
    assert result.step == 12 and seen["n"] == 15  # 12 updates, 3 skipped passes
    records = strict_records(tmp_path / "run" / "metrics.jsonl")
    skipped = [r for r in records if r.get("skipped")]
    assert [r["step"] for r in skipped] == [3, 6, 6]  # the step that did not happen, retried with the next batch
    assert all(r["grad_norm"] is None and r["nonfinite"]["grad_norm"] == "nan" for r in skipped)
    trained = [r for r in records if "loss" in r and not r.get("skipped")]
    assert [r["step"] for r in trained] == list(range(1, 13))  # every step's record once, in order
    assert trained[-1]["skipped_steps"] == 3
    weights = load_file(tmp_path / "run" / "checkpoints" / "step-12" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_too_many_in_a_row_stop_with_the_last_good_weights(tiny_config, tmp_path, monkeypatch):
    """The skipped steps touch nothing: the weights the guard saves at step 2 are those of a clean 2-step run."""
    same = ("schedule.decay_steps=20", "train.report=false", "sample.num_samples=0")
    trainer.train(tiny_config("train.max_steps=2", *same), tmp_path / "clean", progress=False)
    nan_gradients_at(monkeypatch, from_call=3)
    with pytest.raises(DivergedError) as e:
        trainer.train(tiny_config("train.max_steps=20", "train.max_bad_steps=3", *same), tmp_path / "run",
                      progress=False)
    message = str(e.value)
    assert message.startswith("3 steps in a row after step 2 had a non-finite loss or gradient norm (3 in all): "
                              "stopping; the weights of step 2 (validation loss ")
    assert "\n" not in message
    clean = load_file(tmp_path / "clean" / "checkpoints" / "step-2" / "model.safetensors")
    saved = load_file(tmp_path / "run" / "checkpoints" / "step-2" / "model.safetensors")
    assert all(torch.equal(clean[k], saved[k]) for k in clean)
    assert json.loads((tmp_path / "run" / "checkpoints" / "step-2" / "state.json").read_text())["step"] == 2
    strict_records(tmp_path / "run" / "metrics.jsonl")


def test_a_learning_rate_far_too_high_ends_in_one_line_and_exit_2(tiny_overrides, tmp_path):
    """The user's case: optimizer.lr=1e30 on a small GPT. The first update breaks the weights, so the stop saves
    none (a checkpoint of weights that give NaN would be no state to resume from)."""
    result = runner.invoke(app, ["train", *tiny_overrides, "optimizer.lr=1e30", "train.max_steps=200",
                                 "train.report=false", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2, result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "5 steps in a row after step 1" in error and "lower optimizer.lr" in error, result.output
    assert "non-finite validation loss too, so they were not saved; no checkpoint was written before" in error
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    records = strict_records(tmp_path / "run" / "metrics.jsonl")
    assert records and max(r["step"] for r in records) < 200  # stopped, not 200 steps of NaN
