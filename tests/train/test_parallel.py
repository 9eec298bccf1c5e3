"""train/parallel.py in this one process: FSDP2 over a process group of one (gloo), so what a policy or a wrap
does is seen directly; tests/train/test_distributed.py runs the strategies on two ranks."""

import pytest
import torch
import torch.distributed as dist

from lmforge.config import load_config
from lmforge.models import build_model
from lmforge.train.parallel import resolve_checkpoint_format, shard


@pytest.fixture
def one_rank(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("bf16, computed_in", [(True, torch.bfloat16), (False, torch.float32)])
def test_fsdp_computes_in_bf16_and_keeps_float32_weights(bf16, computed_in, one_rank):
    torch.manual_seed(0)
    model = build_model(load_config(None, ["model.n_layer=2", "model.n_head=2", "model.n_embd=32",
                                           "model.block_size=16", "model.vocab_size=40"]).model)
    shard(model, model.blocks(), reshard_after_forward=True, arch="gpt", bf16=bf16)
    seen = []
    model.blocks()[0].register_forward_pre_hook(lambda block, args: seen.append(next(block.parameters()).dtype))
    logits, _ = model(torch.randint(0, 40, (2, 16)))
    logits.float().sum().backward()
    assert seen == [computed_in]
    # what is kept (the shards the optimizer updates, and their gradients) stays float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("fmt, strategy, expected", [("auto", "fsdp", "sharded"), ("auto", "ddp", "full"),
                                                     ("auto", "single", "full"), ("full", "fsdp", "full")])
def test_checkpoint_format_auto_is_sharded_under_fsdp_only(fmt, strategy, expected):
    assert resolve_checkpoint_format(fmt, strategy) == expected
