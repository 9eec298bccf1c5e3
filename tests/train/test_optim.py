import torch

from lmforge.config import GPTConfig, OptimizerConfig
from lmforge.models import build_model
from lmforge.train.optim import build_optimizer


def test_weights_decay_and_biases_norms_do_not():
    model = build_model(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11, bias=True))
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.1), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert any("ln" in names[id(p)] for p in no_decay["params"]) and any("bias" in names[id(p)] for p in no_decay["params"])
    # tied embedding counted once
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert opt.defaults["fused"] is True and isinstance(opt, torch.optim.AdamW)


def test_sgd_with_momentum():
    model = torch.nn.Linear(4, 2)
    opt = build_optimizer(model, OptimizerConfig(name="sgd", lr=0.5, momentum=0.9, weight_decay=0.0),
                          torch.device("cpu"))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    before = model.weight.detach().clone()
    model(torch.ones(1, 4)).sum().backward()
    grad = model.weight.grad.clone()
    opt.step()
    torch.testing.assert_close(model.weight, before - 0.5 * grad)


def test_muon_takes_a_blocks_mlp_as_wide_as_the_vocabulary_and_leaves_the_head():
    from lmforge.config import load_config
    from lmforge.models import build_model
    from lmforge.train.optim import hidden_matrices

    # c_fc is 4 x 16 = 64 wide, as the 64-token vocabulary: inside a block it is a hidden matrix all the same
    model = build_model(load_config(None, ["model.n_layer=2", "model.n_head=2", "model.n_embd=16",
                                           "model.block_size=8", "model.vocab_size=64",
                                           "model.tie_embeddings=false"]).model)
    taken = {id(p) for p in hidden_matrices(model)}
    names = {name for name, p in model.named_parameters() if id(p) in taken}
    assert {f"transformer.h.{i}.mlp.c_fc.weight" for i in range(2)} <= names
    assert "lm_head.weight" not in names and "transformer.wte.weight" not in names
