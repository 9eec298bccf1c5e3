"""Summaries as augmented copies: extractive (TextRank, lead-k; no model) or abstractive (a seq2seq model).

TextRank (Mihalcea & Tarau 2004): sentences are the nodes of a graph whose edges weigh the words two
sentences share, |Si ∩ Sj| / (log|Si| + log|Sj|); PageRank (damping 0.85) ranks them, and the best
max(1, round(summary_ratio * sentences)) are kept in their original order. Lead-k keeps the first ones. A
text of one sentence has no shorter extractive summary: its copy is unchanged, and so dropped (counted).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from lmforge.augment.seq2seq import Seq2Seq
from lmforge.augment.words import sentences
from lmforge.config import AugmentConfig

_WORD = re.compile(r"\w+")
DAMPING = 0.85


def textrank_scores(sents: list[str], iterations: int = 100, tol: float = 1e-8) -> np.ndarray:
    """PageRank over the sentence-similarity graph; a sentence sharing no word with any other keeps the
    base score (1 - d) / n."""
    bags = [set(_WORD.findall(s.lower())) for s in sents]
    n = len(sents)
    weights = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            shared = len(bags[i] & bags[j])
            if shared:
                # log(1 + size) keeps one-word sentences from dividing by log(1) = 0
                weights[i, j] = weights[j, i] = shared / (math.log1p(len(bags[i])) + math.log1p(len(bags[j])))
    out_weight = weights.sum(axis=1, keepdims=True)
    transition = np.divide(weights, out_weight, out=np.zeros_like(weights), where=out_weight > 0)
    scores = np.full(n, 1.0 / n)
    for _ in range(iterations):
        new = (1 - DAMPING) / n + DAMPING * transition.T @ scores
        if np.abs(new - scores).sum() < tol:
            return new
        scores = new
    return scores


def extractive_summary(text: str, ratio: float, how: str) -> str:
    sents = sentences(text)
    if len(sents) < 2:
        return text
    k = max(1, round(ratio * len(sents)))
    if how == "lead":
        keep = range(k)
    else:
        scores = textrank_scores(sents)
        # the highest scores, ties to the earlier sentence, then back in reading order
        keep = sorted(sorted(range(len(sents)), key=lambda i: (-scores[i], i))[:k])
    return " ".join(sents[i] for i in keep)


class Summarize:
    name = "summarize"

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg
        self.warnings: list[str] = []
        self.model = Seq2Seq(cfg.model, "model", cfg.prefix, cfg) if cfg.summary == "abstractive" else None
        self.settings = {"summary": cfg.summary}
        if self.model is not None:
            self.settings.update(model=str(self.model.folder), decoding=cfg.decoding, window=self.model.window)
        else:
            self.settings.update(summary_ratio=cfg.summary_ratio)

    def __call__(self, texts: list[str], seeds: list[int], copies: int, counts: Counter) -> list[list[str]]:
        if self.model is not None:
            return self.model.transform(texts, copies, seeds[0] if seeds else 0, self.cfg.decoding == "sample", counts)
        out = []
        for text in texts:
            if len(sentences(text)) < 2:
                counts["one_sentence"] += 1
            # extractive summaries are deterministic: copies after the first repeat it and are dropped
            out.append([extractive_summary(text, self.cfg.summary_ratio, self.cfg.summary)] * copies)
        return out
