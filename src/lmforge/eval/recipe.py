"""The eval recipe, `lmforge eval`'s Python twin: `evaluate(run_dir, ...)` scores whatever the run directory
holds. An LM run gets loss, perplexity per token, word and byte, bits per byte and character (eval/lm.py) and, with
`metrics`, the predictive entropy and generation metrics (eval/generation.py); a fine-tuned task run gets its
task's metrics on `data` or its recipe's val_path (finetune/task.py). The result is the dict `--json` prints.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmforge.config import EvalConfig, validate_section
from lmforge.errors import ConfigError, LmforgeError
from lmforge.eval.generation import generation_metrics
from lmforge.eval.lm import eval_tokens, evaluate_run
from lmforge.finetune.task import evaluate_task_run
from lmforge.run import RunDir, load_run
from lmforge.train.distributed import computes_in_bf16


def resolve_device(name: str) -> str:
    """auto (CUDA when available), cpu or cuda, checked against the machine."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {name!r}: expected auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def resolve_dtype(name: str, device: str, trained: str = "auto", bf16_on_cpu: bool = False) -> str:
    """auto computes as the run's training (its train.dtype, `trained`, and its family's `bf16_on_cpu`) would on
    `device`, so that the loss is the one training logged: bf16 where that is asked or auto picks it
    (train/distributed.py), else float32."""
    if name not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"--dtype {name!r}: expected auto, float32 or bfloat16")
    if name != "auto":
        return name
    return "bfloat16" if computes_in_bf16(trained, torch.device(device), bf16_on_cpu) else "float32"


def eval_settings(saved: EvalConfig, **given) -> EvalConfig:
    """The run's eval section with the given options (None = keep the run's) on top; device and dtype are checked
    first, so that a bad one is named as the option it came from."""
    given = {k: v for k, v in given.items() if v is not None}
    if "device" in given:
        resolve_device(given["device"])
    if "dtype" in given:
        resolve_dtype(given["dtype"], "cpu")
    return validate_section(EvalConfig, {**saved.model_dump(), **given}, "eval")


def evaluate(run_dir: str | Path, data: str | Path | None = None, *, split: str = "val", checkpoint: str = "last",
             batch_size: int | None = None, stride: int | None = None, documents: bool | None = None,
             metrics: bool | None = None, samples: int | None = None, device: str | None = None,
             dtype: str | None = None) -> dict:
    """Metrics of the run in `run_dir` (checkpoint last, best or step-N) on `data` or on a split of its own
    data. An option left None is the run's own eval.<option> (config.py's EvalConfig). The result is also
    appended to the run's evals.jsonl, for its report."""
    run_dir = Path(run_dir)
    options = dict(batch_size=batch_size, stride=stride, documents=documents, metrics=metrics, samples=samples,
                   device=device, dtype=dtype)
    if RunDir(run_dir).kind == "task":
        settings = eval_settings(RunDir(run_dir).config().eval, **options)
        result = evaluate_task_run(run_dir, data, checkpoint, settings.batch_size)
        RunDir(run_dir).record_eval(checkpoint, None, result.get("data"), result)
        return result
    run = load_run(run_dir, checkpoint)
    settings = eval_settings(run.config.eval, **options)
    if settings.metrics and run.model.objective == "masked":
        raise LmforgeError(f"{run_dir}: --metrics scores generated text; a masked-LM encoder does not generate")
    data_file = str(data) if data else None
    device_name = resolve_device(settings.device)
    compute_dtype = resolve_dtype(settings.dtype, device_name, run.config.train.dtype, run.model.bf16_on_cpu)
    result = evaluate_run(run, data_file, settings.batch_size, device_name, split=split, stride=settings.stride,
                          entropy=settings.metrics, dtype=compute_dtype,
                          documents=settings.documents)
    if settings.metrics:
        result["generation"] = generation_metrics(run, eval_tokens(run, data_file, split)[0], settings.samples,
                                                  device=result["device"])
    RunDir(run_dir).record_eval(checkpoint, split, data_file, result)
    return result
