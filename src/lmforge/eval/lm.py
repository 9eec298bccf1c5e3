"""Language-model metrics: loss, perplexity, bits per token and bits per byte.

Bits per byte divides the total cross-entropy (in bits) by the UTF-8 bytes of the predicted text, so
models with different tokenizers compare on the same data.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.data.loader import eval_batches


@torch.no_grad()
def sum_loss(model: nn.Module, segments: list[np.ndarray], block_size: int, batch_size: int,
             device: torch.device, autocast: contextlib.AbstractContextManager | None = None,
             max_windows: int | None = None, rank: int = 0, world_size: int = 1) -> tuple[float, int]:
    """Total cross-entropy (nats) and number of predicted tokens over non-overlapping windows."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for x, y in eval_batches(segments, block_size, batch_size, max_windows, rank, world_size):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast or contextlib.nullcontext():
            logits, _ = model(x)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
        count += y.numel()
    model.train(was_training)
    return total.item(), count


def metrics(loss_sum: float, tokens: int, n_bytes: int | None = None) -> dict:
    loss = loss_sum / max(tokens, 1)
    out = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / math.log(2),
           "tokens": tokens}
    if n_bytes:
        out["bits_per_byte"] = loss_sum / math.log(2) / n_bytes
        out["bytes"] = n_bytes
    return out


def predicted_bytes(tokenizer, segments: list[np.ndarray], chunk: int = 1 << 20) -> int:
    """UTF-8 bytes of the text whose tokens are predicted (every token of a segment but its first)."""
    total = 0
    for seg in segments:
        for i in range(1, len(seg), chunk):
            total += len(tokenizer.decode(seg[i:i + chunk].tolist()).encode("utf-8"))
    return total


def evaluate_run(run, data_file: str | None = None, batch_size: int = 32, device: str | torch.device = "cpu",
                 max_windows: int | None = None) -> dict:
    """LM metrics of a loaded run (`checkpoint.load_run`) on its validation split or on a text file."""
    from lmforge.data.shards import encode_file, ensure_prepared, load_prepared
    from lmforge.errors import DataError

    cfg = run.config
    if data_file is not None:
        tokens, n_bytes = encode_file(run.tokenizer, data_file, cfg.data)
        segments, source = [tokens], str(data_file)
        if len(tokens) < 2:
            raise DataError(f"{data_file}: fewer than 2 tokens to evaluate")
    else:
        data = load_prepared(ensure_prepared(cfg, progress=False))
        if data.tokenizer.sha256 != run.tokenizer.sha256:
            raise DataError(f"{run.run_dir}: the prepared data was encoded with another tokenizer than this run's")
        segments, source = data.split("val"), "validation split"
        n_bytes = predicted_bytes(run.tokenizer, segments)
    loss_sum, count = sum_loss(run.model, segments, cfg.model.block_size, batch_size, torch.device(device),
                               max_windows=max_windows)
    return {"run": str(run.run_dir), "checkpoint": run.checkpoint.name, "data": source,
            **metrics(loss_sum, count, n_bytes)}
