"""GPT-2 124M training throughput: tokens/s, MFU and peak memory of lmforge's own `train()`, one process or
many under torchrun.

The model is GPT-2 small's shape: 12 layers, 12 heads, 768 wide, a 1024-token context, learned positions,
LayerNorm, GELU, biases, tied embeddings, vocabulary padded to 50304 (the BPE tokenizer is trained to 50257
on the corpus, or given with --tokenizer). Training is bf16 autocast on CUDA (train.dtype=auto),
torch.compile (unless --no-compile), and AdamW with fused kernels (optimizer.impl=auto: fused on CUDA and
CPU) or Muon (--optimizer muon: the hidden matrices, fused AdamW for the rest), a cosine schedule with warmup,
for --steps steps of micro-batch --micro-batch x --grad-accum per process, no dropout. One evaluation (on
--eval-windows validation windows) and one checkpoint come at the end, after the timed steps.

Every step is logged (metrics.jsonl); the figures are medians over the steps after --skip (compilation and
warm-up): tokens/s of the global batch (and per process), model FLOP/s and MFU (`flops_per_s`, `mfu`: against
the data-sheet bf16 peak of a known CUDA device, train/peak.py; on a CPU against its measured GEMM peak;
train.peak_flops=F sets it) and the peak memory of rank 0 over the steps (CUDA: max allocated; CPU: peak
resident set).

    python benchmarks/gpt2_124m.py --data CORPUS [--steps 50] [--micro-batch 16] [key=value ...]
    torchrun --standalone --nproc_per_node 8 benchmarks/gpt2_124m.py --data CORPUS --strategy ddp
    torchrun --standalone --nproc_per_node 8 benchmarks/gpt2_124m.py --data CORPUS --strategy fsdp
    python benchmarks/gpt2_124m.py --tiny          # a 2 x 2 x 64 model on the CPU, end to end in seconds

The corpus is prepared (tokenizer and shards) on the first run and reused after (data.prepared_dir, default
prepared/<hash>). Under torchrun rank 0 prepares while the others wait at a barrier (NCCL's default timeout is
10 minutes), so prepare a large corpus first, with the same --data/--tokenizer/--prepared and --prepare-only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"

GPT2 = ["model.n_layer=12", "model.n_head=12", "model.n_embd=768", "model.block_size=1024", "model.vocab_size=50304",
        "model.pos=learned", "model.norm=layernorm", "model.mlp=gelu", "model.bias=true", "model.tie_embeddings=true",
        "tokenizer.kind=bpe", "tokenizer.vocab_size=50257"]
# the same code path at a size a CPU runs in seconds
TINY = ["model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.block_size=64", "model.vocab_size=512",
        "model.pos=learned", "model.norm=layernorm", "model.mlp=gelu", "model.bias=true", "model.tie_embeddings=true",
        "tokenizer.kind=bpe", "tokenizer.vocab_size=500", "tokenizer.train_sample_bytes=200000"]


def overrides(a: argparse.Namespace) -> list[str]:
    """The run's config, as key=value overrides on lmforge's defaults; the user's own come last and win."""
    warmup = max(1, min(100, a.steps // 10))
    out = [*(TINY if a.tiny else GPT2), f"data.path={a.data}", "tokenizer.eod=true", "model.dropout=0.0",
           f"optimizer.name={a.optimizer}", "optimizer.lr=6e-4", "optimizer.betas=[0.9,0.95]",
           "optimizer.weight_decay=0.1", "optimizer.impl=auto", "schedule.name=cosine",
           f"schedule.warmup_steps={warmup}", "schedule.min_lr=6e-5", f"train.max_steps={a.steps}",
           f"train.micro_batch_size={a.micro_batch}", f"train.grad_accum_steps={a.grad_accum}",
           f"train.strategy={a.strategy}", f"train.compile={str(not a.no_compile).lower()}", "train.dtype=auto",
           "train.grad_clip=1.0", "train.log_interval=1", f"train.eval_interval={a.steps}",
           f"train.eval_max_windows={a.eval_windows}", "train.eval_batch_size=8", "train.keep_last=1",
           "train.tensorboard=false", "train.report=false", "sample.num_samples=0"]
    if a.tokenizer:
        out.append(f"tokenizer.path={a.tokenizer}")
    if a.prepared:
        out.append(f"data.prepared_dir={a.prepared}")
    return [*out, *a.overrides]


def summarise(records: list[dict], skip: int) -> dict:
    steps = [r for r in records if "tokens_per_s" in r]
    timed = steps[skip:] or steps[-1:]  # a run shorter than --skip still reports its last step

    def median(key: str) -> float | None:
        return statistics.median(r[key] for r in timed) if all(key in r for r in timed) else None

    return {"steps_timed": len(timed), "tokens_per_s": median("tokens_per_s"), "flops_per_s": median("flops_per_s"),
            "mfu": median("mfu"), "peak_memory_mib": max(r["memory_mib"] for r in steps),
            "final_loss": steps[-1]["loss"], "val_loss": next((r["val_loss"] for r in reversed(records)
                                                                if "val_loss" in r), None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the corpus (a file, a folder or a glob)")
    ap.add_argument("--tokenizer", help="an existing tokenizer.json instead of training a BPE one on the corpus")
    ap.add_argument("--prepared", help="data.prepared_dir: where the shards are (or go)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--skip", type=int, default=10, help="steps left out of the medians (compilation, warm-up)")
    ap.add_argument("--micro-batch", type=int, default=16, help="sequences per forward pass per process")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--optimizer", choices=["adamw", "muon"], default="adamw")
    ap.add_argument("--strategy", choices=["auto", "single", "ddp", "fsdp"], default="auto",
                    help="auto: single for one process, ddp under torchrun")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile off")
    ap.add_argument("--eval-windows", type=int, default=16, help="validation windows of the one evaluation at the end")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer, 64-wide, 64-token model: the whole path on a CPU")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "gpt2-124m", help="the run directory (overwritten)")
    ap.add_argument("--prepare-only", action="store_true",
                    help="prepare the corpus (tokenizer and shards) and stop: do it once before a torchrun start")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides, applied last")
    a = ap.parse_args()

    import torch

    from lmforge.config import load_config
    from lmforge.errors import LmforgeError
    from lmforge.train.trainer import train

    try:
        cfg = load_config(None, overrides(a))
        if a.prepare_only:
            from lmforge.prepare import ensure_prepared

            print(ensure_prepared(cfg))
            return
        result = train(cfg, a.out, overwrite=True, progress=False)
    except LmforgeError as e:
        sys.exit(f"error: {e}")
    if int(os.environ.get("RANK", "0")) != 0:
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    s = summarise(records, a.skip)
    saved = load_config(result.run_dir / "config.yaml")
    m, t = saved.model, saved.train
    params = _model(saved).num_params(exclude_embeddings=False)
    cuda = torch.cuda.is_available() and t.device != "cpu"
    device = torch.cuda.get_device_name() if cuda else "CPU"
    bf16 = t.dtype == "bfloat16" or (t.dtype == "auto" and cuda)  # the trainer's rule
    strategy = a.strategy if a.strategy != "auto" else ("ddp" if world > 1 else "single")
    print(f"model: {m.n_layer} x {m.n_head} x {m.n_embd}, block {m.block_size}, vocab {m.vocab_size}, "
          f"{params / 1e6:.1f} M parameters; {a.optimizer}, compile {t.compile}, "
          f"{'bf16 autocast' if bf16 else 'float32'}")
    print(f"run: {world} process(es) on {device}, strategy {strategy}, global batch "
          f"{t.micro_batch_size * t.grad_accum_steps * world} x {m.block_size} tokens, "
          f"{result.step} steps, median over {s['steps_timed']} after the first {a.skip}")
    print(f"tokens/s: {s['tokens_per_s']:,.0f} ({s['tokens_per_s'] / world:,.0f} per process)")
    if s["mfu"] is not None:
        print(f"MFU: {100 * s['mfu']:.1f} % ({s['flops_per_s'] / 1e12:.2f} TFLOP/s of model FLOPs, all processes)")
    else:
        print("MFU: not logged (a device train/peak.py does not know; set train.peak_flops)")
    print(f"peak memory (rank 0, over the steps): {s['peak_memory_mib']:,.0f} MiB")
    print(f"loss: last step {s['final_loss']:.4f}, validation {s['val_loss']:.4f}")
    if a.json:
        print(json.dumps({**s, "world_size": world, "params": params, "device": device,
                          "strategy": strategy, "bf16": bf16}))


def _model(cfg):
    """The model, built on the meta device: only its parameter count is wanted."""
    import torch

    from lmforge.models import build_model

    with torch.device("meta"):
        return build_model(cfg.model)


if __name__ == "__main__":
    main()
