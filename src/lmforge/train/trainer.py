"""The training loop every model family uses: one process or many under torchrun, CPU or GPU.

A step is `grad_accum_steps` micro-batches on every rank. The loss of a step is the mean cross-entropy
over all target tokens of the global batch, so k micro-batches give the same gradient as one batch k
times larger, and N ranks the same as one process with an N-times larger batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lmforge.config import Config, flatten
from lmforge.data.loader import MixtureWindows, RandomWindows, StreamWindows
from lmforge.data.masking import IGNORE, MaskedLM, MaskedWindows
from lmforge.data.shards import PreparedData, load_prepared
from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.eval.lm import sum_loss
from lmforge.generate import sample_texts
from lmforge.io import atomic_write_text
from lmforge.models import build_model, model_class
from lmforge.models.base import LanguageModel
from lmforge.prepare import ensure_prepared
from lmforge.report import write_report
from lmforge.run import RunDir
from lmforge.train.checkpoint import (capture_rng, list_checkpoints, load_carried_state, map_tensors, restore_rng,
                                      resume_from, save_checkpoint)
from lmforge.train.compiling import Compiler, keep_compiled_in_cache
from lmforge.train.distributed import Dist, all_reduce_sum, barrier, computes_in_bf16, init_distributed, shutdown
from lmforge.train.guard import NonFiniteGuard, grad_norm
from lmforge.train.logging import END_KEY, RunLogger, Throughput, peak_memory_mib, run_ended, trim_metrics
from lmforge.train.optim import build_optimizer, penalty, set_lr
from lmforge.train.parallel import (FullModel, FullOptimizer, full_state, grad_sync, resolve_checkpoint_format,
                                    resolve_strategy, shard)
from lmforge.train.sharded import is_sharded, write_shards
from lmforge.train.peak import peak_flops
from lmforge.train.schedules import batch_rows, lr_at
from lmforge.train.trackers import check_trackers, open_trackers


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    val_loss: float | None
    best_val_loss: float | None
    tokens_per_s: float
    elapsed_s: float
    samples: list[str] = field(default_factory=list)


def train(cfg: Config, run_dir: str | Path | None = None, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> TrainResult:
    """Train `cfg` into `run_dir` (default runs/<name>); with resume, continue its last checkpoint."""
    check_trackers(cfg.train.trackers(), cfg.train.mlflow_tracking_uri)  # before any process touches the run
    d = init_distributed(cfg.train.device)
    run = RunDir(run_dir or Path("runs") / cfg.name)
    try:
        return _train(cfg, run, d, resume, overwrite, progress)
    finally:
        run.unlock()
        shutdown(d)


def _bf16(cfg: Config, device: torch.device) -> bool:
    return computes_in_bf16(cfg.train.dtype, device, model_class(cfg.model).bf16_on_cpu)


def _autocast(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if _bf16(cfg, device) else contextlib.nullcontext()


@dataclass
class StepDone:
    loss_sum: torch.Tensor  # summed cross-entropy of this rank's targets
    local_tokens: int  # this rank's targets
    tokens: float  # every rank's targets
    grad_norm: torch.Tensor
    carried: object  # a recurrent model's state for the next window
    finite: bool  # False: the step was skipped (train/guard.py)


def _optimizer_step(cfg: Config, d: Dist, model: nn.Module, raw_model: nn.Module, optimizer, loader, rows: int,
                    carried, autocast, masked: bool, reset_id: int | None, guard: NonFiniteGuard,
                    strategy: str) -> StepDone:
    """One optimizer step: grad_accum_steps micro-batches of `rows` windows, the loss of the step the mean
    cross-entropy over every target of the global batch (see the module doc), then clipping and the update,
    which the guard skips when the loss or the gradient norm is not finite (train/guard.py)."""
    batches = []
    for _ in range(cfg.train.grad_accum_steps):
        x, y = loader.next_batch()
        # the loader still draws whole batches, so its position (and exact resume) is unchanged
        batches.append((x[:rows], y[:rows], loader.new_pass))
    local_tokens = sum(int((y != IGNORE).sum()) if masked else y.numel() for _, y, _ in batches)
    n_tokens = all_reduce_sum(torch.tensor(local_tokens, dtype=torch.float64, device=d.device), d).item()
    step_loss = torch.zeros((), device=d.device)
    for i, (x, y, new_pass) in enumerate(batches):
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        if new_pass:
            carried = None
        last = i == len(batches) - 1
        with grad_sync(model, strategy, last):
            with autocast:
                logits, carried = model(x, carried)
            ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
            # DDP and FSDP average gradients over ranks, so scale by world size to get the global token mean
            share = d.world_size / n_tokens
            loss = ce * share
            if (aux := raw_model.aux_loss) is not None:  # e.g. AR/TAR, a per-batch mean
                loss = loss + aux * (y.numel() * share)
            if last and (extra := penalty(raw_model, cfg.optimizer)) is not None:
                loss = loss + extra
            loss.backward()
        step_loss += ce.detach()
        carried = map_tensors(torch.Tensor.detach, carried)  # truncated BPTT: no gradient into the past
        if reset_id is not None:
            carried = raw_model.reset_state(carried, (x == reset_id).any(dim=1))
    norm = grad_norm(list(raw_model.parameters()), cfg.train.grad_clip)
    # every rank decides alike: the gradients (and so their norm) are already averaged, the loss is summed here
    finite = guard.ok(all_reduce_sum(step_loss.clone(), d), norm)
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepDone(step_loss, local_tokens, n_tokens, norm, carried if finite else None, finite)


@dataclass
class Parts:
    """What a training run is built from, once, before the first step."""
    cfg: Config  # with model.vocab_size filled in from the tokenizer
    data: PreparedData
    raw_model: LanguageModel
    optimizer: torch.optim.Optimizer
    loader: RandomWindows | MixtureWindows | StreamWindows | MaskedWindows
    masker: Callable[[int], MaskedLM] | None  # a masked LM's masks for a given seed
    strategy: str = "single"  # train/parallel.py
    checkpoint_format: str = "full"  # full or sharded (train/sharded.py)
    mixture: MixtureWindows | None = None  # the loader's windows of a mixture of data.sources (their epochs)

    def checkpointed(self, sharded: bool) -> tuple:
        """The model and optimizer as checkpoint.py reads and writes them: for a full checkpoint under fsdp,
        views of the full state; otherwise themselves (a sharded checkpoint is read and written shard by shard)."""
        if self.strategy == "fsdp" and not sharded:
            return FullModel(self.raw_model), FullOptimizer(self.raw_model, self.optimizer)
        return self.raw_model, self.optimizer


@dataclass
class Progress:
    """Where the run stands: what a checkpoint saves besides the weights and the optimizer."""
    step: int = 0
    best: float | None = None
    evals_since_best: int = 0
    elapsed_before: float = 0.0  # seconds spent by the runs this one resumes
    tokens: float | None = 0.0  # target tokens trained on, every rank's; None when resumed from a checkpoint that did not count them
    carried: object = None  # a recurrent model's hidden state between windows
    val_loss: float | None = None  # the checkpoint's, for a run resumed with no step left to evaluate again


def load_data(cfg: Config, d: Dist, progress: bool) -> tuple[Config, PreparedData]:
    """The prepared shards (rank 0 prepares them, the others wait and reuse them) and the config with the
    tokenizer's vocabulary size."""
    if d.is_main:
        ensure_prepared(cfg, progress=progress)
    barrier(d)
    data = load_prepared(ensure_prepared(cfg, progress=False))
    tokenizer = data.tokenizer
    if cfg.model.vocab_size is None:
        cfg = cfg.model_copy(deep=True)
        cfg.model.vocab_size = tokenizer.vocab_size
    elif cfg.model.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the tokenizer's "
                          f"{tokenizer.vocab_size}")
    if sum(len(s) for s in data.split("val")) < 2:
        raise DataError(f"{data.path}: validation split has fewer than 2 tokens; raise data.val_fraction")
    return cfg, data


def build_parts(cfg: Config, data: PreparedData, d: Dist) -> Parts:
    """Model, optimizer and loader, in the order that fixes every random draw: the seed, the model's
    initialisation, the loader's own generator, the masks' own generator, then this rank's dropout stream."""
    tc = cfg.train
    strategy = resolve_strategy(tc.strategy, d)
    checkpoint_format = resolve_checkpoint_format(tc.checkpoint_format, strategy)
    torch.manual_seed(tc.seed)
    raw_model = build_model(cfg.model).to(d.device)
    if tc.activation_checkpointing:
        if not raw_model.blocks():
            raise ConfigError(f"train.activation_checkpointing: the {cfg.model.arch} model has no blocks to "
                              "recompute (the gpt, encoder and recurrent families have)")
        for part in raw_model.modules():  # a forward/backward pair's two LMs too
            if isinstance(part, LanguageModel):
                part.activation_checkpointing = True
    if strategy == "fsdp":  # before the optimizer, which must hold the sharded parameters
        shard(raw_model, raw_model.blocks(), tc.fsdp_reshard_after_forward, cfg.model.arch, _bf16(cfg, d.device))
    optimizer = build_optimizer(raw_model, cfg.optimizer, d.device, bf16_compute=_bf16(cfg, d.device))
    mixture = None
    if raw_model.recurrent:  # truncated BPTT: consecutive windows, state carried from one to the next
        loader = StreamWindows(data.split("train"), cfg.model.block_size, tc.micro_batch_size, d.rank, d.world_size)
    elif data.mixture:  # data.sources: windows drawn from each source in proportion to its weight
        loader = mixture = MixtureWindows({name: (data.source_split(name, "train"), weight)
                                           for name, weight in data.mixture.items()}, cfg.model.block_size,
                                          tc.micro_batch_size, seed=tc.seed + 1, rank=d.rank, world_size=d.world_size)
    else:
        loader = RandomWindows(data.split("train"), cfg.model.block_size, tc.micro_batch_size,
                               seed=tc.seed + 1, rank=d.rank, world_size=d.world_size)
    masker = None
    if raw_model.objective == "masked":  # BERT's: windows come masked, with labels only where a token was chosen
        tokenizer = data.tokenizer
        never = [i for i in (tokenizer.eod_id,) if i is not None]

        def masks(seed: int) -> MaskedLM:
            return MaskedLM(cfg.model, tokenizer.mask_id, cfg.model.vocab_size, never, seed)

        masker = masks
        loader = MaskedWindows(loader, masker(tc.seed + 2 + d.rank))
    torch.manual_seed(tc.seed + d.rank)  # dropout masks differ between ranks
    return Parts(cfg, data, raw_model, optimizer, loader, masker, strategy, checkpoint_format, mixture)


def start_or_resume(run: RunDir, parts: Parts, d: Dist, resume: bool, overwrite: bool) -> Progress:
    """A new run directory, or the last checkpoint's weights, optimizer, loader position and RNG restored."""
    progress = Progress()
    if resume:
        ckpt = run.checkpoint("last")
        state = resume_from(ckpt, *parts.checkpointed(is_sharded(ckpt)), d.device)
        carried = restore_positions(ckpt, state, parts, d)
        progress = Progress(state["step"], state.get("best_val_loss"), state.get("evals_since_best", 0),
                            state.get("elapsed_s", 0.0), state.get("tokens"), carried, state.get("val_loss"))
        # at max_steps but killed before its end (samples, report), the run resumes to finish that
        max_steps = parts.cfg.train.max_steps
        if progress.step > max_steps or (progress.step == max_steps and run_ended(run.path, progress.step)):
            raise ConfigError(f"train.max_steps={parts.cfg.train.max_steps}: {ckpt} is already at step "
                              f"{progress.step}; give a larger train.max_steps to train on")
        if d.is_main:
            run.lock()
            trim_metrics(run.path, progress.step)  # what the stopped run logged after this checkpoint is done again
    elif d.is_main:
        run.lock()
        run.create(parts.cfg, parts.data.tokenizer, overwrite)
    barrier(d)  # the run directory exists before any rank writes to it
    return progress


def restore_positions(ckpt: Path, state: dict, parts: Parts, d: Dist):
    """Every rank's loader position and RNG streams as saved, and its carried recurrent state (returned).

    On another number of processes than saved: the windows go on from the same stream of draws (every rank
    draws the indices of the whole global batch from one generator, data/loader.py), so with the same global
    batch (micro_batch_size x processes) they are the windows the saved run would have drawn; each rank that
    existed keeps its dropout stream and a new rank starts a fresh one (seeded by its rank and the step),
    and a masked LM's new ranks draw fresh masks alike. A recurrent run is refused: its streams and hidden
    state are cut per rank."""
    saved = len(state["loader"])
    if saved == d.world_size:
        parts.loader.load_state_dict(state["loader"][d.rank])
        restore_rng(state["rng"][d.rank])
        return load_carried_state(ckpt, d.rank, d.device)
    if parts.raw_model.recurrent:
        raise CheckpointError(f"{ckpt}: saved by {saved} processes; a recurrent run carries each rank's hidden "
                              f"state, so resume it on {saved}")
    loader_state = dict(state["loader"][min(d.rank, saved - 1)])
    if d.rank < saved:
        restore_rng(state["rng"][d.rank])
    else:  # a new rank: its streams seeded by its rank and the step, apart from every other rank's and step's
        fresh = parts.cfg.train.seed + d.rank + 7919 * state["step"]
        torch.manual_seed(fresh)
        if parts.masker is not None:  # MaskedWindows: the windows' state, then this rank's masks
            loader_state["masker"] = parts.masker(fresh + 2).state_dict()
    parts.loader.load_state_dict(loader_state)
    return None


def evaluate(parts: Parts, model: nn.Module, d: Dist, autocast) -> tuple[float, dict[str, float]]:
    """Mean validation loss per target token, over every rank's share of the split; for a mixture of
    data.sources also each source's own (train.eval_max_windows caps each source), the first figure then the
    mean over every source's targets."""
    cfg, tc = parts.cfg, parts.cfg.train
    # a masked LM is scored on the same masks at every evaluation, so its losses compare
    # under fsdp each forward pass is a collective, so every rank scores every window, in step
    rank, world = (0, 1) if parts.strategy == "fsdp" else (d.rank, d.world_size)
    masker = parts.masker(tc.seed + 3 + rank) if parts.masker else None
    names = list(parts.data.mixture)
    splits = [parts.data.source_split(name, "val") for name in names] or [parts.data.split("val")]
    sums: list[float] = []
    for segments in splits:
        sums += sum_loss(model, segments, cfg.model.block_size, tc.eval_batch_size, d.device, autocast,
                         tc.eval_max_windows, rank, world, recurrent=parts.raw_model.recurrent, masker=masker)
    totals = torch.tensor(sums, dtype=torch.float64, device=d.device)
    if world > 1:
        totals = all_reduce_sum(totals, d)
    totals = totals.view(-1, 2)
    per_source = {name: (totals[i, 0] / totals[i, 1]).item() for i, name in enumerate(names)}
    return (totals[:, 0].sum() / totals[:, 1].sum()).item(), per_source


def checkpoint(run: RunDir, parts: Parts, progress: Progress, d: Dist, val_loss: float | None,
               elapsed_s: float) -> None:
    """Save the step; every rank's loader and RNG state is gathered so that a DDP run resumes exactly too."""
    per_rank = [{"loader": parts.loader.state_dict(), "rng": capture_rng(), "carried": progress.carried}]
    if d.enabled:
        gathered: list = [None] * d.world_size
        torch.distributed.all_gather_object(gathered, per_rank[0])
        per_rank = gathered
    sharded = parts.checkpoint_format == "sharded"
    model, optimizer = parts.checkpointed(sharded)
    if parts.strategy == "fsdp" and not sharded:  # every rank helps gather the full state; rank 0 writes it
        model.weights, optimizer.state = full_state(parts.raw_model, parts.optimizer)
    if sharded and not d.is_main:  # rank 0 writes the rest of the checkpoint around every rank's shards
        write_shards(model, optimizer, None)
    if d.is_main:
        save_checkpoint(run.path, progress.step, model, optimizer, {
            "val_loss": val_loss, "best_val_loss": progress.best, "evals_since_best": progress.evals_since_best,
            "elapsed_s": elapsed_s, "tokens": progress.tokens, "loader": [r["loader"] for r in per_rank], "rng": [r["rng"] for r in per_rank],
            # what the run's tokenizer.json and config.yaml are checked against when the weights are loaded
            "tokenizer_sha256": parts.data.tokenizer.sha256, "model": parts.cfg.model.model_dump(mode="json"),
            "config_keys": sorted(flatten(parts.cfg.model_dump(mode="json"))),
        }, parts.cfg.train.keep_last,
            carried=[r["carried"] for r in per_rank] if parts.raw_model.recurrent else None,
            tensors=(lambda tmp: write_shards(model, optimizer, tmp)) if sharded else None)
    barrier(d)


def _skipped(run: RunDir, parts: Parts, at: Progress, d: Dist, log: RunLogger, guard: NonFiniteGuard,
             done: StepDone, model: nn.Module, autocast, elapsed_s: float) -> None:
    """Log a skipped step; after train.max_bad_steps in a row, stop, saving the weights if they are still good."""
    log.log(at.step + 1, skipped=True, loss=done.loss_sum.item() / done.local_tokens,
            grad_norm=done.grad_norm.item(), skipped_steps=guard.total)
    log.write(f"step {at.step + 1}: loss or gradient norm not finite, skipped ({guard.in_a_row} in a row)")
    if not guard.exhausted:
        return
    # Skipped steps change nothing, so the weights are those of step at.step. They are good if the fault was in
    # the batches (or injected); if an update broke them, the validation loss says so, and they are not saved.
    val_loss, _ = evaluate(parts, model, d, autocast)
    existing = run.path / "checkpoints" / f"step-{at.step}"
    checkpoints = list_checkpoints(run.path)
    if not math.isfinite(val_loss):
        saved = ("the weights give a non-finite validation loss too, so they were not saved; "
                 + (f"the last checkpoint, {checkpoints[-1][1]}, is as it was" if checkpoints
                    else "no checkpoint was written before"))
    elif existing.is_dir():
        saved = f"{existing} holds these weights (validation loss {val_loss:.4f})"
    else:
        checkpoint(run, parts, at, d, val_loss, elapsed_s)
        saved = f"the weights of step {at.step} (validation loss {val_loss:.4f}) are saved in {existing}"
    log.close()
    raise guard.error(at.step, saved)


def wrap(raw_model: nn.Module, d: Dist, strategy: str, compiler: Compiler) -> nn.Module:
    """The model the steps call: compiled if asked (train.compile=true), under DDP for the ddp strategy (fsdp
    shards it in place)."""
    model = compiler.at_start(raw_model)
    if strategy == "ddp":
        model = DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
    return model


def _train(cfg: Config, run: RunDir, d: Dist, resume: bool, overwrite: bool, show_progress: bool) -> TrainResult:
    started = time.perf_counter()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    if cfg.train.compile is not False:
        keep_compiled_in_cache()
    run.check_start(resume, overwrite)
    cfg, data = load_data(cfg, d, show_progress)
    parts = build_parts(cfg, data, d)
    at = start_or_resume(run, parts, d, resume, overwrite)
    tc, raw_model = cfg.train, parts.raw_model

    # what compiling costs depends on the model, the batch's shape, the dtype and the strategy
    compiler = Compiler(tc.compile, d.device, [cfg.model.model_dump(mode="json"), tc.micro_batch_size,
                                               _bf16(cfg, d.device), parts.strategy, d.world_size])
    model = wrap(raw_model, d, parts.strategy, compiler)
    autocast = _autocast(cfg, d.device)
    trackers = open_trackers(run.path, tc.trackers(), cfg.model_dump(mode="json"), cfg.name, tc.tracker_project,
                             tc.mlflow_tracking_uri) if d.is_main else []
    log = RunLogger(run.path, tc.max_steps, at.step, d.is_main, show_progress, trackers)
    flops_per_token = raw_model.flops_per_token()
    peak = peak_flops(d.device, _bf16(cfg, d.device), tc.peak_flops) if d.is_main else None
    if d.is_main and peak is None:
        log.write(f"no MFU logged: {torch.cuda.get_device_name(d.device)} is not in train/peak.py's table of "
                  "data-sheet peaks; set train.peak_flops to its peak FLOP/s")
    masked = raw_model.objective == "masked"
    # a recurrent model zeroes the state of rows whose document ended, when asked to
    reset_id = data.tokenizer.eod_id if raw_model.recurrent and cfg.model.reset_state_at_eod else None

    def elapsed() -> float:
        return at.elapsed_before + time.perf_counter() - started

    val_loss = at.val_loss
    throughput = Throughput()
    guard = NonFiniteGuard(tc.max_bad_steps)
    tokens_per_s = 0.0
    stop = False
    model.train()
    while at.step < tc.max_steps and not stop:
        lr = lr_at(at.step, cfg.optimizer.lr, cfg.schedule, tc.max_steps)
        set_lr(parts.optimizer, lr)

        step_started = time.perf_counter()
        done = _optimizer_step(cfg, d, model, raw_model, parts.optimizer, parts.loader, batch_rows(at.step, tc),
                               at.carried, autocast, masked, reset_id, guard, parts.strategy)
        model = compiler.after_step(model, time.perf_counter() - step_started, tc.max_steps - at.step - 1)
        at.carried = done.carried
        if not done.finite:
            _skipped(run, parts, at, d, log, guard, done, model, autocast, elapsed())
            continue
        at.step += 1
        step = at.step
        throughput.add(done.tokens)
        if at.tokens is not None:
            at.tokens += done.tokens

        if step % tc.log_interval == 0 or step == tc.max_steps:
            tokens_per_s = throughput.rate()
            loss_value = done.loss_sum.item() / done.local_tokens
            record = {"loss": loss_value, "lr": lr, "tokens_per_s": tokens_per_s}
            if at.tokens is not None:
                record["tokens"] = at.tokens
            record["grad_norm"] = done.grad_norm.item()
            if guard.total:
                record["skipped_steps"] = guard.total
            if peak is not None:  # model FLOPs (train/peak.py, models/base.py) against every device's peak
                record["flops_per_s"] = flops_per_token * tokens_per_s
                record["mfu"] = record["flops_per_s"] / (peak * d.world_size)
            if parts.mixture is not None:  # passes over each source's training tokens so far
                record.update({f"epochs/{name}": e for name, e in parts.mixture.epochs().items()})
            record.update(memory_mib=peak_memory_mib(d.device), elapsed_s=elapsed())
            log.log(step, **record)
            log.advance(loss_value, tokens_per_s)
            throughput.restart()
        else:
            log.advance()

        out_of_time = tc.time_budget_s is not None and elapsed() >= tc.time_budget_s
        final = step == tc.max_steps or out_of_time
        if step % tc.eval_interval == 0 or final:
            val_loss, per_source = evaluate(parts, model, d, autocast)
            if at.best is None or val_loss < at.best - tc.early_stopping_min_delta:
                at.best, at.evals_since_best = val_loss, 0
            else:
                at.evals_since_best += 1
            log.log(step, val_loss=val_loss, val_perplexity=math.exp(min(val_loss, 700.0)),
                    **{f"val_loss/{name}": loss for name, loss in per_source.items()}, elapsed_s=elapsed())
            log.write(f"step {step}: val loss {val_loss:.4f}"
                      + "".join(f", {name} {loss:.4f}" for name, loss in per_source.items()))
            stopped_early = (tc.early_stopping_patience is not None
                             and at.evals_since_best >= tc.early_stopping_patience)
            if stopped_early:
                log.write(f"early stopping: no better validation loss in {at.evals_since_best} evaluations")
            stop = final or stopped_early
            if tc.checkpoint_interval is None or stop:
                checkpoint(run, parts, at, d, val_loss, elapsed())
            throughput.skip_time()
        if tc.checkpoint_interval is not None and step % tc.checkpoint_interval == 0 and not stop:
            checkpoint(run, parts, at, d, val_loss if step % tc.eval_interval == 0 else None, elapsed())
        if d.is_main and tc.report and tc.report_every and step % tc.report_every == 0 and not stop:
            write_report(run.path)
            throughput.skip_time()

    samples: list[str] = []
    # under fsdp every rank samples, in step and alike (the same seed), since each forward pass is a collective;
    # an encoder does not generate text
    if (d.is_main or parts.strategy == "fsdp") and cfg.sample.num_samples and not masked:
        samples = sample_texts(raw_model, data.tokenizer, cfg.sample, cfg.model.block_size, d.device, seed=tc.seed)
        if d.is_main:
            atomic_write_text(run.path / "samples.txt", "\n\n---\n\n".join(samples) + "\n")
    if d.is_main and tc.report:
        write_report(run.path)
    # last, so that it says the run ended: one killed before it resumes to write its samples and report again
    log.log(at.step, **{END_KEY: peak_memory_mib(d.device)})
    log.artifacts([run.path / "samples.txt", run.path / "report.html"])
    log.close()
    return TrainResult(run.path, at.step, val_loss, at.best, tokens_per_s, elapsed(), samples)
