"""The peak FLOP/s that MFU divides by (train/peak.py): measured on the CPU once and cached, a data-sheet figure
on CUDA, train.peak_flops over both; MFU and model FLOP/s in the training log."""

import json

import pytest
import torch
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.train import peak
from lmforge.train.trainer import train

runner = CliRunner()


def test_the_gemm_probe_measures_flops():
    flops = peak.probe_gemm(torch.float32, sizes=(128,), repeats=2)
    assert 1e8 < flops < 1e15  # a real CPU: more than 0.1 GFLOP/s, less than any machine reaches


def test_the_gemm_probe_keeps_its_best_pass(monkeypatch):
    # a slow moment during the first sweep must not become the cached peak
    timings = iter([1e10, 2e10, 3e10, 9e10, 8e10, 7e10])
    monkeypatch.setattr(peak, "_gemm_flops", lambda dtype, n, repeats: next(timings))
    assert peak.probe_gemm(torch.float32, sizes=(64, 128), passes=3) == 9e10


def test_the_cpu_peak_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(peak, "probe_gemm", lambda dtype: calls.append(dtype) or 5e10)
    assert peak.cpu_peak_flops(torch.float32) == 5e10
    assert peak.cpu_peak_flops(torch.float32) == 5e10 and calls == [torch.float32]  # cached
    assert peak.cpu_peak_flops(torch.bfloat16) == 5e10 and calls[-1] == torch.bfloat16  # its own entry
    peak.cpu_peak_flops(torch.float32, refresh=True)
    assert len(calls) == 3
    saved = json.loads((tmp_path / "peak-flops.json").read_text())
    assert len(saved) == 2 and all(f"{torch.get_num_threads()} threads" in k for k in saved)
    (tmp_path / "peak-flops.json").write_text("{not json")  # a broken cache is measured again, not fatal
    assert peak.cpu_peak_flops(torch.float32) == 5e10 and len(calls) == 4
    # a figure the one-sweep probe of earlier versions cached is not trusted: measured again, once
    old = {k.removesuffix(" | probe 2"): 9e9 for k in json.loads((tmp_path / "peak-flops.json").read_text())}
    (tmp_path / "peak-flops.json").write_text(json.dumps(old))
    assert peak.cpu_peak_flops(torch.float32) == 5e10 and len(calls) == 5
    assert peak.cpu_peak_flops(torch.float32) == 5e10 and len(calls) == 5


def test_peak_flops_prefers_the_configured_figure(monkeypatch):
    monkeypatch.setattr(peak, "cpu_peak_flops", lambda dtype: {torch.float32: 1e11, torch.bfloat16: 2e11}[dtype])
    assert peak.peak_flops(torch.device("cpu"), False, None) == 1e11
    assert peak.peak_flops(torch.device("cpu"), True, None) == 2e11
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert peak.peak_flops(torch.device("cuda"), True, None) == 989e12
    assert peak.peak_flops(torch.device("cpu"), False, 3e9) == 3e9


@pytest.mark.parametrize("name, bf16, expected", [
    ("NVIDIA H100 80GB HBM3", True, 989e12), ("NVIDIA H100 PCIe", True, 756e12), ("NVIDIA H100 NVL", True, 835e12),
    ("NVIDIA H200", True, 989e12), ("NVIDIA A100-SXM4-80GB", True, 312e12), ("NVIDIA A100-SXM4-80GB", False, 19.5e12),
    ("NVIDIA L40S", True, 362e12), ("NVIDIA L4", True, 121e12), ("NVIDIA GeForce RTX 4090", False, 82.6e12),
    ("Tesla T4", True, None),
])
def test_gpu_peaks_come_from_the_data_sheet_table(name, bf16, expected):
    assert peak.gpu_peak_flops(name, bf16) == expected


def test_training_logs_model_flops_and_mfu_on_the_cpu(tiny_config, tmp_path):
    result = train(tiny_config("train.peak_flops=1e12", "train.report=false", "sample.num_samples=0"),
                   tmp_path / "run", progress=False)
    from lmforge.run import load_run

    per_token = load_run(result.run_dir).model.flops_per_token()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "tokens_per_s" in r]
    assert logged and all(r["flops_per_s"] == pytest.approx(per_token * r["tokens_per_s"]) for r in logged)
    assert all(r["mfu"] == pytest.approx(r["flops_per_s"] / 1e12) for r in logged)


def test_bench_gemm_prints_the_cached_peak_and_refuses_bad_options(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFORGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(peak, "probe_gemm", lambda dtype: 4.2e10)
    result = runner.invoke(app, ["bench-gemm", "--dtype", "bfloat16"])
    assert result.exit_code == 0 and result.output.startswith("42.0 GFLOP/s (bfloat16, "), result.output
    for args, message in [(["--dtype", "fp16"], "--dtype 'fp16': expected float32 or bfloat16"),
                          (["--threads", "0"], "--threads 0: expected 1 or more")]:
        bad = runner.invoke(app, ["bench-gemm", *args])
        assert bad.exit_code == 2 and bad.output.strip() == f"error: {message}", bad.output
