"""The eval recipe, `lmforge eval`'s Python twin: `evaluate(run_dir, ...)` scores whatever the run directory
holds. An LM run gets loss, perplexity per token and word, bits per byte and character (eval/lm.py) and, with
`metrics`, the predictive entropy and generation metrics (eval/generation.py); a fine-tuned task run gets its
task's metrics on `data` or its recipe's val_path (finetune/task.py). The result is the dict `--json` prints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmforge.errors import ConfigError, LmforgeError
from lmforge.eval.generation import generation_metrics
from lmforge.eval.lm import eval_tokens, evaluate_run
from lmforge.finetune.task import evaluate_task_run
from lmforge.run import RunDir, load_run


def resolve_device(name: str) -> str:
    """auto (CUDA when available), cpu or cuda, checked against the machine."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: expected auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def resolve_dtype(name: str, device: str) -> str:
    """auto is bfloat16 on CUDA and float32 on CPU, as in training."""
    if name not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"--dtype {name!r}: expected auto, float32 or bfloat16")
    return ("bfloat16" if device == "cuda" else "float32") if name == "auto" else name


def evaluate(run_dir: str | Path, data: str | Path | None = None, *, split: str = "val", checkpoint: str = "last",
             batch_size: int | None = None, stride: int | None = None, metrics: bool = False, samples: int = 16,
             device: str = "auto", dtype: str = "auto") -> dict:
    """Metrics of the run in `run_dir` (checkpoint last, best or step-N) on `data` or on a split of its own
    data; batch_size None is the run's eval.batch_size (32 for a task run)."""
    run_dir = Path(run_dir)
    if RunDir(run_dir).kind == "task":
        return evaluate_task_run(run_dir, data, checkpoint, batch_size or 32)
    run = load_run(run_dir, checkpoint)
    if metrics and run.model.objective == "masked":
        raise LmforgeError(f"{run_dir}: --metrics scores generated text; a masked-LM encoder does not generate")
    data_file = str(data) if data else None
    device = resolve_device(device)
    result = evaluate_run(run, data_file, batch_size or run.config.eval.batch_size, device, split=split,
                          stride=stride, entropy=metrics, dtype=resolve_dtype(dtype, device))
    if metrics:
        result["generation"] = generation_metrics(run, eval_tokens(run, data_file, split)[0], samples,
                                                  device=result["device"])
    return result
