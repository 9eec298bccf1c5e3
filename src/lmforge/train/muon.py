"""Muon: momentum SGD whose update for each 2-D weight is orthogonalised by a Newton–Schulz iteration.

Keller Jordan's optimizer from the modded-nanogpt speedruns. Every singular value of the momentum matrix
is pushed towards 1, so all directions of a weight matrix learn at a similar rate. It suits the hidden
matrices of a network; embeddings, output heads and 1-D gains stay with AdamW (`build_optimizer` splits
them), since their rows are looked up or read out one token at a time.
"""

from __future__ import annotations

import torch

from lmforge.train.parallel import whole

# coefficients of the quintic iteration: chosen for a steep slope at 0, so few steps suffice, at the
# price of singular values ending near 1 (roughly 0.7..1.2) rather than exactly at 1
_NS_COEFFS = (3.4445, -4.7750, 2.0315)


@torch.no_grad()
def orthogonalize(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An approximately orthogonal matrix with g's singular vectors (the U V^T of its SVD); for a stack of
    matrices (..., m, n), each of them, in one batched iteration. The iteration runs in `dtype`: bfloat16
    (as modded-nanogpt runs it) is about 1.5x faster where the hardware multiplies bf16, and its result
    stays within cosine 0.99 of float32's (0.9996 on random 384x128 matrices; tests/train/test_muon.py)."""
    a, b, c = _NS_COEFFS
    x = g.to(dtype)
    wide = x.size(-2) > x.size(-1)
    if wide:
        x = x.mT  # iterate on the smaller Gram matrix
    # the Frobenius norm bounds the spectral norm: all singular values <= 1
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    stack = x.reshape(-1, *x.shape[-2:])  # baddbmm takes one batch dimension
    for _ in range(steps):
        gram = stack @ stack.mT
        # a x + (b gram + c gram gram) x, each product fused with its sum: 0.74-0.78x the time of the
        # element-wise form on a 2-core CPU (docs/BENCHMARKS.md, issue 21)
        stack = torch.baddbmm(stack, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), stack, beta=a)
    x = stack.reshape(x.shape)
    return (x.mT if wide else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters. lr is in units of the orthogonalised update (around 0.02 works)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, ns_dtype: torch.dtype = torch.float32):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      ns_steps=ns_steps))
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            if any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon takes only 2-D parameters")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            # matrices of one shape (the same layer of every block) are orthogonalised together: one batched
            # Newton-Schulz iteration instead of one per matrix, whose small matmuls cost mostly overhead
            by_shape: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault((p.shape, p.dtype, p.device), []).append(p)
            for params in by_shape.values():
                grads = [p.grad for p in params]
                bufs = []
                for p in params:
                    if "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = torch.zeros_like(p)
                    bufs.append(self.state[p]["momentum_buffer"])
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_add_(bufs, grads)
                g = torch._foreach_add(grads, bufs, alpha=group["momentum"]) if group["nesterov"] else bufs
                # a matrix fsdp shards is orthogonalised whole, not a shard of its rows; every rank computes the
                # same update (the compute repeated, the memory of one shape group at a time)
                updates = orthogonalize(torch.stack([whole(m) for m in g]), group["ns_steps"], self.ns_dtype).unbind(0)
                updates = [like(u, p) for u, p in zip(updates, params)]
                # an orthogonal m x n update has RMS 1/sqrt(max(m, n)); rescale tall matrices to match
                scale = max(1.0, params[0].size(0) / params[0].size(1)) ** 0.5
                if group["weight_decay"]:
                    torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
                torch._foreach_add_(params, updates, alpha=-group["lr"] * scale)


def like(update: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """The update laid out as the parameter: a sharded parameter takes its own rows, with no communication,
    as every rank holds the same whole update."""
    if hasattr(param, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(update, param.device_mesh, param.placements, src_data_rank=None)
    return update


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
