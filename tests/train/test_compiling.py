"""train.compile: auto decides after a few eager steps from the measured step time and the kept compile cost."""

import json
import os

import pytest
import torch
from torch import nn

from lmforge.train import compiling
from lmforge.train.compiling import COLD_COMPILE_S, PROBE_STEPS, Compiler, pays_back
from lmforge.train.trainer import train

CPU = torch.device("cpu")


def compiled(model: nn.Module) -> bool:
    return isinstance(model, torch._dynamo.eval_frame.OptimizedModule)


def steps(compiler: Compiler, model: nn.Module, times: list[float], steps_left: int) -> nn.Module:
    for t in times:
        model = compiler.after_step(model, t, steps_left)
    return model


def test_pays_back_when_the_eager_remainder_is_ten_compiles():
    assert pays_back(1000, 0.6, 60.0) and not pays_back(999, 0.6, 60.0)


def test_true_compiles_at_the_start_and_false_never():
    model = nn.Linear(2, 2)
    assert compiled(Compiler(True, CPU, ["m"]).at_start(model))
    never = Compiler(False, CPU, ["m"])
    assert steps(never, never.at_start(model), [1.0] * 20, 10**9) is model


def test_auto_stays_eager_on_the_cpu():
    auto = Compiler("auto", CPU, ["m"])
    model = nn.Linear(2, 2)
    assert steps(auto, auto.at_start(model), [1.0] * 20, 10**9) is model


@pytest.fixture
def auto_here(monkeypatch):
    """auto as it decides on CUDA, on this CPU."""
    monkeypatch.setattr(compiling, "auto_compiles_on", lambda device: True)


def test_auto_compiles_a_long_run_after_its_probe_and_keeps_the_cost(auto_here, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    model = nn.Linear(2, 2)
    auto = Compiler("auto", CPU, ["long"])
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"].startswith(os.environ["LMFORGE_CACHE_DIR"])
    # the first probe step warms up and is not counted; the median of the others is 0.1 s
    model = steps(auto, model, [9.0, 0.1, 0.1, 0.2, 0.1], 10**6)
    assert not compiled(model)
    model = auto.after_step(model, 0.1, 10**6)
    assert compiled(model)
    assert auto.after_step(model, 12.6, 10**6) is model  # the first compiled step: 12.5 s of compiling
    kept = json.loads((compiling.user_cache_dir() / "compile-times.json").read_text())
    assert kept[auto.key] == pytest.approx(12.5)
    assert Compiler("auto", CPU, ["long"]).expected_cost() == pytest.approx(12.5)
    assert Compiler("auto", CPU, ["other"]).expected_cost() == COLD_COMPILE_S
    assert steps(auto, model, [0.05] * 10, 10**6) is model  # decided once


def test_auto_leaves_a_short_run_eager(auto_here):
    model = nn.Linear(2, 2)
    auto = Compiler("auto", CPU, ["short"])
    # 0.1 s a step: 5,999 steps left take 600 s, less than ten cold compiles
    assert steps(auto, model, [0.1] * (PROBE_STEPS + 1), 5999) is model
    assert steps(auto, model, [0.1] * 10, 10**6) is model  # decided once: it does not look again


@pytest.mark.slow
def test_auto_compiles_mid_run_and_trains_like_eager(auto_here, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(compiling, "COLD_COMPILE_S", 0.0)  # so that a 12-step run pays it back
    kept = compiling.user_cache_dir() / "compile-times.json"
    before = set(json.loads(kept.read_text())) if kept.is_file() else set()
    eager = train(tiny_config("train.max_steps=12", "sample.num_samples=0", "train.compile=false"),
                  tmp_path / "eager", progress=False)
    auto = train(tiny_config("train.max_steps=12", "sample.num_samples=0", "train.compile=auto"),
                 tmp_path / "auto", progress=False)
    assert auto.val_loss == pytest.approx(eager.val_loss, rel=1e-3)
    new = set(json.loads(kept.read_text())) - before
    assert len(new) == 1 and '"gpt"' in new.pop()  # this model's compile, measured mid-run
