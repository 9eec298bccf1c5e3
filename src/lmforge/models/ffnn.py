"""A feed-forward neural language model (Bengio, Ducharme, Vincent & Jauvin 2003).

Each prediction reads a fixed window of the `context` previous tokens: their embeddings are concatenated,
passed through `n_hidden` tanh or ReLU layers and scored against the vocabulary. With `direct`, the
concatenated embeddings also feed the output straight (Bengio's W), so y = b + Wx + U·act(d + Hx).

The model implements `models/base.py`'s interface: `forward(tokens[B, T], state=None) -> (logits, None)`.
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
from lmforge.models.base import LanguageModel, top_group


class FFNN(LanguageModel):
    feature_note = "a feed-forward n-gram LM has no per-token features over a whole text; use a gpt, rnn, lstm or gru run"

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

    @property
    def feature_size(self) -> int:
        return self.config.hidden_size

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embedding and padding, hidden layer 0, ..., last hidden layer + output layers]."""
        bottom = [self.pad, *self.wte.parameters()]
        layers = [list(layer.parameters()) for layer in self.hidden]
        out = [*self.lm_head.parameters(), *(self.direct.parameters() if self.direct is not None else [])]
        layers[-1] += top_group(bottom, out)
        return [bottom, *layers]

    def windows(self, tokens: torch.Tensor) -> torch.Tensor:
        """The concatenated embeddings of each position's context window, (B, T, context * n_embd), dropped."""
        B, T = tokens.size()
        c = self.config.context
        x = self.wte(tokens)  # (B, T, n_embd)
        x = torch.cat((self.pad.expand(B, c - 1, -1), x), dim=1)  # (B, c-1+T, n_embd)
        # Window t is padded positions t..t+c-1, i.e. tokens t-c+1..t, oldest first. unfold makes all T windows
        # as a view (B, T, n_embd, c); moving the context axis before the embedding axis and flattening
        # concatenates the c embeddings of each window in time order.
        x = x.unfold(1, c, 1).transpose(2, 3).reshape(B, T, c * self.config.n_embd)
        return self.drop(x)

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden layer at each position (each has read only its context window)."""
        return self.hidden_states(self.windows(tokens))

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.hidden:
            h = self.drop(self.act(layer(h)))
        return h

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The output layer on the hidden states; without Bengio's direct connections, which read the windows."""
        return self.lm_head(features)

    def forward(self, tokens: torch.Tensor, state: None = None) -> tuple[torch.Tensor, None]:
        x = self.windows(tokens)
        logits = self.logits(self.hidden_states(x))
        if self.direct is not None:
            logits = logits + self.direct(x)
        return logits, None
