"""Model families behind one interface: `forward(tokens[B, T], state=None) -> (logits[B, T, V], state)`.

`build_model` picks the family named by `model.arch`; each family is a constructor taking the ModelConfig.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.encoder import Encoder
from lmforge.models.ffnn import FFNN
from lmforge.models.rnn import recurrent_lm
from lmforge.models.transformer import GPT

ARCHITECTURES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "gpt": GPT,
    "ffnn": FFNN,
    "rnn": recurrent_lm,
    "lstm": recurrent_lm,
    "gru": recurrent_lm,
    "encoder": Encoder,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised model for `cfg` (its vocab_size must be filled in)."""
    try:
        make = ARCHITECTURES[cfg.arch]
    except KeyError:
        raise ConfigError(f"model.arch: unknown architecture {cfg.arch!r} (known: {', '.join(ARCHITECTURES)})") from None
    return make(cfg)


def is_recurrent(cfg) -> bool:
    """Whether the family carries state from one window to the next (trained and evaluated as streams)."""
    return cfg.arch in ("rnn", "lstm", "gru")
