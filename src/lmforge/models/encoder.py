"""A bidirectional Transformer encoder (BERT-style) and its masked-LM objective.

The blocks are the GPT's (models/transformer.py: pre-norm, the same MLP options) with attention that sees
the whole window instead of only the past, and an optional padding mask so texts of different lengths share
a batch. The head is tied to the token embedding. `forward(tokens, state=None, mask=None) -> (logits, None)`
keeps the interface every family has, so the trainer, evaluator and fine-tuning backbones take it as they
are; what differs is the objective, which `MaskedLM` supplies:

BERT (Devlin et al. 2018): each token (end-of-document and <mask> tokens excepted) is chosen with
probability `mask_prob`; of the chosen, `mask_token_frac` become <mask>, `random_token_frac` a uniformly drawn
token, and the rest stay as they were. The labels are the chosen tokens' ids and -100 (ignored by
cross-entropy) everywhere else. Its generator is part of the training state, so a resumed run masks exactly
as an uninterrupted one would.
"""

from __future__ import annotations

import base64

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.config import EncoderConfig
from lmforge.errors import ConfigError
from lmforge.models.transformer import MLP, make_norm

IGNORE = -100  # cross_entropy's default ignore_index


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        # keep: (B, 1, 1, T), True where a key is a real token; padding is never attended to
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = SelfAttention(cfg)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), keep)
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ConfigError("model.vocab_size: not set (it is normally taken from the tokenizer)")
        self.config = cfg
        # the GPT's module names, so that fine-tuning finds the layers the same way
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd), wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout), h=nn.ModuleList([EncoderBlock(cfg) for _ in range(cfg.n_layer)]),
            ln_f=make_norm(cfg)))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token features (B, T, n_embd); `mask` (B, T) is 1 for real tokens and 0 for padding."""
        B, T = tokens.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than the model's block_size {self.config.block_size}")
        t = self.transformer
        x = t.drop(t.wte(tokens) + t.wpe(torch.arange(T, device=tokens.device)))
        keep = mask.bool()[:, None, None, :] if mask is not None else None
        for block in t.h:
            x = block(x, keep)
        return t.ln_f(x)

    def forward(self, tokens: torch.Tensor, state: None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        return self.lm_head(self.features(tokens, mask)), None


def is_masked_lm(cfg) -> bool:
    """Whether the family is trained with the masked-LM objective instead of next-token prediction."""
    return cfg.arch == "encoder"


class MaskedLM:
    """BERT's masking of a batch of token windows (see the module doc), from its own seeded generator."""

    def __init__(self, cfg: EncoderConfig, mask_id: int | None, vocab_size: int, never: list[int], seed: int):
        if mask_id is None:
            raise ConfigError("model.arch=encoder: the tokenizer has no <mask> token (tokenizer.mask_token=true adds "
                              "it; a tokenizer.path file must already hold it)")
        self.cfg, self.mask_id, self.vocab_size = cfg, mask_id, vocab_size
        self.never = torch.tensor(sorted({mask_id, *never}), dtype=torch.long)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) for the windows x (B, T) on the CPU."""
        cfg, g = self.cfg, self.generator
        chosen = (torch.rand(x.shape, generator=g) < cfg.mask_prob) & ~torch.isin(x, self.never)
        if not chosen.any():  # a loss over no tokens would be 0/0
            allowed = (~torch.isin(x, self.never)).flatten().nonzero().flatten()
            if len(allowed):
                pick = allowed[torch.randint(len(allowed), (1,), generator=g)]
                chosen.view(-1)[pick] = True
        labels = torch.where(chosen, x, torch.full_like(x, IGNORE))
        how = torch.rand(x.shape, generator=g)
        to_mask = chosen & (how < cfg.mask_token_frac)
        to_random = chosen & (how >= cfg.mask_token_frac) & (how < cfg.mask_token_frac + cfg.random_token_frac)
        random_ids = torch.randint(self.vocab_size, x.shape, generator=g, dtype=x.dtype)
        inputs = torch.where(to_mask, torch.full_like(x, self.mask_id), x)
        inputs = torch.where(to_random, random_ids, inputs)
        return inputs, labels

    def rows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As calling it, one row at a time: the masks of a window then do not depend on how windows are
        batched, so evaluations with different batch sizes score the same masked tokens."""
        pairs = [self(row[None]) for row in x]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def state_dict(self) -> dict:
        return {"generator": base64.b64encode(self.generator.get_state().numpy().tobytes()).decode()}

    def load_state_dict(self, state: dict) -> None:
        raw = np.frombuffer(base64.b64decode(state["generator"]), dtype=np.uint8).copy()
        self.generator.set_state(torch.from_numpy(raw))


class MaskedWindows:
    """A window loader whose batches come out masked: (inputs, labels) instead of (x, x shifted by one)."""

    def __init__(self, loader, masker: MaskedLM):
        self.loader, self.masker = loader, masker

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.loader.next_batch()
        return self.masker(x)

    def state_dict(self) -> dict:
        return {"loader": self.loader.state_dict(), "masker": self.masker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state["loader"])
        self.masker.load_state_dict(state["masker"])
