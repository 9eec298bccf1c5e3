"""Model families behind one interface (models/base.py: `LanguageModel`), and the registry that maps a config's
`model.arch` to its family. This is the only place that reads `arch`: everywhere else asks the model class its
facts (`recurrent`, `objective`, ...).
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import ConfigError
from lmforge.models.base import LanguageModel
from lmforge.models.encoder import Encoder
from lmforge.models.ffnn import FFNN
from lmforge.models.rnn import BiLM, RecurrentLM
from lmforge.models.transformer import GPT

ARCHITECTURES: dict[str, type[LanguageModel]] = {
    "gpt": GPT,
    "ffnn": FFNN,
    "rnn": RecurrentLM,
    "lstm": RecurrentLM,
    "gru": RecurrentLM,
    "encoder": Encoder,
}


def model_class(cfg: ModelConfig) -> type[LanguageModel]:
    """The class that implements `cfg`: its family's, or for a recurrent direction=both the forward/backward
    pair. Its class attributes answer questions about the model before any weights exist."""
    try:
        family = ARCHITECTURES[cfg.arch]
    except KeyError:
        raise ConfigError(f"model.arch: unknown architecture {cfg.arch!r} (known: {', '.join(ARCHITECTURES)})") from None
    return BiLM if family is RecurrentLM and cfg.direction == "both" else family


def build_model(cfg: ModelConfig) -> LanguageModel:
    """A freshly initialised model for `cfg` (its vocab_size must be filled in)."""
    return model_class(cfg)(cfg)


def family_section(family: str, current: ModelConfig) -> dict:
    """The model section for `family` as a config tree: `current` when it already is that family (a recipe's
    own settings), else the family's defaults."""
    return current.model_dump(mode="json") if current.arch == family else {"arch": family}
