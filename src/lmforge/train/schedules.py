"""Learning-rate and batch-size schedules as pure functions of the step: nothing to checkpoint, resume is exact."""

from __future__ import annotations

import math

from lmforge.config import ScheduleConfig, TrainConfig


def batch_rows(step: int, cfg: TrainConfig) -> int:
    """Sequences per micro-batch at optimizer step `step`: a linear ramp from batch_warmup_start to
    micro_batch_size over batch_warmup_steps. Small early batches buy more updates for the same tokens while
    the gradient is large and consistent, which is when a big batch adds least (GPT-3's batch ramp)."""
    if step >= cfg.batch_warmup_steps:
        return cfg.micro_batch_size
    span = cfg.micro_batch_size - cfg.batch_warmup_start
    return cfg.batch_warmup_start + round(span * step / cfg.batch_warmup_steps)


def lr_at(step: int, lr: float, cfg: ScheduleConfig, max_steps: int) -> float:
    """The learning rate for optimizer step `step` (0-based)."""
    total = cfg.decay_steps or max_steps
    if cfg.name == "onecycle":
        return _onecycle(step, lr, cfg, total)
    if cfg.name == "slanted_triangular":
        return _slanted_triangular(step, lr, cfg, total)
    if cfg.name == "step":  # torch's StepLR after a hold: the classic RNN LM recipes' "halve every epoch after epoch k"
        return lr * cfg.step_gamma ** (max(step - cfg.step_start, 0) // cfg.step_size)
    warmup = cfg.warmup_steps
    if step < warmup:
        # nanoGPT's warmup: (step+1)/(warmup+1), so step 0 already moves
        return lr * (step + 1) / (warmup + 1)
    if cfg.name == "constant":
        return lr
    if cfg.name == "inverse_sqrt":
        return max(cfg.min_lr, lr * math.sqrt(max(warmup, 1) / max(step, 1)))
    if step >= total:
        return cfg.min_lr
    if cfg.name == "wsd":
        cooldown_start = total - max(int(cfg.cooldown_fraction * total), 1)
        if step < cooldown_start:
            return lr
        return lr + (step - cooldown_start) / (total - cooldown_start) * (cfg.min_lr - lr)
    progress = (step - warmup) / max(total - warmup, 1)
    if cfg.name == "cosine":
        return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - cfg.min_lr)
    if cfg.name == "linear":
        return lr + progress * (cfg.min_lr - lr)
    raise ValueError(f"schedule.name: unknown schedule {cfg.name}")


def _onecycle(step: int, lr: float, cfg: ScheduleConfig, total: int) -> float:
    """Cosine up from lr/onecycle_div to lr, then cosine down to min_lr (torch's OneCycleLR shape)."""
    rise = max(int(total * cfg.warmup_fraction), 1)
    start = lr / cfg.onecycle_div
    if step < rise:
        return start + 0.5 * (1.0 - math.cos(math.pi * step / rise)) * (lr - start)
    progress = min((step - rise) / max(total - rise, 1), 1.0)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - cfg.min_lr)


def _slanted_triangular(step: int, lr: float, cfg: ScheduleConfig, total: int) -> float:
    """ULMFiT's slanted triangular rate (Howard & Ruder 2018, eq. 3): short linear rise, long linear decay."""
    cut = max(math.floor(total * cfg.warmup_fraction), 1)
    t = min(step, total)
    p = t / cut if t < cut else 1.0 - (t - cut) / max(cut * (1.0 / cfg.warmup_fraction - 1.0), 1)
    return lr * (1.0 + max(p, 0.0) * (cfg.stlr_ratio - 1.0)) / cfg.stlr_ratio
