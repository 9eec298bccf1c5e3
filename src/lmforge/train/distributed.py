"""torch.distributed set-up for `torchrun`: the same loop runs on one process or many.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them lmforge runs as a single process.
Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def fast_bf16_matmul(device: torch.device) -> bool:
    """Whether bf16 matrix products run in hardware here: a CUDA device that supports bf16, or a CPU with
    AVX512-BF16 or AMX (read from /proc/cpuinfo; False where that is not there to read)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return _cpu_multiplies_bf16()


@functools.cache  # asked several times as a run starts (trainer, optimizer, planner, eval); the CPU does not change
def _cpu_multiplies_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def computes_in_bf16(dtype: str, device: torch.device, bf16_on_cpu: bool) -> bool:
    """Whether a run whose train.dtype is `dtype` computes under bf16 autocast on `device`: when asked, and with
    auto where bf16 matrix products run in hardware: a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX
    for a family measured faster there at the same validation loss (its `bf16_on_cpu`, models/base.py).
    Elsewhere auto is float32."""
    if dtype != "auto":
        return dtype == "bfloat16"
    return fast_bf16_matmul(device) and (device.type == "cuda" or bf16_on_cpu)


def init_distributed(device_preference: str) -> Dist:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world_size, local_rank, device)


def all_reduce_sum(tensor: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
