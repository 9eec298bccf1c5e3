"""torch.compile where it pays for itself: train.compile = auto | true | false.

`true` compiles the model before the first step and `false` never does. `auto` trains the first PROBE_STEPS
steps eager and then compiles when what compiling would save on the steps left is at least MARGIN times what
it costs: saving = steps left x eager step time (just measured) x (1 - compiled / eager step time). The cost
and the compiled/eager ratio are the ones this model, batch and precision had the last time they were
compiled on this device (compile-times.json in lmforge's cache folder: a run that compiles times its first
compiled step, the cost, and the PROBE_STEPS after it, the ratio); before any such run, PRIORS. A compiled step
differs from an eager one only to float tolerance, so a run whose auto compiled resumes to the same loss, not
to the same bits.

The priors are measurements: on the CPU, the baby GPT's compiled step is 0.97x its eager step and a cold
compile costs 44 s (5 s warm; docs/BENCHMARKS.md, "Compiling on the CPU"), so auto compiles a first run there
only past about 80,000 such steps; on CUDA, nanoGPT's README reports 0.54x (250 ms to 135 ms per iteration),
and a cold compile takes about a minute. The kept cost is the last one measured, so after a cold compile the
next run's estimate is the cold one: auto errs towards eager.

Inductor's compiled graphs and kernels are kept in the same cache folder (TORCHINDUCTOR_CACHE_DIR, unless the
user set it), so that a second run of the same model starts warm.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from lmforge.io import atomic_write_json, user_cache_dir

PROBE_STEPS = 5  # steps timed before auto decides, and after it compiled; the first of the eager ones warms up
MARGIN = 2.0  # auto compiles when the expected saving is at least this many times the compile cost
PRIORS = {"cpu": (44.0, 0.97), "cuda": (60.0, 0.54)}  # device type: (compile seconds, compiled / eager step time)


def keep_compiled_in_cache() -> None:
    """Point inductor at lmforge's cache folder; before anything imports torch._dynamo, which fixes the folder."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_cache_dir() / "inductor"))


def pays_back(steps_left: int, eager_step_s: float, compile_s: float, ratio: float) -> bool:
    return steps_left * eager_step_s * (1.0 - ratio) >= MARGIN * compile_s


class Compiler:
    """Decides and applies train.compile for one run. `what` (JSON-able) names the model, batch and precision whose
    compile is measured; the device and torch's version are added to it."""

    def __init__(self, setting: bool | str, device: torch.device, what: list) -> None:
        self.setting, self.device = setting, device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        self.key = json.dumps([*what, name, torch.__version__], sort_keys=True)
        self.eager: list[float] = []  # step times before compiling
        self.compiled: list[float] = []  # the first compiled step (the cost) and the ones after it
        # auto: "probing" eager steps, then "measuring" the compiled ones if it compiled, then "done"
        self.state = "probing" if setting == "auto" else "done"

    def at_start(self, model: nn.Module) -> nn.Module:
        return torch.compile(model) if self.setting is True else model

    def after_step(self, model: nn.Module, step_s: float, steps_left: int) -> nn.Module:
        """The model for the next step, given how long this one took: the same one, or (auto, once) compiled."""
        if self.state == "measuring":
            self.compiled.append(step_s)
            if len(self.compiled) > PROBE_STEPS:
                self.record()
                self.state = "done"
        elif self.state == "probing":
            self.eager.append(step_s)
            if len(self.eager) > PROBE_STEPS:
                compile_s, ratio = self.expected()
                self.state = "measuring" if pays_back(steps_left, self.eager_step_s(), compile_s, ratio) else "done"
                if self.state == "measuring":
                    return torch.compile(model)
        return model

    def eager_step_s(self) -> float:
        timed = sorted(self.eager[1:])
        return timed[len(timed) // 2]

    def expected(self) -> tuple[float, float]:
        """(compile seconds, compiled / eager step time): measured for this key before, else the device's prior."""
        kept = _read().get(self.key)
        if isinstance(kept, dict) and all(isinstance(kept.get(k), (int, float)) for k in ("compile_s", "ratio")):
            return float(kept["compile_s"]), float(kept["ratio"])
        return PRIORS["cuda" if self.device.type == "cuda" else "cpu"]

    def record(self) -> None:
        eager = self.eager_step_s()
        timed = sorted(self.compiled[1:])
        compiled = timed[len(timed) // 2]
        times = _read()
        times[self.key] = {"compile_s": round(max(self.compiled[0] - compiled, 0.0), 3),
                           "ratio": round(compiled / eager, 4)}
        try:
            _path().parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(_path(), times)
        except OSError:
            pass  # a read-only cache leaves the next run the priors, not this run without its model


def _path():
    return user_cache_dir() / "compile-times.json"


def _read() -> dict:
    try:
        times = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return times if isinstance(times, dict) else {}
