"""Checkpoints in the run directory: checkpoints/step-N/{model.safetensors, optimizer.pt, state.json}, or with
`sharded/` (train/sharded.py: every fsdp rank's shards) in place of the first two.

Only what is inside a checkpoint is written and read here (tensors, optimizer and RNG state); the run
directory around it is run.py's. Each checkpoint directory is written under a temporary name and renamed when complete, so a killed run
never leaves one that looks whole. state.json holds the step, validation loss, RNG states and the data
loader's position: everything `--resume` needs to continue bit for bit.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path
from pickle import UnpicklingError  # the error torch.load(weights_only=True) raises on code; nothing is unpickled here
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.errors import CheckpointError
from lmforge.io import atomic_dir, clear_stale_in, sha256_file
from lmforge.train import sharded

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode()


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def capture_rng() -> dict:
    # batch sampling has its own generator (in the loader state); the global one drives dropout and init
    state = {"torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def _val_loss(ckpt: Path) -> float | None:
    try:
        return json.loads((ckpt / "state.json").read_text())["val_loss"]
    except (OSError, ValueError, KeyError):
        return None


def best_checkpoint(run_dir: Path) -> Path | None:
    scored = [(loss, step, p) for step, p in list_checkpoints(run_dir) if (loss := _val_loss(p)) is not None]
    return min(scored)[2] if scored else None


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, keep_last: int, carried: list | None = None,
                    tensors: Callable[[Path], None] | None = None) -> Path:
    """Write checkpoints/step-N atomically, then prune all but the last `keep_last` and the best.

    `carried`: each rank's recurrent state between windows, so truncated BPTT resumes exactly. `tensors`
    writes the weights and optimizer into the temporary folder in place of model.safetensors and optimizer.pt
    (a sharded checkpoint's shards, train/sharded.py)."""
    target = Path(run_dir) / "checkpoints" / f"step-{step}"
    with atomic_dir(target) as tmp:
        if tensors is not None:
            tensors(tmp)
        else:
            save_weights(model, tmp / "model.safetensors")
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if carried is not None:
            torch.save([map_tensors(torch.Tensor.cpu, c) for c in carried], tmp / "carried_state.pt")
        # safetensors, torch.save and DCP check no content: a flipped bit would load as a different weight
        sums = {f.relative_to(tmp).as_posix(): sha256_file(f) for f in sorted(tmp.rglob("*")) if f.is_file()}
        (tmp / "state.json").write_text(json.dumps({"step": step, **state, "sha256": sums}, indent=2))
    clear_stale_in(target.parent)
    keep = {p for _, p in list_checkpoints(run_dir)[-keep_last:]}
    best = best_checkpoint(run_dir)
    if best is not None:
        keep.add(best)
    for _, p in list_checkpoints(run_dir):
        if p not in keep:  # renamed first: a kill while removing leaves no half checkpoint under its name
            aside = p.with_name(f".{p.name}.old-{os.getpid()}")
            os.replace(p, aside)
            shutil.rmtree(aside)
    return target


def map_tensors(fn, state):
    """Apply fn to every tensor of a carried state: None, a tensor, or tuples/lists of them."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else fn(state)
    return type(state)(map_tensors(fn, s) for s in state)


def verify(ckpt: Path, name: str) -> Path:
    """The path of the checkpoint's file `name`, checked against the SHA-256 its state.json recorded (weights
    saved without a state.json, or before lmforge recorded the sums, are not checked)."""
    path = Path(ckpt) / name
    try:
        state = json.loads((Path(ckpt) / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return path
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{Path(ckpt) / 'state.json'}: unreadable ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{Path(ckpt) / 'state.json'}: corrupt (not a JSON object)")
    expected = (state.get("sha256") or {}).get(name)
    if expected is not None and path.is_file() and sha256_file(path) != expected:
        raise CheckpointError(f"{path}: truncated or foreign checkpoint (its SHA-256 is not the one state.json "
                              "recorded: the file is damaged or from another checkpoint)")
    if _STEP_DIR.match(Path(ckpt).name) and state.get("step") != int(Path(ckpt).name.split("-")[1]):
        raise CheckpointError(f"{Path(ckpt) / 'state.json'}: says step {state.get('step')}, in {Path(ckpt).name} "
                              "(from another checkpoint)")
    return path


def load_carried_state(ckpt: Path, rank: int, device: torch.device):
    """This rank's recurrent state saved with the checkpoint, or None (none saved, or not recurrent)."""
    path = Path(ckpt) / "carried_state.pt"
    if not path.is_file():
        return None
    verify(ckpt, path.name)
    try:
        state = torch.load(path, weights_only=True, map_location=device)[rank]
    except UnpicklingError:
        raise CheckpointError(f"{path}: holds objects other than tensors and plain values, which lmforge never "
                              "loads (a tampered or foreign file)") from None
    except (OSError, RuntimeError, IndexError, EOFError) as e:
        raise CheckpointError(f"{path}: truncated or foreign checkpoint ({str(e).splitlines()[0]})") from None
    return state


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """Each distinct tensor's state-dict names: a tied weight has two."""
    names: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        names.setdefault(id(t), []).append(name)
    return {group[0]: group for group in names.values()}


def save_weights(model: nn.Module, path: Path) -> None:
    """Each tensor once, under its first name, copied to the CPU: safetensors refuses tensors that share
    memory, as tied weights do and as cuDNN's flattened RNN weights do on CUDA."""
    state = model.state_dict()
    save_file({name: state[name].detach().to("cpu", copy=True).contiguous() for name in _aliases(model)}, str(path))


def _verify_shards(ckpt: Path) -> None:
    """Every file state.json recorded under sharded/ is there and is the one written (a shard missing, damaged
    or from another run is named before DCP reads it)."""
    ckpt = Path(ckpt)
    try:
        recorded = json.loads((ckpt / "state.json").read_text(encoding="utf-8")).get("sha256") or {}
    except (OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{ckpt / 'state.json'}: unreadable ({str(e).splitlines()[0]})") from None
    names = [n for n in recorded if n.startswith(sharded.FOLDER + "/")]
    if not names:
        raise CheckpointError(f"{ckpt / 'state.json'}: records no shards for {ckpt / sharded.FOLDER} (damaged)")
    for name in names:
        if not (ckpt / name).is_file():
            raise CheckpointError(f"{ckpt / name}: checkpoint shard missing (the checkpoint is incomplete)")
        verify(ckpt, name)


def _load_sharded(ckpt: Path, model: nn.Module, optimizer=None) -> None:
    _verify_shards(ckpt)
    try:
        sharded.load(ckpt, model, optimizer)
    except (RuntimeError, ValueError, KeyError, OSError) as e:  # DCP's CheckpointException is a RuntimeError
        detail = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"{Path(ckpt) / sharded.FOLDER}: shards do not fit this model ({detail[:200]})") from None


def saved_shapes(ckpt: Path) -> dict[str, list[int]]:
    """Each saved weight's shape by name, read from the checkpoint's header or metadata alone."""
    from safetensors import safe_open

    if sharded.is_sharded(ckpt):
        return sharded.shapes(ckpt)
    with safe_open(str(Path(ckpt) / "model.safetensors"), framework="pt") as f:
        return {key: list(f.get_slice(key).get_shape()) for key in f.keys()}


def load_weights(model: nn.Module, ckpt: Path, device: torch.device | str = "cpu") -> None:
    if sharded.is_sharded(ckpt):
        _load_sharded(ckpt, model)
        return
    path = Path(ckpt) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{ckpt}: checkpoint has no model.safetensors")
    verify(ckpt, path.name)
    try:
        saved = load_file(str(path), device=str(device))
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or foreign checkpoint ({str(e).splitlines()[0]})") from None
    state, missing = {}, []
    for group in _aliases(model).values():  # a tied tensor may have been saved under any of its names
        name = next((n for n in group if n in saved), None)
        if name is None:
            missing.append(group[0])
        else:
            state.update({n: saved[name] for n in group})
    unexpected = sorted(set(saved) - set(state))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this model "
                              f"(missing {sorted(missing)[:3]}, unexpected {unexpected[:3]})")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit this model ({str(e).splitlines()[-1].strip()})") from None


def load_training_state(ckpt: Path, optimizer: torch.optim.Optimizer) -> dict:
    try:
        state = json.loads((Path(ckpt) / "state.json").read_text())
        optimizer.load_state_dict(torch.load(verify(ckpt, "optimizer.pt"), weights_only=True))
    except UnpicklingError:
        raise CheckpointError(f"{Path(ckpt) / 'optimizer.pt'}: holds objects other than tensors and plain values, "
                              "which lmforge never loads (a tampered or foreign file)") from None
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{ckpt}: truncated or foreign checkpoint ({str(e).splitlines()[0]})") from None
    return state


def resume_from(ckpt: Path, model: nn.Module, optimizer, device: torch.device) -> dict:
    """Load a checkpoint of either kind into the model and optimizer, resharded to this process's layout for a
    sharded one; its state.json."""
    if not sharded.is_sharded(ckpt):
        load_weights(model, ckpt, device)
        return load_training_state(ckpt, optimizer)
    _load_sharded(ckpt, model, optimizer)  # which checked state.json's sums, so it reads
    return json.loads((Path(ckpt) / "state.json").read_text(encoding="utf-8"))


def __getattr__(name: str):
    # `from lmforge.train.checkpoint import load_run`, as lmforge 0.1's README wrote it, keeps working with a
    # warning; the run directory's home is run.py (imported by name here so the floors test sees no upward import)
    if name in ("load_run", "Run"):
        import importlib
        import warnings

        warnings.warn(f"lmforge.train.checkpoint.{name} moved to lmforge.run.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("lmforge.run"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
