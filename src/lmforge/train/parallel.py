"""How the model is spread over the processes torchrun starts (`train.strategy`).

- single: one process, the model as it is.
- ddp: every rank holds the whole model and optimizer; gradients are averaged after each backward pass
  (DistributedDataParallel), skipped during gradient accumulation but for the last micro-batch.
- fsdp: FSDP2 (`torch.distributed.fsdp.fully_shard`) on each of the model's `blocks()` and then the root:
  parameters, gradients and optimizer state are sharded over the ranks (Muon gathers each matrix whole to
  orthogonalise it, train/muon.py), a block's parameters gathered just
  for its forward and backward (and freed after the forward unless `train.fsdp_reshard_after_forward` is
  off: ZeRO-2's trade of memory for one gather less). Gradients are reduce-scattered as averages, as DDP's
  all-reduce averages, so the trainer's loss scaling is the same for both.

Under fsdp checkpoints are sharded by default (`train.checkpoint_format`, train/sharded.py: every rank writes
its own shards with torch.distributed.checkpoint). With `full`, every rank takes part in gathering the full
state (`full_state`) and rank 0 writes one `model.safetensors` and one `optimizer.pt`, and a resume scatters
them back (`FullModel`, `FullOptimizer`), at the cost of holding the full state in rank 0's CPU memory while
saving. Either kind is resumed, evaluated, exported or fine-tuned by any strategy on any number of processes.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from lmforge.errors import ConfigError
from lmforge.train.distributed import Dist

def resolve_strategy(strategy: str, d: Dist) -> str:
    """auto: single for one process, ddp under torchrun; an explicit choice must fit the process count."""
    if strategy == "auto":
        return "ddp" if d.enabled else "single"
    if strategy == "single" and d.enabled:
        raise ConfigError(f"train.strategy=single: {d.world_size} processes were started; use ddp or fsdp "
                          "under torchrun, or run one process")
    if strategy in ("ddp", "fsdp") and not d.enabled:
        raise ConfigError(f"train.strategy={strategy}: needs 2 or more processes "
                          "(torchrun --nproc_per_node N -m lmforge train ...)")
    return strategy


def resolve_checkpoint_format(fmt: str, strategy: str) -> str:
    """auto: sharded under fsdp (train/sharded.py), full otherwise."""
    if fmt == "auto":
        return "sharded" if strategy == "fsdp" else "full"
    if fmt == "sharded" and strategy != "fsdp":
        raise ConfigError(f"train.checkpoint_format=sharded: needs train.strategy=fsdp (under {strategy} every "
                          "process holds the whole model, so there are no shards); use full or auto")
    return fmt


def shard(model: nn.Module, blocks: list[nn.Module], reshard_after_forward: bool, arch: str, bf16: bool) -> None:
    """FSDP2 on every block, then the root (embeddings, final norm, head), in place. With bf16, parameters are
    gathered and computed with in bfloat16 while gradients are reduced, and the sharded weights and optimizer
    kept, in float32 (`MixedPrecisionPolicy`): half the gather traffic, and no precision lost in the sums."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if not blocks:
        raise ConfigError(f"train.strategy=fsdp: the {arch} model has no blocks to shard (the gpt, encoder and "
                          "recurrent families have); use ddp")
    # FSDP2 warns when a block returns a view (a recurrent stack's batch-first output and state are), as an
    # in-place write to it would skip the gradient's gather; no model here writes a block's output in place, and
    # the 2-rank tests compare every family's weights against one process
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(\w+\) returned a view tensor")
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    for block in blocks:
        fully_shard(block, reshard_after_forward=reshard_after_forward, mp_policy=policy)
    fully_shard(model, reshard_after_forward=reshard_after_forward, mp_policy=policy)


def grad_sync(model: nn.Module, strategy: str, last: bool) -> contextlib.AbstractContextManager:
    """Reduce gradients only after the last micro-batch of a step."""
    if strategy == "ddp" and not last:
        return model.no_sync()
    if strategy == "fsdp":
        model.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def whole(t: torch.Tensor) -> torch.Tensor:
    """A DTensor (an fsdp-sharded matrix, or a norm over sharded gradients) gathered whole; a plain tensor as
    it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def _parts(optimizer) -> dict[str, torch.optim.Optimizer] | None:
    """The optimizers of a Muon + AdamW pair (train/muon.py's `Optimizers`, saved as {name: state}), or None."""
    return getattr(optimizer, "optimizers", None)


def full_state(model: nn.Module, optimizer) -> tuple[dict, dict]:
    """The full model and optimizer state (in `optimizer.state_dict()`'s own layout) on rank 0, {} elsewhere.
    A collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    weights = get_model_state_dict(model, options=_options())

    def one(opt):
        state = get_optimizer_state_dict(model, opt, options=_options())
        return _by_index(state) if state else {}

    parts = _parts(optimizer)
    optim = {name: one(opt) for name, opt in parts.items()} if parts else one(optimizer)
    return weights, (optim if weights else {})


def _by_index(optim: dict) -> dict:
    """torch's optimizer layout: parameters numbered in param-group order, where DCP names them."""
    index, groups = {}, []
    for group in optim["param_groups"]:
        groups.append({**group, "params": [index.setdefault(name, len(index)) for name in group["params"]]})
    return {"state": {index[name]: s for name, s in optim["state"].items()}, "param_groups": groups}


def _by_name(saved: dict, named: list[list[str]]) -> dict:
    """The inverse of `_by_index`, with the names of the optimizer's parameters, group by group."""
    names = [name for group in named for name in group]
    groups = [{**group, "params": list(group_names)} for group, group_names in zip(saved["param_groups"], named)]
    return {"state": {names[i]: s for i, s in saved["state"].items()}, "param_groups": groups}


class FullModel:
    """A sharded model as checkpoint.py reads and writes one: `state_dict()` gives the gathered full weights
    (taken beforehand by `full_state`, as that is a collective), `load_state_dict` scatters full weights."""

    def __init__(self, model: nn.Module, weights: dict | None = None):
        self.model, self.weights = model, weights

    def state_dict(self, keep_vars: bool = False) -> dict:
        if keep_vars:  # the parameters themselves: which names share one (a tied head) is all that is asked
            return self.model.state_dict(keep_vars=True)
        return self.weights

    def load_state_dict(self, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(self.model, state, options=_options())


class FullOptimizer:
    """A sharded model's optimizer as checkpoint.py reads and writes one (see `FullModel`)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict | None = None):
        self.model, self.optimizer, self.state = model, optimizer, state

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, saved: dict) -> None:
        parts = _parts(self.optimizer)
        if parts is None:
            self._load(self.optimizer, saved)
            return
        if set(saved) != set(parts):
            raise KeyError(f"optimizer state holds {sorted(saved)}, expected {sorted(parts)}")
        for name, opt in parts.items():
            self._load(opt, saved[name])

    def _load(self, optimizer: torch.optim.Optimizer, saved: dict) -> None:
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        names = {id(p): name for name, p in self.model.named_parameters()}
        named = [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]
        set_optimizer_state_dict(self.model, optimizer, _by_name(saved, named), options=_options())
