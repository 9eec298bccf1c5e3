"""The most MFU a recipe's training step can reach on this machine: its matrix products timed alone, at its shapes.

One forward pass with hooks records every linear layer's shape (M rows, K in, N out). Each of the three
products a training step makes with it (the forward (M,K)x(K,N), the input gradient (M,N)x(N,K) and the weight
gradient (N,M)x(M,K)) and the attention kernel (forward and backward, at the step's batch, heads and context)
are then timed on their own, in a loop, and so is the real step (forward, loss, backward, clipping, the recipe's
optimizer), in alternating rounds so that the machine's drift hits both. The products alone give the step's
time if nothing else cost anything: the model's FLOPs per step (the figure the training log's MFU uses) over
that time, over the measured GEMM peak (`lmforge bench-gemm`), is the ceiling of MFU at these shapes; what the
real step takes beyond it is everything else (element-wise operators, norms, the optimizer, Python).

    python benchmarks/gemm_bound.py [RECIPE | default] [key=value ...] [--dtype float32|bfloat16] [--rounds 5]

Run it alone, from a worktree of main.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.config import load_config
from lmforge.models import build_model
from lmforge.train.optim import build_optimizer
from lmforge.train.peak import cpu_peak_flops

ROOT = Path(__file__).resolve().parents[1]


def linear_shapes(model: nn.Module, x: torch.Tensor) -> Counter:
    """(M, K, N) of every linear layer's forward product in one pass, counted."""
    shapes: Counter = Counter()
    hooks = [m.register_forward_hook(lambda mod, args, out: shapes.update(
        [(args[0].numel() // mod.in_features, mod.in_features, mod.out_features)]))
        for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def products(shapes: Counter) -> Counter:
    """The training step's matrix products (a, b) shapes: forward, input gradient, weight gradient."""
    out: Counter = Counter()
    for (m, k, n), count in shapes.items():
        for a, b in (((m, k), (k, n)), ((m, n), (n, k)), ((n, m), (m, k))):
            out[(a, b)] += count
    return out


def time_loop(fn, repeats: int = 20, warmup: int = 1) -> float:
    """The median of `repeats` timed calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=str(ROOT / "configs" / "shakespeare-char-baby.yaml"))
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: the products in bf16 and the real step under bf16 autocast (attention in fp32, as the trainer)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=None,
                        help="vocabulary size (default: the recipe's; 65, Tiny Shakespeare's characters, for a char tokenizer)")
    args = parser.parse_args()
    recipe = None if args.recipe == "default" else args.recipe
    cfg = load_config(recipe, args.overrides)
    torch.set_num_threads(cfg.train.num_threads or torch.get_num_threads())
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    vocab = args.vocab or cfg.model.vocab_size or (65 if cfg.tokenizer.kind == "char" else cfg.tokenizer.vocab_size)
    model = build_model(cfg.model.model_copy(update={"vocab_size": vocab}))
    optimizer = build_optimizer(model, cfg.optimizer, torch.device("cpu"))
    rows, block = cfg.train.micro_batch_size, cfg.model.block_size
    data = torch.randint(0, vocab, (rows, block + 1), generator=torch.Generator().manual_seed(0))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    gemms = products(linear_shapes(model, x))
    operands = {ab: (torch.randn(*ab[0]).to(dtype), torch.randn(*ab[1]).to(dtype)) for ab in gemms}
    heads = cfg.model.n_head
    q, k, v = (torch.randn(rows, heads, block, cfg.model.n_embd // heads, requires_grad=True) for _ in range(3))

    def attention() -> None:  # fp32, as the trainer computes it under CPU autocast too
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(torch.ones_like(out))

    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            logits, _ = model(x)
        F.cross_entropy(logits.float().flatten(0, 1), y.flatten()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip or 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    per_gemm: dict = {ab: [] for ab in gemms}
    attn, steps = [], []
    for _ in range(args.rounds):
        for ab, (a, b) in operands.items():
            per_gemm[ab].append(time_loop(lambda: a @ b))
        attn.append(time_loop(attention, 10))
        steps.append(time_loop(step, 10, warmup=3))  # the products' loops have just evicted the model from cache

    peak = cpu_peak_flops(dtype)
    print(f"recipe: {Path(args.recipe).name} {' '.join(args.overrides)}; {args.dtype} products; batch {rows}x{block}; "
          f"{torch.get_num_threads()} threads; measured GEMM peak {peak / 1e9:.1f} GFLOP/s; {args.rounds} rounds")
    print("| product (a) x (b) | per step | ms each | GFLOP/s | of the peak |\n|---|---|---|---|---|")
    gemm_s = gemm_flop = 0.0
    for (a, b), count in sorted(gemms.items(), key=lambda kv: -kv[1] * statistics.median(per_gemm[kv[0]])):
        each = statistics.median(per_gemm[(a, b)])
        flop = 2 * a[0] * a[1] * b[1]
        gemm_s += count * each
        gemm_flop += count * flop
        print(f"| {a} x {b} | {count} | {each * 1e3:.3f} | {flop / each / 1e9:.0f} | {100 * flop / each / peak:.0f} % |")
    attn_s = cfg.model.n_layer * statistics.median(attn)
    step_s = statistics.median(steps)
    model_flop = model.flops_per_token() * rows * block
    print(f"\nmatrix products: {gemm_s * 1e3:.1f} ms a step at {gemm_flop / gemm_s / 1e9:.0f} GFLOP/s "
          f"({100 * gemm_flop / gemm_s / peak:.0f} % of the peak)")
    print(f"attention forward and backward ({cfg.model.n_layer} layers, fp32): {attn_s * 1e3:.1f} ms a step")
    print(f"real step: {step_s * 1e3:.1f} ms; everything but the products and attention: {(step_s - gemm_s - attn_s) * 1e3:.1f} ms "
          f"({100 * (step_s - gemm_s - attn_s) / step_s:.0f} %)")
    print(f"MFU ceiling (the products and attention alone): {100 * model_flop / (gemm_s + attn_s) / peak:.1f} %; "
          f"real step's MFU: {100 * model_flop / step_s / peak:.1f} %  (model FLOPs per step {model_flop / 1e9:.2f} G)")


if __name__ == "__main__":
    main()
