"""The one interface every model family implements; trainer, evaluator, generator, bake-off and fine-tuning
backbones talk to a model only through it.

- `forward(tokens[B, T], state=None) -> (logits[B, T, V], state)`: a recurrent model returns the state to feed
  the next window (truncated BPTT); every other model returns None. The trainer computes the loss.
- `features(tokens, mask=None) -> [B, T, feature_size]`: the hidden states a task head reads, i.e. the
  forward pass without the LM head; `mask` (1 = real token, 0 = right padding) lets a family that would read
  padding (a bidirectional encoder, an RNN run over whole rows) skip it.
- `logits(features)`: the LM head on such features (with a GPT's soft-cap).
- `layer_groups()`: the parameters from the bottom (embeddings) to the top layer (the last group also holds
  the final norm and the head), for gradual unfreezing, discriminative learning rates, FSDP wrapping and
  activation checkpointing.
- `aux_loss`: a regulariser the last training forward computed (AWD's AR/TAR, a backward LM's loss) that the
  trainer adds to the cross-entropy, or None; `last_losses`: per-direction losses of a forward/backward pair.
- `flops_per_token()`, `num_params()`.
- `blocks()`: the repeated layers, bottom to top, that activation checkpointing recomputes and that FSDP
  shards one by one (a recurrent model's whole layer stack is one); `[]` for a family without them. With `activation_checkpointing` set (the trainer
  sets it from `train.activation_checkpointing`), a family's forward runs each block through `self.block`,
  which keeps only the block's input for the backward pass and recomputes the rest.

Facts about a family are class attributes, so callers ask the model (or `models.model_class(cfg)`) instead of
testing `arch` strings: `recurrent` (carries state across windows), `objective` ("causal": next-token
prediction, so it generates; "masked": BERT's objective, predicting masked tokens from both sides),
`max_positions` (the longest input; None = any), `lora_targets` (the module names LoRA adapts by default),
`feature_note` (why the family has no per-token features of a whole text, when it has none) and `bf16_on_cpu`
(train.dtype=auto computes it in bf16 on a CPU whose hardware multiplies bf16: set where that was measured
faster at the same validation loss, docs/BENCHMARKS.md; a family not measured stays float32 there).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

State = Any  # None, or a tuple of batch-first tensors (models/rnn.py describes the recurrent format)


def detach_state(state: State) -> State:
    """The same state cut from the graph of the window that produced it (truncated BPTT)."""
    return None if state is None else tuple(s.detach() for s in state)


def reset_state(state: State, mask: torch.Tensor) -> State:
    """Zero the rows where mask[B] is True (their document ended), so those sequences start from a zero state."""
    return None if state is None else tuple(s.masked_fill(mask.view(-1, 1), 0.0) for s in state)


def init_normal(std: float):
    """The GPT-2 init as a `module.apply` function: linear and embedding weights ~ N(0, std), biases 0."""

    def init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    return init


class LanguageModel(nn.Module, ABC):
    """Base of every family: the facts default to a causal, stateless model; see the module doc."""

    recurrent: ClassVar[bool] = False
    objective: ClassVar[Literal["causal", "masked"]] = "causal"
    lora_targets: ClassVar[tuple[str, ...]] = ()
    feature_note: ClassVar[str | None] = None
    bf16_on_cpu: ClassVar[bool] = False
    aux_loss: torch.Tensor | None = None
    last_losses: dict[str, torch.Tensor] | None = None
    activation_checkpointing: bool = False

    detach_state = staticmethod(detach_state)
    reset_state = staticmethod(reset_state)

    @property
    def max_positions(self) -> int | None:
        return None

    @property
    @abstractmethod
    def feature_size(self) -> int:
        """Width of `features`."""

    @abstractmethod
    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token hidden states [B, T, feature_size]."""

    @abstractmethod
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The LM head: [B, T, feature_size] -> [B, T, vocab_size]."""

    def forward(self, tokens: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        return self.logits(self.features(tokens)), None

    @abstractmethod
    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters as groups from the bottom (embeddings) to the top layer; each parameter once."""

    @abstractmethod
    def num_params(self, exclude_embeddings: bool = True) -> int:
        """Parameter count; with exclude_embeddings, without the lookup-only tables."""

    def blocks(self) -> list[nn.Module]:
        return []

    def block(self, block: nn.Module, *args, **kwargs):
        """`block(*args)`; while training with activation checkpointing, recomputed in the backward pass instead
        of keeping its activations (torch.utils.checkpoint restores the RNG, so dropout draws the same masks)."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False, **kwargs)
        return block(*args, **kwargs)

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward and backward): 6 per weight that multiplies an activation."""
        return 6 * self.num_params(exclude_embeddings=True)


def top_group(bottom: list[nn.Parameter], top: list[nn.Parameter]) -> list[nn.Parameter]:
    """`top` without a tied head, which is the embedding of the bottom group already."""
    return [p for p in top if all(p is not b for b in bottom)]
