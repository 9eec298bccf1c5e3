"""The peak FLOP/s that MFU divides by: a data-sheet figure for a GPU, a measured one for a CPU.

A GPU's figure comes from `GPU_PEAKS`, matched against `torch.cuda.get_device_name()`: NVIDIA's data-sheet
dense (no sparsity) tensor-core bf16 peak when training in bf16, else the plain fp32 peak. A device the table
does not know gets no MFU rather than a wrong one; `train.peak_flops` gives its figure.

A CPU's data-sheet peak (cores x clock x FMA width) is rarely what torch's GEMM reaches on it, and on a
shared or virtual machine not even the core count is known. So the CPU peak is measured: the fastest of a
few timed square matrix products of 256 to 1024 rows, swept three times (on a 2-core EPYC the smaller
ones, which stay in cache, are the fastest), with the thread count training will use. It is measured once per machine,
thread count, dtype and torch version, and cached in `peak-flops.json` under `$LMFORGE_CACHE_DIR`, else
`$XDG_CACHE_HOME/lmforge`, else `~/.cache/lmforge`. `lmforge bench-gemm` prints it and `--refresh` measures
it again. MFU against it says how close a step is to what this machine's GEMM
can do, which is the question for a CPU run. It is not comparable with a GPU's MFU against a data sheet.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from lmforge.io import atomic_write_json, user_cache_dir

# (name fragment, dense bf16 FLOP/s, fp32 FLOP/s), from NVIDIA's data sheets; the first fragment found in the
# device's name wins, so a variant comes before its family (H100 PCIe before H100, the SXM part)
GPU_PEAKS: tuple[tuple[str, float, float], ...] = (
    ("H200", 989e12, 67e12),
    ("H100 PCIe", 756e12, 51e12),
    ("H100 NVL", 835e12, 60e12),
    ("H100", 989e12, 67e12),
    ("A100", 312e12, 19.5e12),
    ("L40S", 362e12, 91.6e12),
    ("L4", 121e12, 30.3e12),
    ("RTX 4090", 165e12, 82.6e12),
)


def gpu_peak_flops(name: str, bf16: bool) -> float | None:
    """The data-sheet peak of the CUDA device called `name`, or None for one the table does not know."""
    for fragment, bf16_peak, fp32_peak in GPU_PEAKS:
        if fragment in name:
            return bf16_peak if bf16 else fp32_peak
    return None


def cache_path() -> Path:
    return user_cache_dir() / "peak-flops.json"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor() or platform.machine()


def probe_gemm(dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (256, 512, 768, 1024),
               repeats: int = 10, passes: int = 3) -> float:
    """FLOP/s of the fastest timed n x n matrix product (2 n^3 FLOPs) over the sizes, each after a warm-up.

    The sizes are swept `passes` times and the best of everything kept: the figure is cached for good, and on a
    virtual machine one slow moment (a neighbour's burst, a clock ramping up) once left it at 0.72x what the
    same GEMM reached later that hour, so that MFU read above 100 %.
    """
    return max(_gemm_flops(dtype, n, repeats) for _ in range(passes) for n in sizes)


def _gemm_flops(dtype: torch.dtype, n: int, repeats: int) -> float:
    # from a generator of its own: drawing from the global one would leave a run's dropout and its checkpoints'
    # RNG state depending on whether this machine's peak was already cached
    rng = torch.Generator().manual_seed(n)
    a = torch.randn(n, n, generator=rng).to(dtype)
    b = torch.randn(n, n, generator=rng).to(dtype)
    a @ b  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best


def cpu_peak_flops(dtype: torch.dtype = torch.float32, refresh: bool = False) -> float:
    """This CPU's measured GEMM peak at torch's current thread count, from the cache unless `refresh`."""
    name = str(dtype).removeprefix("torch.")
    # "probe 2": figures cached by the one-sweep probe of earlier versions are measured again, once
    key = f"{_cpu_name()} | {torch.get_num_threads()} threads | {name} | torch {torch.__version__} | probe 2"
    path = cache_path()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    if not refresh and isinstance(cached.get(key), (int, float)) and cached[key] > 0:
        return float(cached[key])
    cached[key] = probe_gemm(dtype)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cached)
    except OSError:
        pass  # a read-only home costs a probe per run, not the run
    return cached[key]


def peak_flops(device: torch.device, bf16: bool, configured: float | None) -> float | None:
    """What MFU divides by on one device: train.peak_flops when set, else the GPU data-sheet figure on CUDA
    (None for a GPU `GPU_PEAKS` does not know) or the measured GEMM peak in the training dtype on the CPU."""
    if configured is not None:
        return configured
    if device.type == "cuda":
        return gpu_peak_flops(torch.cuda.get_device_name(device), bf16)
    return cpu_peak_flops(torch.bfloat16 if bf16 else torch.float32)
