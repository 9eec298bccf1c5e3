"""Two gloo ranks under torchrun train the same weights as one process with the same global batch."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lmforge.train.trainer import train


@pytest.mark.parametrize("strategy, accum, optimizer", [("ddp", 1, "muon"), ("fsdp", 1, "adamw"), ("fsdp", 2, "adamw"),
                                                       ("fsdp", 2, "muon")])
def test_two_ranks_equal_one_process(strategy, accum, optimizer, tiny_config, tiny_overrides, tmp_path):
    common = ["train.max_steps=4", "train.eval_interval=4", "train.num_threads=1", "sample.num_samples=0",
              "model.dropout=0.0", f"train.grad_accum_steps={accum}", f"optimizer.name={optimizer}"]
    single = train(tiny_config(*common, f"train.micro_batch_size={8 // accum}"), tmp_path / "single", progress=False)

    overrides = [*tiny_overrides, *common, f"train.micro_batch_size={4 // accum}", f"train.strategy={strategy}"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lmforge", "train", *overrides, "--run-dir", str(tmp_path / "ddp"), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a = load_file(single.run_dir / "checkpoints/step-4/model.safetensors")
    b = load_file(tmp_path / "ddp/checkpoints/step-4/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)


def _torchrun(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lmforge", "train", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, timeout=300)


def test_an_fsdp_run_resumes_bit_for_bit_and_its_checkpoint_loads_anywhere(tiny_overrides, tmp_path):
    common = [*tiny_overrides, "train.num_threads=1", "train.strategy=fsdp",
              "train.micro_batch_size=4", "train.eval_interval=3", "model.dropout=0.1", "sample.num_samples=1",
              "sample.max_new_tokens=8", "schedule.decay_steps=6"]
    whole = _torchrun(*common, "train.max_steps=6", "--run-dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    half = _torchrun(*common, "train.max_steps=3", "--run-dir", tmp_path / "half")
    assert half.returncode == 0, half.stderr[-3000:]
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "lmforge", "train", "--resume", str(tmp_path / "half"), "train.max_steps=6",
                              "--no-progress"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(tmp_path / "whole/checkpoints/step-6/model.safetensors")
    b = load_file(tmp_path / "half/checkpoints/step-6/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "whole/samples.txt").read_text() == (tmp_path / "half/samples.txt").read_text()
    # one model.safetensors and optimizer.pt, as any run has: a single process evaluates it
    from cli_checks import invoke
    code, out, err = invoke("eval", tmp_path / "whole", "--json")
    assert code == 0, err


@pytest.mark.parametrize("args, message", [
    (["train.strategy=fsdp"], "train.strategy=fsdp: needs 2 or more processes"),
    (["train.strategy=ddp"], "train.strategy=ddp: needs 2 or more processes"),
])
def test_a_strategy_that_does_not_fit_is_one_line(args, message, tiny_overrides, tmp_path):
    from cli_checks import assert_one_line_error, invoke

    code, _, err = invoke("train", *tiny_overrides, *args, "--run-dir", tmp_path / "r", "--no-progress")
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["model.arch=lstm", "model.hidden_size=16", "optimizer.name=adamw"],
     "train.strategy=fsdp: the lstm model has no blocks to shard"),
])
def test_fsdp_refuses_what_it_cannot_shard_in_one_line(args, message, tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith("model.n_head")] if "model.arch=lstm" in args \
        else tiny_overrides
    proc = _torchrun(*overrides, "train.strategy=fsdp", *args, "--run-dir", tmp_path / "r")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(message in line for line in errors), proc.stderr[-2000:]
    # torchrun itself reports a failed child with a traceback of its own; none may come from lmforge
    assert "lmforge/" not in proc.stderr.replace(str(tmp_path), "") and not (tmp_path / "r").exists()
