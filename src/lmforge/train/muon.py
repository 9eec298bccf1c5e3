"""Muon: momentum SGD whose update for each 2-D weight is orthogonalised by a Newton–Schulz iteration.

Keller Jordan's optimizer from the modded-nanogpt speedruns. Every singular value of the momentum matrix
is pushed towards 1, so all directions of a weight matrix learn at a similar rate. It suits the hidden
matrices of a network; embeddings, output heads and 1-D gains stay with AdamW (`build_optimizer` splits
them), since their rows are looked up or read out one token at a time.
"""

from __future__ import annotations

import torch

# coefficients of the quintic iteration: chosen for a steep slope at 0, so few steps suffice, at the
# price of singular values ending near 1 (roughly 0.7..1.2) rather than exactly at 1
_NS_COEFFS = (3.4445, -4.7750, 2.0315)


@torch.no_grad()
def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximately orthogonal matrix with g's singular vectors (the U V^T of its SVD)."""
    a, b, c = _NS_COEFFS
    x = g.float()
    wide = x.size(0) > x.size(1)
    if wide:
        x = x.T  # iterate on the smaller Gram matrix
    x = x / (x.norm() + 1e-7)  # the Frobenius norm bounds the spectral norm: all singular values <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if wide else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters. lr is in units of the orthogonalised update (around 0.02 works)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      ns_steps=ns_steps))
        for group in self.param_groups:
            if any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon takes only 2-D parameters")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad)
                g = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                update = orthogonalize(g, group["ns_steps"])
                # an orthogonal m x n update has RMS 1/sqrt(max(m, n)); rescale tall matrices to match
                update *= max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"])


class Optimizers:
    """Several optimizers stepped as one (Muon for hidden matrices, AdamW for the rest).

    Exposes what the trainer uses: param_groups (shared dicts, so the schedule reaches every group), step,
    zero_grad, state_dict and load_state_dict.
    """

    def __init__(self, **optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers.values() for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.optimizers):
            raise KeyError(f"optimizer state holds {sorted(state)}, expected {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])
