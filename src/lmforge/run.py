"""The run directory, the unit of work: `RunDir` is the one place that knows its layout.

    runs/<name>/  config.yaml  tokenizer.json  metrics.jsonl  tensorboard/  samples.txt  report.html
                  evals.jsonl (every evaluation of the run: checkpoint, split, data, result)
                  checkpoints/step-N/{model.safetensors, optimizer.pt, state.json[, carried_state.pt]}, or sharded/
                  (every fsdp rank's shards, train/sharded.py) in place of the first two
                  task.json (a fine-tuned task run: task, label map, backbone)   backbone/ (an HF backbone's files)
    <out>/        bakeoff.json, bakeoff.md, one run directory per family (a bake-off)

`RunDir` creates a run (refusing to replace one unless asked), checks that a run can resume, holds a lock so
that two processes never write one run, reads the saved config and tokenizer, resolves checkpoints and knows
the run's kind. `load_run` gives an LM run's model with its weights. What is written inside a checkpoint
(tensors, optimizer and RNG state) is train/checkpoint.py's business.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import yaml
from torch import nn

from lmforge.config import Config, flatten, load_config, save_config
from lmforge.errors import CheckpointError
from lmforge.models import build_model
from lmforge.tokenizer import Tokenizer
from lmforge.train.checkpoint import best_checkpoint, list_checkpoints, load_weights, verify

RunKind = Literal["lm", "task", "bakeoff"]


class RunDir:
    """A run directory, existing or about to be made."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: int | None = None
        self._made = False  # whether lock() made the directory

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def kind(self) -> RunKind | None:
        """task (a fine-tuned task model), bakeoff (a comparison of families), lm, or None (not a run)."""
        if (self.path / "task.json").is_file():
            return "task"
        if (self.path / "bakeoff.json").is_file():
            return "bakeoff"
        if self.config_path.is_file():
            return "lm"
        return None

    def is_trained(self) -> bool:
        """Whether it holds a saved config and a checkpoints folder (what a backbone needs)."""
        return self.config_path.is_file() and (self.path / "checkpoints").is_dir()

    def holds_a_run(self) -> bool:
        return bool(self.checkpoints()) or (self.path / "metrics.jsonl").exists()

    # -- starting and resuming ---------------------------------------------------------------------------

    def check_start(self, resume: bool, overwrite: bool) -> None:
        """Refuse to resume a run with nothing to resume, or to start over a run without `overwrite`."""
        if resume:
            if not self.checkpoints():
                raise CheckpointError(f"{self.path}: nothing to resume (no checkpoints)")
        elif self.holds_a_run() and not overwrite:
            raise CheckpointError(f"{self.path}: run directory already holds a run; "
                                  "use --resume to continue it or --overwrite to start again")

    def create(self, cfg: Config, tokenizer: Tokenizer | None = None, overwrite: bool = False) -> None:
        """An empty run directory with the resolved config (and the tokenizer) saved; `overwrite` first removes
        what was there but the `.lock`, so that a writer takes the lock first and keeps it across the reset."""
        if overwrite and self.path.exists():
            for child in self.path.iterdir():
                if child.name == ".lock":
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.config_path)
        if tokenizer is not None:
            tokenizer.save(self.path / "tokenizer.json")

    def resume_config(self, overrides: list[str] | None = None) -> Config:
        """The config the run saved, with key=value overrides (as `--resume RUN key=value` takes them)."""
        self.config()  # the saved file, checked
        return load_config(self.config_path, overrides)

    def lock(self) -> None:
        """Hold `.lock` (an exclusive advisory lock, released when the process ends or `unlock` is called), so
        that a second process writing the same run fails at once instead of interleaving checkpoints. A
        directory made for the lock is removed again by `unlock` if nothing else was written to it."""
        made = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(f"{self.path}: another process is writing this run (its .lock is held)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock, self._made = fd, made

    def unlock(self) -> None:
        if self._lock is None:
            return
        if self._made and [p.name for p in self.path.iterdir()] == [".lock"]:
            (self.path / ".lock").unlink()  # a run that failed before it wrote anything leaves no directory
            self.path.rmdir()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        os.close(self._lock)
        self._lock = None

    # -- reading -----------------------------------------------------------------------------------------

    def config(self) -> Config:
        if not self.config_path.is_file():
            raise CheckpointError(f"{self.path}: not a run directory (no config.yaml)")
        if self.config_path.stat().st_size == 0:  # an empty recipe is the defaults; a run's config never is
            raise CheckpointError(f"{self.config_path}: empty")
        config = load_config(self.config_path)
        self._check_saved(config)
        return config

    def _check_saved(self, config: Config) -> None:
        """A config.yaml whose model section is not the one the last checkpoint recorded (cut short, of another
        run) would build a model the weights do not fit, or worse, one they fit by chance. Its other sections
        may be edited (eval and sample settings are the user's to change) but not dropped: a file cut short is
        still YAML, and a resume would take the defaults for what is gone."""
        saved = list_checkpoints(self.path)
        try:
            ckpt = saved[-1][1]
            state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
            recorded, keys = state.get("model"), state.get("config_keys")
        except (IndexError, OSError, ValueError, AttributeError):
            return  # no checkpoint yet, or one whose damage its own loading reports
        if isinstance(keys, list):
            written = flatten(yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {})
            gone = [k for k in keys if k not in written]
            if gone:
                raise CheckpointError(f"{self.config_path}: {len(gone)} setting(s) {ckpt.name} was trained with are "
                                      f"missing ({', '.join(gone[:3])}{', ...' if len(gone) > 3 else ''}); "
                                      "the file was cut short or edited: restore them")
        current = config.model.model_dump(mode="json")
        if isinstance(recorded, dict) and recorded != current:
            verify(ckpt, "model.safetensors")  # a state.json of another checkpoint is that one's fault
            keys = sorted(k for k in {**recorded, **current} if recorded.get(k) != current.get(k))
            raise CheckpointError(f"{self.config_path}: its model section is not the one {ckpt.name} was "
                                  f"trained with (differs in {', '.join(keys[:4])})")

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.load(self.path / "tokenizer.json")

    def checkpoints(self) -> list[tuple[int, Path]]:
        return list_checkpoints(self.path)

    def checkpoint(self, which: str = "last") -> Path:
        """`last`, `best` or `step-N` -> that checkpoint directory."""
        if not self.config_path.is_file():
            raise CheckpointError(f"{self.path}: not a run directory (no config.yaml)")
        ckpts = self.checkpoints()
        if not ckpts:
            raise CheckpointError(f"{self.path}: run has no checkpoints yet")
        if which == "last":
            return ckpts[-1][1]
        if which == "best":
            best = best_checkpoint(self.path)
            if best is None:
                raise CheckpointError(f"{self.path}: no checkpoint has a validation loss")
            return best
        for _, p in ckpts:
            if p.name == which:
                return p
        raise CheckpointError(f"{self.path}: no checkpoint {which!r} (have {', '.join(p.name for _, p in ckpts)})")

    def record_eval(self, checkpoint: str, split: str | None, data: str | None, result: dict) -> bool:
        """Append an evaluation to evals.jsonl (the report shows the newest of each checkpoint, split and
        data). A run directory that cannot be written to (read-only, say) keeps no record: False."""
        entry = {"time": round(time.time(), 3), "checkpoint": checkpoint, "split": split, "data": data,
                 "result": result}
        try:
            with open(self.path / "evals.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, default=str) + "\n")  # one write: a reader never sees half a record
        except OSError:
            return False
        return True

    def task_info(self) -> dict:
        """task.json of a fine-tuned run: task, labels, backbone kind and source."""
        path = self.path / "task.json"
        try:
            info = json.loads(path.read_text())
            for key in ("task", "labels", "backbone"):
                info[key]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path}: unreadable ({e})") from None
        return info


@dataclass
class Run:
    """A trained model loaded from a run directory, ready for eval, generation or export."""

    run_dir: Path
    config: Config
    tokenizer: Tokenizer
    model: nn.Module
    checkpoint: Path
    step: int


def load_run(run_dir: str | Path | RunDir, which: str = "last", device: str | torch.device = "cpu") -> Run:
    """An LM run's model (weights of checkpoint `which`: last, best or step-N) in eval mode, with its config and
    tokenizer."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    ckpt = run.checkpoint(which)
    config = run.config()
    if not (ckpt / "state.json").is_file():
        raise CheckpointError(f"{ckpt}: checkpoint has no state.json (damaged)")
    model = build_model(config.model).to(device)
    load_weights(model, ckpt, device)  # checks the weights' sum, so state.json is a JSON object from here on
    model.eval()
    state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    tokenizer = run.tokenizer()
    # a tokenizer.json of another run, or edited, would map text to ids these weights never learned
    if state.get("tokenizer_sha256") not in (None, tokenizer.sha256):
        raise CheckpointError(f"{run.path / 'tokenizer.json'}: not the tokenizer {ckpt.name} was trained with")
    return Run(run.path, config, tokenizer, model, ckpt, state.get("step", 0))
