"""A Muon training step against an AdamW one on the same model, side by side, alternating.

The model is the default job's GPT (or the recipe given, with overrides); a fixed random batch of the
recipe's micro-batch size stands in for data, since the optimizer's cost does not depend on it. Each round
times `--steps` whole training steps (forward, backward, clipping, optimizer step) with AdamW, then with
Muon (hidden matrices) + AdamW (the rest), each on its own copy of the model; rounds alternate so that drift
in the machine's speed hits both. Prints the median step of each, the ratio, and the optimizer step alone.

    python benchmarks/muon_step.py [RECIPE] [key=value ...] [--rounds 5] [--steps 20]

Run it alone, from a worktree of main; set train.num_threads to compare at a fixed thread count.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from lmforge.config import load_config
from lmforge.models import build_model
from lmforge.train.optim import build_optimizer


def timed_steps(model, optimizer, x, y, steps: int, clip: float) -> tuple[float, float]:
    """Median seconds of a whole step and of the optimizer step alone."""
    whole, opt = [], []
    for _ in range(steps):
        started = time.perf_counter()
        logits, _ = model(x)
        F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        before_opt = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        whole.append(done - started)
        opt.append(done - before_opt)
    return statistics.median(whole), statistics.median(opt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=None)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    recipe = args.recipe if args.recipe and "=" not in args.recipe else None
    overrides = ([args.recipe] if args.recipe and recipe is None else []) + args.overrides
    cfg = load_config(recipe, overrides)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(0)
    vocab = cfg.model.vocab_size or cfg.tokenizer.vocab_size
    base = build_model(cfg.model.model_copy(update={"vocab_size": vocab}))
    rows, block = cfg.train.micro_batch_size, cfg.model.block_size
    data = torch.randint(0, vocab, (rows, block + 1), generator=torch.Generator().manual_seed(0))
    x, y = data[:, :-1], data[:, 1:]
    runs = {}
    for name in ("adamw", "muon"):
        model = copy.deepcopy(base)
        runs[name] = (model, build_optimizer(model, cfg.optimizer.model_copy(update={"name": name}),
                                             torch.device("cpu")))
        timed_steps(*runs[name], x, y, 3, cfg.train.grad_clip or 1.0)  # warm-up: allocations, optimizer state
    results: dict[str, list[tuple[float, float]]] = {"adamw": [], "muon": []}
    for _ in range(args.rounds):
        for name in ("adamw", "muon"):
            results[name].append(timed_steps(*runs[name], x, y, args.steps, cfg.train.grad_clip or 1.0))
    n_params = sum(p.numel() for p in base.parameters())
    print(f"model: {cfg.model.arch}, {n_params / 1e6:.2f}M parameters, batch {rows}x{block}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps")
    print("| optimizer | step (ms, median of rounds) | optimizer step alone (ms) |\n|---|---|---|")
    med = {}
    for name, rounds in results.items():
        med[name] = (statistics.median(r[0] for r in rounds), statistics.median(r[1] for r in rounds))
        print(f"| {name} | {med[name][0] * 1e3:.1f} | {med[name][1] * 1e3:.2f} |")
    print(f"Muon step / AdamW step: {med['muon'][0] / med['adamw'][0]:.3f}")


if __name__ == "__main__":
    main()
