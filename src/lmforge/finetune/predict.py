"""`lmforge predict`: a fine-tuned run's predictions for a task file, in the input's format."""

from __future__ import annotations

from pathlib import Path

from lmforge.finetune.task import encode_file, load_task_run, predictions, run_model, write_predictions


def predict_file(run_dir: str | Path, input_path: str | Path, output: str | Path | None = None,
                 which: str = "last", batch_size: int = 32) -> str:
    """Predict every example of `input_path` with a fine-tuned run; returns (and writes) the predictions."""
    _, task = load_task_run(run_dir, which)
    encoded = encode_file(task, input_path, labelled=False)
    outputs, _ = run_model(task, encoded.features, batch_size, with_loss=False)
    return write_predictions(task, encoded, predictions(task, encoded, outputs), Path(output) if output else None)
