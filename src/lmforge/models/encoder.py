"""A bidirectional Transformer encoder (BERT-style), pretrained with the masked-LM objective.

The blocks are the GPT's (models/transformer.py: pre-norm, the same attention and MLP) with attention that sees
the whole window instead of only the past (`causal=False`), and an optional padding mask so texts of different
lengths share a batch. The head is tied to the token embedding. It implements `models/base.py`'s interface
with `objective = "masked"`: the trainer and evaluator then feed it windows masked by `data/masking.py`
(BERT's recipe) and score only the masked tokens; it does not generate.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lmforge.config import EncoderConfig
from lmforge.errors import ConfigError
from lmforge.models.base import LanguageModel, init_normal
from lmforge.models.transformer import Block, make_norm, transformer_groups


class Encoder(LanguageModel):
    objective = "masked"
    lora_targets = ("c_attn",)

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ConfigError("model.vocab_size: not set (it is normally taken from the tokenizer)")
        self.config = cfg
        # the GPT's module names, so that fine-tuning finds the layers the same way
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd), wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout), h=nn.ModuleList([Block(cfg, causal=False) for _ in range(cfg.n_layer)]),
            ln_f=make_norm(cfg)))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(init_normal(cfg.init_std))

    @property
    def feature_size(self) -> int:
        return self.config.n_embd

    @property
    def max_positions(self) -> int:
        return self.config.block_size

    def blocks(self) -> list[nn.Module]:
        return list(self.transformer.h)

    def num_params(self, exclude_embeddings: bool = True) -> int:
        """Parameter count; with exclude_embeddings, without the position table (the tied token embedding is
        also the head)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if exclude_embeddings else n

    def flops_per_token(self) -> int:
        """6N for the weights plus 12·L·H·Q·T for attention, as the GPT's estimate (attention both ways costs the
        same as causal attention computed in full)."""
        cfg = self.config
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token features (B, T, n_embd); `mask` (B, T) is 1 for real tokens and 0 for padding."""
        B, T = tokens.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than the model's block_size {self.config.block_size}")
        t = self.transformer
        x = t.drop(t.wte(tokens) + t.wpe(torch.arange(T, device=tokens.device)))
        keep = mask.bool()[:, None, None, :] if mask is not None else None
        for block in t.h:
            x = self.block(block, x, keep=keep)
        return t.ln_f(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.lm_head(features)

    def forward(self, tokens: torch.Tensor, state: None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        return self.logits(self.features(tokens, mask)), None

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return transformer_groups(self)
