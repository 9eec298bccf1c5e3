"""A decoder-only transformer (GPT) in the shape of nanoGPT's model.py, with a few modern options.

The default options (learned positions, LayerNorm, GELU MLP, tied embeddings) give exactly nanoGPT's model,
and with biases on it has the structure of HF `GPT2LMHeadModel` (see models/hf.py). The options follow
modded-nanogpt and Llama: RMSNorm, rotary position embeddings, squared-ReLU or SwiGLU MLPs, an untied head.

The model implements `models/base.py`'s interface: `forward(tokens[B, T], state=None) -> (logits, None)` (a GPT
has no state across windows), `features` (the blocks and final norm, the head left out), `layer_groups`.
`SelfAttention` and `Block` are shared with the bidirectional encoder (models/encoder.py): `causal=False` lets
every token see the whole window, with a padding mask instead of the causal one.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.config import EncoderConfig, GPTConfig
from lmforge.errors import ConfigError
from lmforge.models.base import LanguageModel, init_normal, top_group


def make_norm(cfg: GPTConfig | EncoderConfig) -> nn.Module:
    # eps 1e-5 is nanoGPT's and HF GPT-2's LayerNorm default; RMSNorm has no bias to switch off.
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=1e-5)
    return nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)


def rotary_tables(head_size: int, block_size: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position times each frequency, shape (block_size, head_size).

    The frequencies are repeated for both halves of the head, matching `rotate_half` below (the GPT-NeoX /
    HF Llama layout: dimension i is paired with i + head_size/2, not with its neighbour).
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size))
    angles = torch.outer(torch.arange(block_size, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Cast the tables to x's dtype so that q and k stay bf16 under autocast, as SDPA wants them alike.
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head attention over the window: causal (each token sees the tokens before it) or bidirectional."""

    def __init__(self, cfg: GPTConfig | EncoderConfig, causal: bool) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.causal = causal
        self.qk_norm = getattr(cfg, "qk_norm", False)  # a GPT option; the encoder has none
        # q, k and v for all heads in one matmul
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """`keep` (B, 1, 1, T): True where a key is a real token, so padding is never attended to."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.qk_norm:  # bounds the attention logits, which lets higher learning rates stay stable
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        # is_causal lets SDPA pick a fused kernel without building a (T, T) mask.
        dropout = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # bf16 attention on the CPU runs 2-5x slower than fp32 attention (torch 2.13), which would undo what
            # the bf16 matrix products gain, so under CPU autocast attention alone computes in fp32
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keep,
                                                   dropout_p=dropout, is_causal=self.causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=dropout, is_causal=self.causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


def swiglu_hidden(cfg: GPTConfig) -> int:
    """SwiGLU has three matrices instead of two, so each branch is 2/3 as wide to keep the parameter count
    of a `mlp_ratio` GELU MLP (Shazeer 2020, Llama); rounded up to a multiple of 8 for matmul-friendly shapes."""
    hidden = int(2 / 3 * cfg.mlp_ratio * cfg.n_embd)
    return 8 * math.ceil(hidden / 8)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig | EncoderConfig) -> None:
        super().__init__()
        self.kind = cfg.mlp
        if cfg.mlp == "swiglu":
            hidden = swiglu_hidden(cfg)
            fc_out = 2 * hidden  # gate and value branches in one matmul, split in forward
        else:
            hidden = int(cfg.mlp_ratio * cfg.n_embd)
            fc_out = hidden
        self.c_fc = nn.Linear(cfg.n_embd, fc_out, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.kind == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h)  # exact erf GELU, as nanoGPT's nn.GELU (GPT-2 itself used the tanh approximation)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig | EncoderConfig, causal: bool = True) -> None:
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = SelfAttention(cfg, causal)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        # pre-norm: the residual stream itself is never normalised, only what each branch reads
        x = x + self.attn(self.ln_1(x), rope, keep)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(LanguageModel):
    lora_targets = ("c_attn",)  # the fused query/key/value projection
    bf16_on_cpu = True  # 0.74-0.86x the fp32 step time at the same validation loss (docs/BENCHMARKS.md)

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ConfigError("model.vocab_size: not set (it is normally taken from the tokenizer)")
        self.config = cfg
        # Modules are created in nanoGPT's order (wte, wpe, drop, h, ln_f, lm_head) so that the same seed draws
        # the same initial weights.
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(cfg.vocab_size, cfg.n_embd)))
        if cfg.pos == "learned":
            self.transformer["wpe"] = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.transformer["drop"] = nn.Dropout(cfg.dropout)
        self.transformer["h"] = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.transformer["ln_f"] = make_norm(cfg)
        if cfg.pos == "rotary":
            # Derived from the config, so not saved in checkpoints (persistent=False).
            cos, sin = rotary_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            # One matrix both embeds tokens and scores them (Press & Wolf 2017); nanoGPT and GPT-2 do this.
            self.transformer.wte.weight = self.lm_head.weight

        self.apply(init_normal(cfg.init_std))
        # GPT-2: scale the init of the projections that write into the residual stream by 1/sqrt(2 * n_layer),
        # since each of the 2 * n_layer branches adds its output to the same stream.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                if cfg.zero_init_proj:  # modded-nanogpt: each block starts as the identity map
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    @property
    def feature_size(self) -> int:
        return self.config.n_embd

    @property
    def max_positions(self) -> int:
        return self.config.block_size

    def blocks(self) -> list[nn.Module]:
        return list(self.transformer.h)

    def num_params(self, exclude_embeddings: bool = True) -> int:
        """Parameter count. With exclude_embeddings, the lookup-only tables are left out, as nanoGPT reports:
        the position embedding, and the token embedding only when untied (tied, it is also the output head)."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied matrix once
        if exclude_embeddings:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward and backward) at full context, as nanoGPT's estimate_mfu:
        6N for the matmuls with the weights, plus 12·L·H·Q·T for attention scores and their use
        (PaLM paper, appendix B). Divide tokens/s × this by the peak FLOP/s to get MFU."""
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        return 6 * self.num_params(exclude_embeddings=True) + 12 * L * H * Q * T

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings, blocks and the final norm. `mask` is not needed: causal attention never reads the
        right padding of a shorter row."""
        B, T = tokens.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than the model's block_size {self.config.block_size}")
        x = self.transformer.wte(tokens)  # (B, T, n_embd)
        rope = None
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(torch.arange(T, device=tokens.device))
        else:
            rope = (self.rope_cos[:T], self.rope_sin[:T])
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = self.block(block, x, rope)
        return self.transformer.ln_f(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(features)
        if self.config.logit_softcap is not None:  # Gemma 2 / modded-nanogpt: no logit can run away
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return logits

    def forward(self, tokens: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        return self.logits(self.features(tokens)), None

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embeddings, block 0, ..., last block + final norm + untied head]."""
        return transformer_groups(self)


def transformer_groups(model: GPT | nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups of a model with the GPT's module names (the GPT and the encoder)."""
    t = model.transformer
    bottom = [p for name in ("wte", "wpe") if name in t for p in t[name].parameters()]
    layers = [list(block.parameters()) for block in t.h]
    layers[-1] += top_group(bottom, [*t.ln_f.parameters(), *model.lm_head.parameters()])
    return [bottom, *layers]
