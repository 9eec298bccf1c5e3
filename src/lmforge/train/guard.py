"""The guard against non-finite steps, shared by training and fine-tuning.

A step whose loss or gradient norm is NaN or infinite is skipped: the optimizer does not step, the
schedule does not move (it is keyed by the step count, which does not advance), and the gradients are
dropped. Skipped steps are counted, and `train.max_bad_steps` of them in a row stop the run with one line:
more steps would only burn time. Skipped steps change nothing, so the weights at the stop are those of the
last step made; the trainer saves them only if they still give a finite validation loss (the fault was in
the batches), not when an update broke them (a learning rate far too high), where the last checkpoint
stays as it was.
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.errors import LmforgeError
from lmforge.train.parallel import whole


class DivergedError(LmforgeError):
    """Training stopped after too many non-finite steps in a row."""


def grad_norm(parameters: list[nn.Parameter], clip: float) -> torch.Tensor:
    """The global gradient norm, clipping to `clip` when it is above 0 (the norm before clipping either way);
    over fsdp-sharded gradients too (gathered whole)."""
    if clip > 0:
        return whole(torch.nn.utils.clip_grad_norm_(parameters, clip))
    return whole(torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None]))


class NonFiniteGuard:
    """Counts non-finite steps: in a row (to stop) and in all (to report)."""

    def __init__(self, max_bad_steps: int):
        self.max_bad_steps = max_bad_steps
        self.in_a_row = 0
        self.total = 0

    def ok(self, loss: torch.Tensor, norm: torch.Tensor | None) -> bool:
        """Whether the step may update the weights; one host sync for both values."""
        values = loss.detach().float().reshape(1)
        if norm is not None:
            values = torch.cat([values, norm.detach().float().reshape(1).to(values.device)])
        finite = bool(torch.isfinite(values).all())
        self.in_a_row = 0 if finite else self.in_a_row + 1
        self.total += not finite
        return finite

    @property
    def exhausted(self) -> bool:
        return self.in_a_row >= self.max_bad_steps

    def error(self, after_step: int, saved: str) -> DivergedError:
        return DivergedError(f"{self.in_a_row} steps in a row after step {after_step} had a non-finite loss or "
                             f"gradient norm ({self.total} in all): stopping; {saved}; lower optimizer.lr, raise "
                             "schedule.warmup_steps or set train.grad_clip")
