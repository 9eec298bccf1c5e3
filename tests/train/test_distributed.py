"""Two gloo ranks under torchrun train the same weights as one process with the same global batch."""

import subprocess
import sys

import torch
from safetensors.torch import load_file

from lmforge.train.trainer import train


def test_two_rank_ddp_equals_one_process(tiny_config, tiny_overrides, tmp_path):
    common = ["train.max_steps=4", "train.eval_interval=4", "train.num_threads=1", "sample.num_samples=0",
              "model.dropout=0.0"]
    single = train(tiny_config(*common, "train.micro_batch_size=8"), tmp_path / "single", progress=False)

    overrides = [*tiny_overrides, *common, "train.micro_batch_size=4"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lmforge", "train", *overrides, "--run-dir", str(tmp_path / "ddp"), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a = load_file(single.run_dir / "checkpoints/step-4/model.safetensors")
    b = load_file(tmp_path / "ddp/checkpoints/step-4/model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
