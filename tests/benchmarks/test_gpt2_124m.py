"""benchmarks/gpt2_124m.py end to end at its --tiny size: one process, and fsdp under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpt2_124m.py"


@pytest.mark.parametrize("launch, strategy", [([], "auto"),
                                              (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
                                               "fsdp")])
def test_the_gpt2_benchmark_runs_tiny_and_prints_its_figures(launch, strategy, tiny_corpus, tmp_path):
    # a given peak_flops: no CPU GEMM measurement in a test
    proc = subprocess.run([sys.executable, *launch, str(SCRIPT), "--tiny", "--no-compile", "--steps", "4",
                           "--skip", "1", "--strategy", strategy, "--optimizer", "muon", "--data", str(tiny_corpus),
                           "--prepared", str(tmp_path / "prepared"), "--out", str(tmp_path / "run"), "--json",
                           "train.num_threads=1", "train.peak_flops=1e11"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    world = 2 if launch else 1
    assert figures["world_size"] == world and figures["strategy"] == ("fsdp" if launch else "single")
    assert figures["steps_timed"] == 3 and figures["tokens_per_s"] > 0 and figures["peak_memory_mib"] > 0
    assert figures["flops_per_s"] == pytest.approx(figures["mfu"] * 1e11 * world)
    assert any(line.startswith("tokens/s: ") for line in lines) and any(line.startswith("MFU: ") for line in lines)
    assert (tmp_path / "run/checkpoints/step-4/state.json").is_file()
