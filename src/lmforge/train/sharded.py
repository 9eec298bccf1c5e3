"""Sharded checkpoints (`train.checkpoint_format=sharded`): torch.distributed.checkpoint (DCP) under fsdp.

Every rank writes the shards it holds of the model and optimizer into the checkpoint's `sharded/` folder, so no
process ever holds the whole state; DCP's `.metadata` says where each piece of each tensor lies. The rest of
the checkpoint (state.json with every file's SHA-256, the loader and RNG states of every rank) is written by
rank 0 as for a full checkpoint, and the folder is renamed into place only when every rank's shards are in it
(checkpoint.py's `save_checkpoint`), so a checkpoint is complete or absent.

Reading reshards: DCP fills whatever tensors it is given from whatever pieces were saved, so a run saved by 4
fsdp ranks resumes on 2, or in one process, and a single process (eval, generate, export, finetune) loads the
weights as plain tensors. The state is laid out as {"model": ..., "optimizer": ...}, both keyed by parameter
name (torch.distributed.checkpoint.state_dict), the optimizer of a Muon + AdamW pair as {name: its state}.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

FOLDER = "sharded"


def is_sharded(ckpt: Path) -> bool:
    return (Path(ckpt) / FOLDER).is_dir()


def _optimizers(optimizer) -> dict[str, torch.optim.Optimizer] | None:
    return getattr(optimizer, "optimizers", None)  # train/muon.py's `Optimizers` pair


def _state(model: nn.Module, optimizer=None) -> dict:
    """The model's (and optimizer's) state as DCP reads and writes it: this rank's shards, by parameter name."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        parts = _optimizers(optimizer)
        state["optimizer"] = ({name: get_optimizer_state_dict(model, opt) for name, opt in parts.items()} if parts
                              else get_optimizer_state_dict(model, optimizer))
    return state


def write_shards(model: nn.Module, optimizer, tmp: Path | None) -> None:
    """A collective: rank 0 passes the checkpoint's temporary folder (inside `save_checkpoint`), the other ranks
    None; every rank writes its shards there."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    where = [str(tmp) if tmp is not None else None]
    dist.broadcast_object_list(where, src=0)
    dcp.save(_state(model, optimizer), checkpoint_id=Path(where[0]) / FOLDER)


def load(ckpt: Path, model: nn.Module, optimizer=None) -> None:
    """Fill the model (and optimizer) from a sharded checkpoint, resharded to this process's layout: a
    collective where a process group is up (every rank calls it), plain reading where none is."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    state = _state(model, optimizer)  # allocates the optimizer's state (a zero step) if it has none yet
    with warnings.catch_warnings():  # that one process reads it is no surprise here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=Path(ckpt) / FOLDER)
    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        parts = _optimizers(optimizer)
        for name, opt in (parts.items() if parts else [(None, optimizer)]):
            set_optimizer_state_dict(model, opt, state["optimizer"][name] if parts else state["optimizer"])


def shapes(ckpt: Path) -> dict[str, list[int]]:
    """Each saved weight's full shape, by name, from DCP's metadata alone."""
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(str(Path(ckpt) / FOLDER)).read_metadata()
    return {key.removeprefix("model."): list(m.size) for key, m in metadata.state_dict_metadata.items()
            if key.startswith("model.") and hasattr(m, "size")}
