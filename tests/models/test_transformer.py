import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.config import GPTConfig
from lmforge.errors import ConfigError
from lmforge.models import build_model
from lmforge.models.hf import gpt2_config, gpt_state_dict_to_hf
from lmforge.models.transformer import GPT, apply_rotary, rotary_tables, swiglu_hidden

BABY = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, bias=False, tie_embeddings=True)


def tiny(**overrides) -> GPTConfig:
    return GPTConfig(**{**dict(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=23), **overrides})


def lm_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits, _ = model(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def test_baby_gpt_has_nanogpts_parameter_count():
    model = build_model(GPTConfig(**BABY))
    C, L, V, T = 128, 4, 65, 64
    # per block: ln_1 + c_attn + c_proj + ln_2 + c_fc + c_proj, no biases; then wte (= lm_head) and ln_f
    per_block = C + C * 3 * C + C * C + C + C * 4 * C + 4 * C * C
    assert model.num_params(exclude_embeddings=True) == L * per_block + V * C + C == 795_904
    assert f"{model.num_params() / 1e6:.2f}M" == "0.80M"  # as nanoGPT prints it
    assert model.num_params(exclude_embeddings=False) == 795_904 + T * C  # plus wpe
    # nanoGPT's estimate_mfu: 6N + 12 L H Q T
    assert model.flops_per_token() == 6 * 795_904 + 12 * 4 * 4 * 32 * 64


def test_num_params_excludes_lookup_only_tables():
    untied = GPT(tiny(tie_embeddings=False, pos="rotary"))
    total = sum(p.numel() for p in untied.parameters())
    assert untied.num_params(exclude_embeddings=True) == total - 23 * 16  # wte only; rotary has no wpe
    tied = GPT(tiny(pos="rotary"))
    assert tied.num_params(exclude_embeddings=True) == tied.num_params(exclude_embeddings=False)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(tiny(n_embd=32, block_size=16))
    tokens = torch.randint(0, 23, (4, 17))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = lm_loss(model, tokens).item()
    for _ in range(60):
        loss = lm_loss(model, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert first > 3.0  # about ln(23) at init
    assert loss.item() < 0.1


OPTIONS = list(itertools.product(["layernorm", "rmsnorm"], ["learned", "rotary"], ["gelu", "relu2", "swiglu"],
                                 [False, True], [False, True]))


@pytest.mark.parametrize("norm,pos,mlp,bias,tie", OPTIONS)
def test_every_option_combination_trains_and_is_causal(norm, pos, mlp, bias, tie):
    torch.manual_seed(0)
    model = GPT(tiny(norm=norm, pos=pos, mlp=mlp, bias=bias, tie_embeddings=tie, n_layer=1))
    tokens = torch.randint(0, 23, (2, 13))
    loss = lm_loss(model, tokens)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert (model.transformer.wte.weight is model.lm_head.weight) == tie

    x = tokens[:, :12]
    changed = x.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 23
    with torch.no_grad():
        before, _ = model(x)
        after, _ = model(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 7], after[:, 7])


def test_rotary_scores_depend_only_on_relative_position():
    cos, sin = rotary_tables(head_size=8, block_size=32, base=10000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> torch.Tensor:
        return apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n])

    torch.testing.assert_close(score(5, 2), score(25, 22))
    assert not torch.allclose(score(5, 2), score(5, 3))
    assert "rope_cos" not in GPT(tiny(pos="rotary")).state_dict()  # derived from the config, not saved


def test_dropout_only_while_training():
    torch.manual_seed(0)
    model = GPT(tiny(dropout=0.3))
    x = torch.randint(0, 23, (2, 12))
    model.train()
    a, _ = model(x)
    b, _ = model(x)
    assert not torch.allclose(a, b)
    model.eval()
    c, _ = model(x)
    d, _ = model(x)
    torch.testing.assert_close(c, d)


def test_init_stds_and_decay_convention():
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=6, n_head=4, n_embd=256, block_size=64, vocab_size=500, bias=True, init_std=0.05,
                      tie_embeddings=False)
    model = GPT(cfg)
    resid = 0.05 / math.sqrt(2 * 6)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            want = resid if name.endswith("c_proj.weight") else 0.05
            assert abs(p.std().item() - want) / want < 0.05, name
            assert abs(p.mean().item()) < want / 10, name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name
        else:  # norm gains: 1-D, so the optimizer's `p.dim() >= 2` rule keeps them out of weight decay
            assert ".ln_" in name and torch.all(p == 1), name


def test_same_seed_same_init():
    torch.manual_seed(3)
    a = GPT(tiny()).state_dict()
    torch.manual_seed(3)
    b = GPT(tiny()).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_swiglu_keeps_the_mlp_parameter_budget():
    cfg = tiny(n_embd=128, n_head=4, mlp="swiglu")
    assert swiglu_hidden(cfg) == 344  # int(2/3 * 4 * 128) = 341, rounded up to a multiple of 8
    gelu_mlp = sum(p.numel() for p in GPT(tiny(n_embd=128, n_head=4)).transformer.h[0].mlp.parameters())
    swiglu_mlp = sum(p.numel() for p in GPT(cfg).transformer.h[0].mlp.parameters())
    assert abs(swiglu_mlp - gelu_mlp) / gelu_mlp < 0.01


def test_errors():
    with pytest.raises(ConfigError, match="vocab_size"):
        GPT(GPTConfig())
    with pytest.raises(ValueError, match="block_size 12"):
        GPT(tiny())(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"model.arch: unknown architecture 'nope' \(known: gpt"):
        build_model(tiny().model_copy(update={"arch": "nope"}))


@pytest.mark.parametrize("bias,tie,mlp_ratio", [(True, True, 4.0), (False, True, 4.0), (True, False, 2.5)])
def test_matches_hf_gpt2(bias, tie, mlp_ratio):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = tiny(n_layer=3, n_head=4, n_embd=32, block_size=16, vocab_size=50, bias=bias, tie_embeddings=tie,
               mlp_ratio=mlp_ratio)
    ours = GPT(cfg).eval()
    if bias:  # zero-initialised biases would not show a mapping mistake
        with torch.no_grad():
            for name, p in ours.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.1)
    hf = GPT2LMHeadModel(gpt2_config(cfg)).eval()
    hf.load_state_dict(gpt_state_dict_to_hf(ours.state_dict(), cfg), strict=True)
    tokens = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        want = hf(tokens).logits
        got, _ = ours(tokens)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_hf_export_refuses_options_gpt2_lacks():
    with pytest.raises(ConfigError, match="model.pos=rotary"):
        gpt_state_dict_to_hf({}, tiny(pos="rotary"))


def test_qk_norm_zero_init_and_softcap():
    cfg = tiny(qk_norm=True, zero_init_proj=True, logit_softcap=2.0, init_std=1.0)
    model = GPT(cfg)
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if n.endswith("c_proj.weight"))
    tokens = torch.randint(0, cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    logits, _ = model(tokens)
    assert logits.abs().max() < 2.0
    # with zero projections every block is the identity: logits come from the embedding alone
    plain = GPT(tiny(zero_init_proj=True, init_std=1.0))
    plain.load_state_dict(model.state_dict())
    x = plain.transformer.ln_f(plain.transformer.wte(tokens) + plain.transformer.wpe(torch.arange(12)))
    torch.testing.assert_close(plain(tokens)[0], plain.lm_head(x))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
    loss.backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad is not None


def test_cpu_autocast_attends_in_float32(monkeypatch):
    # the CPU's bf16 attention kernels are slower than its fp32 ones, so under CPU autocast the matrix products
    # run in bf16 and attention alone in fp32; the result is the fp32 model's to bf16 precision
    torch.manual_seed(0)
    model = build_model(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50))
    x = torch.randint(0, 50, (3, 16))
    exact, _ = model(x)
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype, torch.is_autocast_enabled("cpu")))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, _ = model(x)
    assert fast.dtype == torch.bfloat16  # the head's matrix product did run in bf16
    assert seen == [(torch.float32, torch.float32, torch.float32, False)] * 2
    assert torch.allclose(fast.float(), exact, atol=0.05)
    seen.clear()
    model(x)  # without autocast nothing is cast
    assert seen == [(torch.float32, torch.float32, torch.float32, False)] * 2
