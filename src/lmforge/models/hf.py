"""Our GPT as a HF `GPT2LMHeadModel`: the config and the weight mapping, for `lmforge export`.

Parameter names already follow GPT-2's (as nanoGPT's do); two things differ. HF's GPT-2 uses `Conv1D`
layers, which store weights as (in, out), the transpose of `nn.Linear`'s. And GPT-2 always has biases, so a
model trained with `bias: false` gets zero biases, which compute exactly the same function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lmforge.config import GPTConfig
from lmforge.errors import ConfigError

if TYPE_CHECKING:
    from transformers import GPT2Config

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def check_gpt2_compatible(cfg: GPTConfig) -> None:
    """GPT-2 has learned positions, LayerNorm and a GELU MLP, and neither QK-norm nor logit soft-capping; other
    options have no GPT-2 equivalent."""
    if not isinstance(cfg, GPTConfig):  # other families lack the fields checked below
        raise ConfigError(f"cannot export as GPT-2: model.arch={cfg.arch} (GPT-2 needs arch gpt)")
    wrong = [f"model.{name}={value}" for name, value, want in
             (("pos", cfg.pos, "learned"), ("norm", cfg.norm, "layernorm"), ("mlp", cfg.mlp, "gelu"),
              ("qk_norm", cfg.qk_norm, False), ("logit_softcap", cfg.logit_softcap, None))
             if value != want]
    if wrong:
        raise ConfigError(f"cannot export as GPT-2: {', '.join(wrong)} (GPT-2 needs arch gpt, pos learned, norm "
                          f"layernorm, mlp gelu, no qk_norm, no logit_softcap)")


def gpt2_config(cfg: GPTConfig, eod_id: int | None = None) -> GPT2Config:
    """The `transformers.GPT2Config` with our model's shape (transformers is imported only here); `eod_id`,
    our tokenizer's <|endoftext|>, is its bos and eos id (GPT2Config's default, 50256, is GPT-2's own)."""
    from transformers import GPT2Config

    check_gpt2_compatible(cfg)
    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=int(cfg.mlp_ratio * cfg.n_embd),
        activation_function="gelu",  # exact erf GELU, as our MLP; GPT-2's default "gelu_new" is the tanh form
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        layer_norm_epsilon=1e-5, tie_word_embeddings=cfg.tie_embeddings, bos_token_id=eod_id, eos_token_id=eod_id,
    )


def gpt_state_dict_to_hf(sd: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Our GPT's state_dict -> one that `GPT2LMHeadModel(gpt2_config(cfg)).load_state_dict` accepts strictly."""
    check_gpt2_compatible(cfg)
    hf: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        hf[key] = value.t().contiguous() if key.endswith(_CONV1D) else value
        # every linear and LayerNorm weight inside the blocks and ln_f has a bias in GPT-2
        if key.startswith(("transformer.h.", "transformer.ln_f.")) and key.endswith(".weight"):
            bias = key.removesuffix("weight") + "bias"
            if bias not in sd:
                hf[bias] = value.new_zeros(value.shape[0])
    return hf
