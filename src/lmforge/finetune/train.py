"""The fine-tuning recipe: a backbone, a task head and task data composed into one training loop.

ULMFiT's techniques (Howard & Ruder 2018), each a config option:
- discriminative learning rates: the model is cut into layer groups (embeddings, each layer, the head); group
  at depth d below the head gets lr / factor^d, carried as the param group's `lr_scale` that the schedule's
  rate is multiplied by (as in the LM trainer);
- gradual unfreezing: at first only the head trains; every epoch (or every N steps) the next group down joins.
  A frozen parameter has requires_grad off, so it gets no gradient and the optimizer skips it entirely (no
  update, no weight decay): it stays bit-identical until its group is unfrozen;
- the slanted triangular rate is `schedule.name: slanted_triangular` (train/schedules.py);
- LoRA adapters (finetune/lora.py) in place of the backbone's own weights.

The run directory is an lmforge run directory: config.yaml, metrics.jsonl, checkpoints/step-N/ written by
train/checkpoint.py (atomically), plus task.json (task and label map) and what rebuilds the backbone. A task lm
run saves the LM itself, so it is also an ordinary run (`load_run`, `lmforge generate`, and the backbone of a
classifier next: ULMFiT's three stages).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lmforge.config import Config, FinetuneConfig, OptimizerConfig
from lmforge.data.taskfiles import column, label_list, read_squad_examples, read_table, read_tagged, split_labels
from lmforge.errors import CheckpointError, ConfigError
from lmforge.finetune.backbones import LmforgeBackbone, load_backbone, save_backbone_files
from lmforge.finetune.data import collate
from lmforge.finetune.heads import TaskModel, build_head, task_loss
from lmforge.finetune.task import Task, encode_file, evaluate, headline
from lmforge.io import atomic_write_json
from lmforge.report import write_report
from lmforge.run import RunDir
from lmforge.train.distributed import pick_device
from lmforge.train.optim import decay_groups, make_optimizer, set_lr
from lmforge.train.checkpoint import (capture_rng, list_checkpoints, load_training_state, load_weights,
                                     restore_rng, save_checkpoint)
from lmforge.train.guard import NonFiniteGuard, grad_norm
from lmforge.train.logging import RunLogger, Throughput, peak_memory_mib, trim_metrics
from lmforge.train.schedules import lr_at
from lmforge.train.trackers import check_trackers, open_trackers


@dataclass
class FinetuneResult:
    run_dir: Path
    step: int
    metrics: dict | None  # on val_path after the last epoch
    elapsed_s: float


def train_labels(fc: FinetuneConfig) -> list[str]:
    """The label map: every class (classify) or tag (tag) in the training data, sorted."""
    if fc.task == "classify":
        table = read_table(fc.train_path, fc.format, fc.text_column)
        column(table, fc.text_column, "text")  # a missing text column is named before the label column
        labels = split_labels(column(table, fc.label_column, "label"), fc.multi_label, fc.label_separator, table.path)
        return label_list(labels, table.path)
    if fc.task == "tag":
        sentences = read_tagged(fc.train_path, labelled=True)
        return sorted({t for s in sentences for t in s.tags})
    if fc.task == "qa":
        read_squad_examples(fc.train_path, labelled=True)  # checked before the backbone loads
    return []


def layer_param_groups(groups: list[list[nn.Parameter]], trainable: set[int], factor: float,
                       weight_decay: float) -> list[dict]:
    """Optimizer param groups: per layer group (bottom to top), one with weight decay for matrices and one
    without for biases and norms, each with lr_scale = factor^-(depth below the top group)."""
    out = []
    for index, params in enumerate(groups):
        depth = len(groups) - 1 - index
        params = [p for p in params if id(p) in trainable]
        out += [{**group, "lr_scale": factor ** -depth, "layer_group": index}
                for group in decay_groups(params, weight_decay) if group["params"]]
    return out


def task_optimizer(param_groups: list[dict], cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    if cfg.name == "muon":
        raise ConfigError("optimizer.name=muon: fine-tuning takes adamw or sgd")
    return make_optimizer(param_groups, cfg, device)


def unfrozen_count(fc: FinetuneConfig, n_groups: int, epoch: int, step: int) -> int:
    """How many layer groups, counted from the top, train at this point of the run."""
    if fc.unfreeze == "none":
        return n_groups
    stage = epoch if fc.unfreeze == "epoch" else step // fc.unfreeze_steps
    return min(1 + stage, n_groups)


def set_trainable(groups: list[list[nn.Parameter]], trainable: set[int], n_unfrozen: int) -> None:
    first = len(groups) - n_unfrozen
    for index, params in enumerate(groups):
        for p in params:
            p.requires_grad_(index >= first and id(p) in trainable)


def _check_run_dir(run: RunDir, fc: FinetuneConfig, resume: bool, overwrite: bool) -> None:
    run.check_start(resume, overwrite)
    if resume and fc.lora is not None:
        raise CheckpointError(f"{run.path}: a LoRA run cannot resume: its checkpoints hold the merged weights, "
                              "not the adapters")


def finetune(cfg: Config, run_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune `cfg.finetune.backbone` on the task into `run_dir` (default runs/<name>); with resume,
    continue from its last checkpoint (the end of an epoch) as if the run had not stopped."""
    if cfg.finetune is None:
        raise ConfigError("finetune: the recipe has no finetune section (task, backbone, train_path)")
    check_trackers(cfg.train.trackers(), cfg.train.mlflow_tracking_uri)
    run = RunDir(run_dir or Path("runs") / cfg.name)
    try:
        return _finetune(cfg, run, resume, overwrite, progress)
    finally:
        run.unlock()


def _finetune(cfg: Config, run: RunDir, resume: bool, overwrite: bool, progress: bool) -> FinetuneResult:
    started = time.perf_counter()
    fc = cfg.finetune
    run_dir = run.path
    _check_run_dir(run, fc, resume, overwrite)
    run.lock()  # before the backbone and any augmentation are loaded, so that a second writer fails at once
    tc = cfg.train
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    device = pick_device(tc.device)

    if cfg.augment is not None:
        from lmforge.augment.stage import check_task_stage

        check_task_stage(cfg)
    labels = train_labels(fc)
    augmented, augmented_path = None, None
    if cfg.augment is not None:  # the training file only; val_path is read as it is
        from lmforge.augment.stage import TRAIN_FILE, TaskTrainingData

        if resume:  # the copies the run trained on, not a new draw
            augmented_path = run_dir / "augment" / TRAIN_FILE
            if not augmented_path.is_file():
                raise CheckpointError(f"{augmented_path}: missing; the run's augmented training data is gone")
        else:
            augmented = TaskTrainingData(cfg, progress)
            augmented_path = augmented.path
    torch.manual_seed(tc.seed)
    backbone = load_backbone(fc.backbone, fc.task, fc.backbone_checkpoint, fc.backbone_weights)
    if backbone.max_positions and fc.max_length > backbone.max_positions:
        raise ConfigError(f"finetune.max_length: {fc.max_length} is longer than the backbone takes "
                          f"({backbone.max_positions} positions)")
    model = TaskModel(backbone, build_head(fc.task, backbone, len(labels), fc.pooling, fc.head_dropout))
    task = Task(fc, labels, model)
    if augmented_path is None:
        train_set = encode_file(task, fc.train_path, labelled=True)
        features = train_set.features[:fc.max_train_examples] if fc.max_train_examples else train_set.features
    else:  # max_train_examples already limited the originals, before their copies were made
        train_set = encode_file(Task(fc.model_copy(update={"format": "jsonl"}), labels, model), augmented_path,
                                labelled=True)
        features = train_set.features
    val_set = encode_file(task, fc.val_path, labelled=True) if fc.val_path else None

    # which parameters may ever train: all, or with LoRA the adapters and the head
    if fc.lora is not None:
        from lmforge.finetune.lora import add_lora

        adapters = add_lora(backbone, fc.lora)
        head_params = list(model.head.parameters()) if model.head is not None else []
        trainable = {id(p) for p in [*adapters, *head_params]}
    else:
        trainable = {id(p) for p in model.parameters()}
    for p in model.parameters():  # set_trainable below only visits groups that can train
        p.requires_grad_(id(p) in trainable)
    model.to(device)
    groups = [g for g in model.layer_groups() if any(id(p) in trainable for p in g)]
    optimizer = task_optimizer(layer_param_groups(groups, trainable, fc.discriminative_factor,
                                                  cfg.optimizer.weight_decay), cfg.optimizer, device)
    steps_per_epoch = math.ceil(len(features) / fc.batch_size)
    total_steps = fc.epochs * steps_per_epoch

    step, start_epoch, metrics = 0, 0, None
    elapsed_before, tokens = 0.0, 0  # tokens: None when resumed from a checkpoint that did not count them
    if resume:
        ckpt = run.checkpoint("last")
        load_weights(model.backbone.lm if fc.task == "lm" else model, ckpt, device)
        state = load_training_state(ckpt, optimizer)
        if "rng" in state:  # checkpoints written before it was saved resume with a fresh dropout stream
            restore_rng(state["rng"])
        step, start_epoch, metrics = state["step"], state["epoch"], state["metrics"] or None
        elapsed_before, tokens = state.get("elapsed_s", 0.0), state.get("tokens")
        trim_metrics(run_dir, step)  # what a killed epoch logged after its last checkpoint is redone
    else:
        saved = cfg.model_copy(deep=True)
        if isinstance(backbone, LmforgeBackbone):
            saved.model = backbone.lm.config  # so the run rebuilds the backbone's shape (and load_run reads a task lm run)
        run.create(saved, overwrite=overwrite)
        if augmented is not None:
            augmented.keep(run_dir)
        save_backbone_files(backbone, run_dir)
        atomic_write_json(run_dir / "task.json", {"task": fc.task, "labels": labels, "backbone": backbone.kind,
                                                  "backbone_source": str(fc.backbone)})

    trackers = open_trackers(run_dir, tc.trackers(), cfg.model_dump(mode="json"), cfg.name, tc.tracker_project,
                             tc.mlflow_tracking_uri)
    log = RunLogger(run_dir, total_steps, step, True, progress, trackers)
    for warning in [*train_set.warnings, *(val_set.warnings if val_set else [])]:
        log.write(f"warning: {warning}")
    if augmented is not None:
        extra = augmented.report.extra
        for warning in extra["warnings"]:
            log.write(f"warning: augment: {warning}")
        log.write(f"augment ({cfg.augment.method}): {extra['copies_written']:,} copies of "
                  f"{extra['examples_augmented']:,} training examples, in {run_dir / 'augment'}")
    log.write(f"{len(features):,} training sequences, {len(groups)} layer groups, {total_steps:,} steps"
              + (f"; resuming after epoch {start_epoch} (step {step:,})" if resume else ""))

    throughput = Throughput()
    guard = NonFiniteGuard(tc.max_bad_steps)
    evaluated = None
    model.train()
    for epoch in range(start_epoch, fc.epochs):
        order = torch.randperm(len(features), generator=torch.Generator().manual_seed(tc.seed + epoch)).tolist()
        for start in range(0, len(order), fc.batch_size):
            n_unfrozen = unfrozen_count(fc, len(groups), epoch, step)
            set_trainable(groups, trainable, n_unfrozen)
            lr = lr_at(step, cfg.optimizer.lr, cfg.schedule, total_steps)
            set_lr(optimizer, lr)
            batch = collate([features[i] for i in order[start:start + fc.batch_size]], backbone.special.pad,
                            fc.task, fc.multi_label)
            batch = {k: v.to(device) for k, v in batch.items()}
            batch_tokens = int(batch["mask"].sum())
            throughput.add(batch_tokens)
            tokens = tokens + batch_tokens if tokens is not None else None
            logits = model(batch["ids"], batch["mask"], batch["type_ids"])
            loss = task_loss(fc.task, logits, batch["target"], fc.multi_label)
            loss.backward()
            norm = grad_norm([p for p in model.parameters() if p.grad is not None], tc.grad_clip)
            if not guard.ok(loss, norm):  # skipped: no update, and the schedule waits (train/guard.py)
                optimizer.zero_grad(set_to_none=True)
                tokens = tokens - batch_tokens if tokens is not None else None  # not trained on
                log.log(step + 1, skipped=True, loss=loss.item(), grad_norm=norm.item(), skipped_steps=guard.total)
                log.write(f"step {step + 1}: loss or gradient norm not finite, skipped ({guard.in_a_row} in a row)")
                if guard.exhausted:
                    log.close()
                    last = list_checkpoints(run_dir)
                    raise guard.error(step, f"{last[-1][1]} (the last epoch's) holds the last good weights" if last
                                      else "no epoch ended, so there is no checkpoint")
                continue
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % tc.log_interval == 0 or step == total_steps:
                tokens_per_s = throughput.rate()
                rates = {g["layer_group"]: g["lr"] for g in optimizer.param_groups}  # what the optimizer applies
                lr_groups = [rates.get(g) if g >= len(groups) - n_unfrozen else None for g in range(len(groups))]
                extra = {"tokens": tokens} if tokens is not None else {}
                log.log(step, loss=loss.item(), lr=lr, grad_norm=norm.item(), epoch=epoch, unfrozen_groups=n_unfrozen,
                        tokens_per_s=tokens_per_s, lr_groups=lr_groups, memory_mib=peak_memory_mib(device),
                        elapsed_s=elapsed_before + time.perf_counter() - started, **extra)
                log.advance(loss.item(), tokens_per_s)
                throughput.restart()
            else:
                log.advance()
        metrics = evaluate(task, val_set, fc.batch_size) if val_set is not None else None
        if metrics is not None:
            log.log(step, val_loss=metrics["loss"], elapsed_s=elapsed_before + time.perf_counter() - started,
                    **{k: v for k, v in metrics.items() if isinstance(v, float) and k != "loss"})
            evaluated = metrics
            log.write(f"epoch {epoch + 1}: {headline(metrics)}")
            throughput.skip_time()
        _save(run_dir, step, model, fc, optimizer, epoch, metrics,
              {"elapsed_s": elapsed_before + time.perf_counter() - started, "tokens": tokens})
    if start_epoch >= fc.epochs and val_set is not None:
        # resumed after its last epoch (killed after the last checkpoint): the result comes from the saved weights,
        # whole (the checkpoint keeps only its numbers), and is recorded unless the stopped run got to record it
        metrics = evaluate(task, val_set, fc.batch_size)
        evaluated = None if _last_eval(run_dir) == json.loads(json.dumps(metrics, default=str)) else metrics
    if evaluated is not None:  # the last epoch's full result (confusion matrix, per-type F1) for the report
        run.record_eval("last", None, evaluated.get("data"), evaluated)
    if tc.report:
        write_report(run_dir)
    log.artifacts([run_dir / "report.html"])
    log.close()
    return FinetuneResult(run_dir, step, metrics, time.perf_counter() - started)


def _last_eval(run_dir: Path) -> dict | None:
    """The result of the last record in evals.jsonl, if any."""
    try:
        lines = (run_dir / "evals.jsonl").read_text(encoding="utf-8").splitlines()
        return json.loads(lines[-1])["result"] if lines else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(run_dir: Path, step: int, model: TaskModel, fc: FinetuneConfig, optimizer: torch.optim.Optimizer,
          epoch: int, metrics: dict | None, progress: dict) -> None:
    """A checkpoint of the model as predict loads it: LoRA merged into the weights; for task lm the LM alone."""
    exported: nn.Module = model
    if fc.lora is not None:
        from lmforge.finetune.lora import merged_copy

        exported = merged_copy(model)
    if fc.task == "lm":
        exported = exported.backbone.lm
    state = {"epoch": epoch + 1, "val_loss": metrics["loss"] if metrics else None,
             "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))},
             "rng": capture_rng(), **progress}  # rng: dropout's stream, so a resumed run continues it
    save_checkpoint(run_dir, step, exported, optimizer, state, fc.keep_last)
