"""BERT's masking of token windows for the masked-LM objective (Devlin et al. 2018), on the data side: the
trainer and evaluator feed a `objective = "masked"` model (models/encoder.py) the windows masked here.

Each token (end-of-document and <mask> tokens excepted) is chosen with probability `mask_prob`; of the chosen,
`mask_token_frac` become <mask>, `random_token_frac` a uniformly drawn token, and the rest stay as they were.
The labels are the chosen tokens' ids and -100 (ignored by cross-entropy) everywhere else. Its generator is
part of the training state, so a resumed run masks exactly as an uninterrupted one would.
"""

from __future__ import annotations

import base64

import numpy as np
import torch

from lmforge.config import EncoderConfig
from lmforge.errors import ConfigError

IGNORE = -100  # cross_entropy's default ignore_index


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

    @property
    def new_pass(self) -> bool:
        return self.loader.new_pass

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.loader.next_batch()
        return self.masker(x)

    def state_dict(self) -> dict:
        return {"loader": self.loader.state_dict(), "masker": self.masker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state["loader"])
        self.masker.load_state_dict(state["masker"])
