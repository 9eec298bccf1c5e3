"""train.dtype=auto: bf16 autocast where bf16 matrix products run in hardware, for the families measured faster
there at the same loss; float32 elsewhere; `lmforge eval` computes as the run trained."""

import pytest
import torch

from lmforge.config import load_config
from lmforge.eval.recipe import resolve_dtype
from lmforge.train import distributed
from lmforge.train.distributed import computes_in_bf16
from lmforge.train.trainer import train

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def bf16_hardware(monkeypatch):
    def set_to(present: bool):
        monkeypatch.setattr(distributed, "fast_bf16_matmul", lambda device: present)
    return set_to


def test_auto_is_bf16_where_the_hardware_multiplies_it_and_the_family_was_measured(bf16_hardware):
    bf16_hardware(True)
    assert computes_in_bf16("auto", CPU, bf16_on_cpu=True)
    assert not computes_in_bf16("auto", CPU, bf16_on_cpu=False)  # a family not measured on the CPU
    assert computes_in_bf16("auto", CUDA, bf16_on_cpu=False)  # every family on CUDA
    assert not computes_in_bf16("float32", CPU, bf16_on_cpu=True)
    bf16_hardware(False)
    assert not computes_in_bf16("auto", CPU, bf16_on_cpu=True) and not computes_in_bf16("auto", CUDA, True)
    assert computes_in_bf16("bfloat16", CPU, bf16_on_cpu=False)  # asked for: emulated, slow, but as asked


def test_eval_auto_computes_as_the_run_trained(bf16_hardware):
    bf16_hardware(True)
    assert resolve_dtype("auto", "cpu", "auto", bf16_on_cpu=True) == "bfloat16"
    assert resolve_dtype("auto", "cpu", "float32", bf16_on_cpu=True) == "float32"
    assert resolve_dtype("auto", "cpu", "auto", bf16_on_cpu=False) == "float32"
    assert resolve_dtype("float32", "cpu", "bfloat16", bf16_on_cpu=True) == "float32"
    bf16_hardware(False)
    assert resolve_dtype("auto", "cpu", "auto", bf16_on_cpu=True) == "float32"


@pytest.mark.parametrize("present, family, autocast", [
    (True, [], True), (False, [], False), (True, ["model.arch=lstm", "model.hidden_size=16"], False)],
    ids=["gpt-bf16-cpu", "gpt-plain-cpu", "lstm-bf16-cpu"])
def test_the_trainer_autocasts_as_auto_decides(present, family, autocast, bf16_hardware, tiny_overrides, tmp_path,
                                               monkeypatch):
    bf16_hardware(present)
    entered = []
    real = torch.autocast

    def spy(device_type, *args, **kwargs):
        if kwargs.get("enabled", True):  # not the CPU attention's way out of autocast (models/transformer.py)
            entered.append((device_type, kwargs.get("dtype")))
        return real(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    base = [o for o in tiny_overrides if not (family and o.startswith("model.n_head"))]
    cfg = load_config(None, [*base, *family, "train.dtype=auto", "train.max_steps=2", "sample.num_samples=0"])
    result = train(cfg, tmp_path / "run", progress=False)
    assert result.step == 2
    assert set(entered) == ({("cpu", torch.bfloat16)} if autocast else set())
