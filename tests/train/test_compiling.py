"""train.compile: auto decides after a few eager steps from the measured step time and the kept compile cost
and speed-up (or the device's measured priors)."""

import json
import os

import pytest
import torch
from torch import nn

from lmforge.train import compiling
from lmforge.train.compiling import PRIORS, PROBE_STEPS, Compiler, keep_compiled_in_cache, pays_back
from lmforge.train.trainer import train

CPU = torch.device("cpu")


def compiled(model: nn.Module) -> bool:
    return isinstance(model, torch._dynamo.eval_frame.OptimizedModule)


def steps(compiler: Compiler, model: nn.Module, times: list[float], steps_left: int) -> nn.Module:
    for t in times:
        model = compiler.after_step(model, t, steps_left)
    return model


def test_pays_back_when_the_saving_is_twice_the_cost():
    # 80 steps of 0.5 s at 0.5x save 20 s: twice a 10 s compile
    assert pays_back(80, 0.5, 10.0, 0.5) and not pays_back(79, 0.5, 10.0, 0.5)
    assert not pays_back(10**9, 0.1, 1.0, 1.0)  # no faster compiled: never


def test_true_compiles_at_the_start_and_false_never():
    model = nn.Linear(2, 2)
    assert compiled(Compiler(True, CPU, ["m"]).at_start(model))
    never = Compiler(False, CPU, ["m"])
    assert steps(never, never.at_start(model), [1.0] * 20, 10**9) is model


def test_the_inductor_cache_goes_to_lmforges_cache_folder_unless_set(monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    keep_compiled_in_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(compiling.user_cache_dir() / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")
    keep_compiled_in_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"


def test_auto_on_the_cpu_leaves_a_baby_length_run_eager():
    # 2,000 steps of 40 ms at the CPU prior (0.97x) save 2.4 s, far under twice its 44 s compile
    auto = Compiler("auto", CPU, ["baby"])
    model = nn.Linear(2, 2)
    assert auto.expected() == PRIORS["cpu"]
    assert steps(auto, model, [0.04] * (PROBE_STEPS + 1), 2000) is model
    assert steps(auto, model, [0.04] * 10, 10**9) is model  # decided once: it does not look again


def test_auto_compiles_a_long_run_after_its_probe_and_keeps_what_it_measured():
    model = nn.Linear(2, 2)
    auto = Compiler("auto", CPU, ["long"])
    # the first probe step warms up and is not counted; the median of the others is 0.04 s
    model = steps(auto, model, [9.0, 0.04, 0.04, 0.05, 0.04], 10**6)
    assert not compiled(model)
    model = auto.after_step(model, 0.04, 10**6)
    assert compiled(model)
    # the first compiled step pays the compile, the next ones run at 0.03 s
    assert steps(auto, model, [5.03] + [0.03] * PROBE_STEPS, 10**6) is model
    kept = json.loads((compiling.user_cache_dir() / "compile-times.json").read_text())
    assert kept[auto.key] == {"compile_s": pytest.approx(5.0), "ratio": pytest.approx(0.75)}
    assert Compiler("auto", CPU, ["long"]).expected() == (pytest.approx(5.0), pytest.approx(0.75))
    assert Compiler("auto", CPU, ["other"]).expected() == PRIORS["cpu"]
    assert steps(auto, model, [0.01] * 10, 10**6) is model  # measured once
    assert json.loads((compiling.user_cache_dir() / "compile-times.json").read_text())[auto.key] == kept[auto.key]


@pytest.mark.slow
def test_auto_compiles_mid_run_and_trains_like_eager(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(compiling.PRIORS, "cpu", (0.0, 0.5))  # so that a 14-step run compiles after its probe
    kept = compiling.user_cache_dir() / "compile-times.json"
    before = set(json.loads(kept.read_text())) if kept.is_file() else set()
    eager = train(tiny_config("train.max_steps=14", "sample.num_samples=0", "train.compile=false"),
                  tmp_path / "eager", progress=False)
    auto = train(tiny_config("train.max_steps=14", "sample.num_samples=0", "train.compile=auto"),
                 tmp_path / "auto", progress=False)
    assert auto.val_loss == pytest.approx(eager.val_loss, rel=1e-3)
    new = set(json.loads(kept.read_text())) - before
    assert len(new) == 1 and '"gpt"' in new.pop()  # this model's compile, measured mid-run
