"""Task heads on a backbone's features [B, T, H], and `TaskModel`, the backbone with its head.

- `ClassificationHead`: a pooled vector per text -> one logit per label (softmax, or sigmoid for multi-label).
- `TokenHead`: one logit per tag at every token (NER).
- `SpanHead`: a start and an end logit at every token (extractive QA).
- task lm keeps the backbone's own LM head (`LmforgeBackbone.lm_logits`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import ConfigError
from lmforge.finetune.backbones import Backbone

POOLINGS = ("first", "last", "mean", "concat")


def pool(features: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """One vector per sequence from features [B, T, H] and a right-padded mask [B, T] of 1s then 0s.

    first: position 0 (BERT's [CLS]); last: the last real token (a causal model's summary); mean: the mean over
    real tokens; concat: ULMFiT's [last, max, mean] (Howard & Ruder 2018, 3.3), 3H wide."""
    m = mask.unsqueeze(-1).to(features.dtype)
    last = features[torch.arange(features.size(0), device=features.device), mask.sum(1) - 1]
    mean = (features * m).sum(1) / m.sum(1).clamp(min=1)
    if how == "first":
        return features[:, 0]
    if how == "last":
        return last
    if how == "mean":
        return mean
    top = features.masked_fill(m == 0, torch.finfo(features.dtype).min).amax(1)
    return torch.cat([last, top, mean], dim=-1)


class ClassificationHead(nn.Module):
    def __init__(self, hidden_size: int, n_labels: int, pooling: str, dropout: float) -> None:
        super().__init__()
        self.pooling = pooling
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size * (3 if pooling == "concat" else 1), n_labels)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(pool(features, mask, self.pooling)))  # [B, n_labels]


class TokenHead(nn.Module):
    def __init__(self, hidden_size: int, n_tags: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, n_tags)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(features))  # [B, T, n_tags]


class SpanHead(nn.Module):
    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, 2)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.out(self.drop(features))  # [B, T, 2]: start, end
        return logits.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(logits.dtype).min)


class TaskModel(nn.Module):
    """backbone(ids) -> features -> head. For task lm the head is the backbone's own LM head."""

    def __init__(self, backbone: Backbone, head: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, type_ids: torch.Tensor | None = None) -> torch.Tensor:
        features = self.backbone(ids, mask, type_ids)
        if self.head is None:
            return self.backbone.lm_logits(features)
        return self.head(features, mask)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Bottom to top: the backbone's groups, then the head (which, for task lm, is in the top group)."""
        groups = self.backbone.layer_groups()
        return groups if self.head is None else [*groups, list(self.head.parameters())]


def build_head(task: str, backbone: Backbone, n_labels: int, pooling: str, dropout: float) -> nn.Module | None:
    """The head for `task`, checked to fit `backbone`."""
    if task == "classify":
        if pooling == "first" and backbone.causal:
            raise ConfigError(f"finetune.pooling=first: the {backbone.kind} backbone is causal, so its first token has "
                              f"read only itself; use last, mean or concat")
        return ClassificationHead(backbone.hidden_size, n_labels, pooling, dropout)
    if task == "tag":
        return TokenHead(backbone.hidden_size, n_labels, dropout)
    if task == "qa":
        return SpanHead(backbone.hidden_size, dropout)
    if not hasattr(backbone, "lm_logits"):
        raise ConfigError(f"finetune.task=lm: the {backbone.kind} backbone has no LM head")
    return None


def task_loss(task: str, logits: torch.Tensor, target: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Mean loss of a batch. Targets of -100 (an unseen label, a word's later subwords, padding) count for
    nothing; a batch with nothing to learn gives a zero that still backpropagates."""
    logits = logits.float()
    if task == "classify" and multi_label:
        return F.binary_cross_entropy_with_logits(logits, target)
    if task == "qa":  # start and end: two classifications over the positions (BERT's SQuAD loss)
        return (F.cross_entropy(logits[..., 0], target[:, 0]) + F.cross_entropy(logits[..., 1], target[:, 1])) / 2
    if not (target != -100).any():
        return logits.sum() * 0
    if task == "classify":
        return F.cross_entropy(logits, target, ignore_index=-100)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
