"""A feed-forward neural language model (Bengio, Ducharme, Vincent & Jauvin 2003).

Each prediction reads a fixed window of the `context` previous tokens: their embeddings are concatenated,
passed through `n_hidden` tanh or ReLU layers and scored against the vocabulary. With `direct`, the
concatenated embeddings also feed the output straight (Bengio's W), so y = b + Wx + U·act(d + Hx).

Interface shared by every model family: `forward(tokens[B, T], state=None) -> (logits[B, T, V], state)`.
Position t of the input predicts the token after it from tokens t-context+1..t, so the token it predicts is
never in its window. The model has no state across windows and returns None. Where a window reaches back
before the first input token, the missing slots hold one learned padding embedding (`pad`): the model then
knows that it is at the start of the input rather than reading a real token there. Windows are cut by
training on random spans, so the first context-1 positions of every span see padding; keep block_size well
above context so that this costs little.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lmforge.config import FFNNConfig
from lmforge.errors import ConfigError


class FFNN(nn.Module):
    def __init__(self, cfg: FFNNConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ConfigError("model.vocab_size: not set (it is normally taken from the tokenizer)")
        self.config = cfg
        window = cfg.context * cfg.n_embd  # width of the concatenated context embeddings
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pad = nn.Parameter(torch.empty(cfg.n_embd))
        self.drop = nn.Dropout(cfg.dropout)
        self.hidden = nn.ModuleList(
            [nn.Linear(window if i == 0 else cfg.hidden_size, cfg.hidden_size) for i in range(cfg.n_hidden)])
        self.act = nn.Tanh() if cfg.activation == "tanh" else nn.ReLU()
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size)  # Bengio's U and output bias b
        self.direct = nn.Linear(window, cfg.vocab_size, bias=False) if cfg.direct else None  # Bengio's W

        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, mean=0.0, std=cfg.init_std)

    def num_params(self, exclude_embeddings: bool = True) -> int:
        """Parameter count; with exclude_embeddings, without the lookup-only tables (wte and pad)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.wte.weight.numel() + self.pad.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward and backward): 6 per weight that multiplies an activation,
        which is every parameter outside the lookup tables."""
        return 6 * self.num_params(exclude_embeddings=True)

    def forward(self, tokens: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        B, T = tokens.size()
        c = self.config.context
        x = self.wte(tokens)  # (B, T, n_embd)
        x = torch.cat((self.pad.expand(B, c - 1, -1), x), dim=1)  # (B, c-1+T, n_embd)
        # Window t is padded positions t..t+c-1, i.e. tokens t-c+1..t, oldest first. unfold makes all T windows
        # as a view (B, T, n_embd, c); moving the context axis before the embedding axis and flattening
        # concatenates the c embeddings of each window in time order.
        x = x.unfold(1, c, 1).transpose(2, 3).reshape(B, T, c * self.config.n_embd)
        x = self.drop(x)
        h = x
        for layer in self.hidden:
            h = self.drop(self.act(layer(h)))
        logits = self.lm_head(h)
        if self.direct is not None:
            logits = logits + self.direct(x)
        return logits, None
