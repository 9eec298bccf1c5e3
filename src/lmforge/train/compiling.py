"""torch.compile where it pays for itself: train.compile = auto | true | false.

`true` compiles the model before the first step and `false` never does. `auto` trains the first PROBE_STEPS
steps eager, then compiles when the steps left, at the eager step time just measured, would take PAYBACK
times what compiling is expected to cost: what this model took to compile the last time on this machine
(compile-times.json in lmforge's cache folder), else COLD_COMPILE_S. A compiled step differs from an eager one
only to float tolerance, so a run whose auto compiled resumes to the same loss, not to the same bits.

auto compiles only on CUDA. On the CPU, compiled steps of the baby GPT measured no faster than eager ones
(docs/BENCHMARKS.md, "Compiling on the CPU"), so no run there would earn its compile time back; `true` still
compiles on the CPU when asked.

Inductor's compiled graphs and kernels are kept in the same cache folder (TORCHINDUCTOR_CACHE_DIR, unless the
user set it), so a second run of the same model starts warm: a fraction of the cold compile.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from lmforge.io import atomic_write_json, user_cache_dir

PROBE_STEPS = 5  # eager steps timed before auto decides; the first one, which warms up, is not counted
PAYBACK = 10  # auto compiles when the eager remainder would take this many times the compile cost
COLD_COMPILE_S = 60.0  # a first compile's cost before any has been measured here (the baby GPT: 36 s on 2 cores)


def keep_compiled_in_cache() -> None:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "inductor"))


def pays_back(steps_left: int, eager_step_s: float, compile_s: float) -> bool:
    return steps_left * eager_step_s >= PAYBACK * compile_s


def auto_compiles_on(device: torch.device) -> bool:
    return device.type == "cuda"


class Compiler:
    """Decides and applies train.compile for one run. `what` (JSON-able) names the model, batch and precision whose
    compile cost is kept; the device and torch's version are added to it."""

    def __init__(self, setting: bool | str, device: torch.device, what: list) -> None:
        self.setting, self.device = setting, device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        self.key = json.dumps([*what, name, torch.__version__], sort_keys=True)
        self.probe: list[float] = []  # eager step times while auto is deciding
        self.eager_step_s: float | None = None  # set when auto has decided to compile, until its first step ends
        if setting is True or (setting == "auto" and auto_compiles_on(device)):
            keep_compiled_in_cache()

    def at_start(self, model: nn.Module) -> nn.Module:
        return torch.compile(model) if self.setting is True else model

    def after_step(self, model: nn.Module, step_s: float, steps_left: int) -> nn.Module:
        """The model for the next step, given how long this one took: the same one, or (auto, once) compiled."""
        if self.eager_step_s is not None:  # the first compiled step, which paid the compile
            self.record(max(step_s - self.eager_step_s, 0.0))
            self.eager_step_s = None
            return model
        if self.setting != "auto" or not auto_compiles_on(self.device) or len(self.probe) > PROBE_STEPS:
            return model
        self.probe.append(step_s)
        if len(self.probe) <= PROBE_STEPS:
            return model
        timed = sorted(self.probe[1:])
        eager_step_s = timed[len(timed) // 2]
        if not pays_back(steps_left, eager_step_s, self.expected_cost()):
            return model
        self.eager_step_s = eager_step_s
        return torch.compile(model)

    def expected_cost(self) -> float:
        cost = _read().get(self.key)
        return float(cost) if isinstance(cost, (int, float)) else COLD_COMPILE_S

    def record(self, seconds: float) -> None:
        times = _read()
        times[self.key] = round(seconds, 2)
        try:
            _path().parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(_path(), times)
        except OSError:
            pass  # a read-only cache costs the next run a cold estimate, not this run


def _path():
    return user_cache_dir() / "compile-times.json"


def _read() -> dict:
    try:
        times = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return times if isinstance(times, dict) else {}
