import pytest
import torch

from lmforge.config import GPTConfig, OptimizerConfig
from lmforge.models import build_model
from lmforge.train.muon import Muon, orthogonalize
from lmforge.train.optim import build_optimizer
from lmforge.train.trainer import train


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48)])
def test_newton_schulz_gives_near_orthogonal_updates(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    g[:, 0] *= 100  # badly conditioned: one direction dominates
    before = torch.linalg.svdvals(g)
    after = torch.linalg.svdvals(orthogonalize(g))
    assert before.max() / before.min() > 50
    # the quintic iteration's band around 1; five steps cannot lift a square random matrix's few
    # near-zero singular values all the way, so the bulk is checked there
    in_band = ((after > 0.6) & (after < 1.25)).float().mean()
    assert after.max() < 1.25 and in_band >= (1.0 if shape[0] != shape[1] else 0.85)
    # same singular vectors: the update is U V^T of g, up to those singular values
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    cos = torch.nn.functional.cosine_similarity(orthogonalize(g).flatten(), (u @ vh).flatten(), dim=0)
    assert cos > 0.95


def test_muon_rejects_vectors_and_moves_weights():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.ones(3))])
    w = torch.nn.Parameter(torch.randn(8, 4))
    opt = Muon([w], lr=0.1)
    before = w.detach().clone()
    (w ** 2).sum().backward()
    opt.step()
    step = (w - before) / -0.1
    # the step is the (rescaled) orthogonalised gradient: its singular values are all near sqrt(8/4)
    sv = torch.linalg.svdvals(step)
    assert torch.all((sv > 0.6 * 2 ** 0.5) & (sv < 1.25 * 2 ** 0.5))


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    model = build_model(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=20, tie_embeddings=False))
    opt = build_optimizer(model, OptimizerConfig(name="muon", lr=1e-3, muon_lr=0.02), torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in opt.optimizers["muon"].param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in opt.optimizers["adamw"].param_groups for p in g["params"]}
    assert muon and all(".h." in n and n.endswith("weight") for n in muon)
    assert any("wte" in n for n in adamw) and any("lm_head" in n for n in adamw) and not muon & adamw
    assert muon | adamw == set(names.values())
    assert [g["lr_scale"] for g in opt.optimizers["muon"].param_groups] == [20.0]


def test_training_with_muon_learns_and_resumes_exactly(tiny_config, tmp_path):
    common = ["optimizer.name=muon", "schedule.decay_steps=20", "sample.num_samples=0"]
    whole = train(tiny_config(*common), tmp_path / "whole", progress=False)
    train(tiny_config(*common, "train.max_steps=10"), tmp_path / "half", progress=False)
    from lmforge.config import load_config

    resumed = train(load_config(tmp_path / "half/config.yaml", ["train.max_steps=20"]), tmp_path / "half",
                    resume=True, progress=False)
    assert whole.val_loss == resumed.val_loss < 3.0


def _muon_one_matrix_at_a_time(params, lr, momentum, weight_decay, steps):
    """Muon as first written: each matrix on its own (the reference for the batched step)."""
    for p in params:
        buf = p.ref_buf = getattr(p, "ref_buf", torch.zeros_like(p)).mul_(momentum).add_(p.grad)
        update = orthogonalize(p.grad.add(buf, alpha=momentum), steps)
        update *= max(1.0, p.size(0) / p.size(1)) ** 0.5
        p.data.mul_(1 - lr * weight_decay).add_(update, alpha=-lr)


def test_batched_orthogonalisation_equals_one_matrix_at_a_time():
    gen = torch.Generator().manual_seed(0)
    stack = torch.randn(4, 24, 40, generator=gen)
    together = orthogonalize(stack)
    alone = torch.stack([orthogonalize(m) for m in stack])
    assert torch.allclose(together, alone, atol=1e-5)
    tall = torch.randn(3, 40, 24, generator=gen)
    assert torch.allclose(orthogonalize(tall), torch.stack([orthogonalize(m) for m in tall]), atol=1e-5)


def test_a_muon_step_over_shape_groups_is_the_per_matrix_step():
    """Three steps over matrices of three shapes (two of them shared), with weight decay: the batched step
    moves every weight as the one-matrix-at-a-time Muon does, to float tolerance."""
    gen = torch.Generator().manual_seed(1)
    shapes = [(16, 32), (16, 32), (32, 16), (24, 24), (32, 16)]
    ours = [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = Muon(ours, lr=0.05, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        grads = [torch.randn(*s, generator=gen) for s in shapes]
        for p, r, g in zip(ours, ref, grads):
            p.grad, r.grad = g.clone(), g.clone()
        opt.step()
        with torch.no_grad():
            _muon_one_matrix_at_a_time(ref, 0.05, 0.9, 0.1, 5)
    for p, r in zip(ours, ref):
        assert torch.allclose(p, r, atol=1e-5), (p - r).abs().max()


@pytest.mark.parametrize("shape", [(4, 384, 128), (3, 128, 512), (2, 96, 96)])
def test_a_bfloat16_iteration_keeps_the_update(shape):
    """modded-nanogpt's bf16 Newton-Schulz: each update within cosine 0.99 of the float32 one."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    exact, fast = orthogonalize(g), orthogonalize(g, dtype=torch.bfloat16)
    assert fast.dtype == torch.float32
    cos = torch.nn.functional.cosine_similarity(exact.flatten(1), fast.flatten(1), dim=1)
    assert (cos >= 0.99).all(), cos


def test_muon_precision_picks_the_iterations_dtype():
    from lmforge.train.distributed import fast_bf16_matmul

    model = build_model(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20))
    def chosen(precision, bf16_compute=False):
        cfg = OptimizerConfig(name="muon", muon_precision=precision)
        return build_optimizer(model, cfg, torch.device("cpu"), bf16_compute).optimizers["muon"].ns_dtype

    assert chosen("float32", True) == torch.float32 and chosen("bfloat16") == torch.bfloat16
    assert chosen("auto") == torch.float32  # float32 training keeps float32 updates, and exact accumulation
    assert chosen("auto", True) == (torch.bfloat16 if fast_bf16_matmul(torch.device("cpu")) else torch.float32)
