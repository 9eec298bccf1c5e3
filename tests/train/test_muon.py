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
