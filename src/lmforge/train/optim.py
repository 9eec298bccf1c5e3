"""Optimizer construction, shared by pretraining and fine-tuning, and explicit L1/L2 penalties.

Weights (tensors with 2+ dimensions: linear and embedding matrices) decay; biases and norm gains don't. A param
group may carry `lr_scale`: the recipes set each group's rate to schedule(step) * lr_scale (`set_lr`), which
is how Muon's own rate and fine-tuning's discriminative rates ride on one schedule.
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.config import OptimizerConfig
from lmforge.train.distributed import fast_bf16_matmul
from lmforge.train.muon import Muon, Optimizers


def decay_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict]:
    """[matrices with weight decay, biases and gains without] (either may be empty)."""
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def set_lr(optimizer, lr: float) -> None:
    """The schedule's rate for this step on every param group, times the group's lr_scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def decay_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2]


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """Weights of the linear layers inside the network: not embeddings, and not an output head. Every linear
    layer of the model's `blocks()` is inside; outside them, a linear layer as wide as an embedding table is
    taken for a head (a tied head is the embedding itself), so an MLP that happens to be as wide as the
    vocabulary stays with Muon when it is in a block."""
    vocab_sizes = {m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)}
    blocks = model.blocks() if hasattr(model, "blocks") else []
    in_blocks = {id(p) for block in blocks for p in block.parameters()}
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Linear) and m.weight.requires_grad
            and (id(m.weight) in in_blocks or m.out_features not in vocab_sizes)]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, device: torch.device, bf16_compute: bool = False):
    """AdamW or SGD over decay / no-decay groups; for `muon`, Muon on the hidden matrices plus AdamW, its
    Newton-Schulz iteration in bf16 when asked, or (auto) when the model computes in bf16 (`bf16_compute`)
    on hardware that multiplies bf16."""
    decay, no_decay = decay_split(model)
    if cfg.name == "muon":
        muon_params = hidden_matrices(model)
        taken = {id(p) for p in muon_params}
        decay = [p for p in decay if id(p) not in taken]
        adamw = make_optimizer(_split_groups(decay, no_decay, cfg), cfg.model_copy(update={"name": "adamw"}), device)
        # lr_scale: the trainer sets each group's rate to schedule(step) * lr_scale
        bf16 = cfg.muon_precision == "bfloat16" or (cfg.muon_precision == "auto" and bf16_compute
                                                     and fast_bf16_matmul(device))
        muon = Muon([{"params": muon_params, "lr_scale": cfg.muon_lr / cfg.lr}], lr=cfg.muon_lr,
                    momentum=cfg.muon_momentum, weight_decay=cfg.weight_decay,
                    ns_dtype=torch.bfloat16 if bf16 else torch.float32)
        return Optimizers(adamw=adamw, muon=muon)
    return make_optimizer(_split_groups(decay, no_decay, cfg), cfg, device)


def _split_groups(decay: list, no_decay: list, cfg: OptimizerConfig) -> list[dict]:
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(groups: list[dict], cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW or SGD over the param groups, with fused kernels where torch has them."""
    impl = cfg.impl
    if impl == "auto":
        # fused kernels exist on CPU and CUDA in torch >= 2.4 and are the fastest of the three on both
        impl = "fused" if device.type in ("cpu", "cuda") else "foreach"
    kwargs = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, **kwargs)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kwargs)


def penalty(model: nn.Module, cfg: OptimizerConfig) -> torch.Tensor | None:
    """l1 * sum|w| + l2/2 * sum w^2 over the decayed weights (so L2's gradient is l2 * w), or None."""
    if not cfg.l1 and not cfg.l2:
        return None
    weights, _ = decay_split(model)
    total = torch.zeros((), device=weights[0].device)
    for w in weights:
        if cfg.l1:
            total = total + cfg.l1 * w.abs().sum()
        if cfg.l2:
            total = total + 0.5 * cfg.l2 * w.pow(2).sum()
    return total
