"""Character noise: typos on n = max(1, round(alpha * words)) words, one per word, each drawn from
keyboard (a letter replaced by a neighbouring QWERTY key), swap (two adjacent letters), delete (a letter
dropped) and insert (a letter typed twice). The model learns to read through the misspellings users make."""

from __future__ import annotations

import random
from collections import Counter

from lmforge.augment.words import Words, has_letter, rng_of
from lmforge.config import AugmentConfig

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_STAGGER = (0.0, 0.25, 0.75)  # how far each row sits to the right of the one above, in key widths


def _neighbours() -> dict[str, str]:
    place = {key: (x + _STAGGER[y], y) for y, row in enumerate(_ROWS) for x, key in enumerate(row)}
    return {key: "".join(k for k, (x2, y2) in place.items()
                         if k != key and abs(y2 - y) <= 1 and abs(x2 - x) <= 1.0)
            for key, (x, y) in place.items()}


KEY_NEIGHBOURS = _neighbours()


def typo(word: str, op: str, rng: random.Random) -> str:
    """`word` with one typo of kind `op`; the word itself where that kind cannot change it."""
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if not letters:
        return word
    if op == "keyboard":
        keyed = [i for i in letters if word[i].lower() in KEY_NEIGHBOURS]
        if not keyed:
            return word
        i = rng.choice(keyed)
        new = rng.choice(KEY_NEIGHBOURS[word[i].lower()])
        return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1:]
    if op == "swap":
        pairs = [i for i in letters if i + 1 < len(word) and word[i + 1].isalpha() and word[i] != word[i + 1]]
        if not pairs:
            return word
        i = rng.choice(pairs)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "delete":
        if len(word) < 2:
            return word
        i = rng.choice(letters)
        return word[:i] + word[i + 1:]
    i = rng.choice(letters)  # insert: a doubled key
    return word[:i] + word[i] + word[i:]


class Noise:
    name = "noise"

    def __init__(self, cfg: AugmentConfig):
        self.alpha = cfg.alpha
        self.ops = list(dict.fromkeys(cfg.noise_ops))
        self.warnings: list[str] = []
        self.settings = {"ops": self.ops, "alpha": cfg.alpha}

    def __call__(self, texts: list[str], seeds: list[int], copies: int, counts: Counter) -> list[list[str]]:
        return [[self.apply(text, rng_of(seed, k), counts) for k in range(copies)] for text, seed in zip(texts, seeds)]

    def apply(self, text: str, rng: random.Random, counts: Counter) -> str:
        w = Words(text)
        lettered = [i for i, word in enumerate(w.words) if has_letter(word)]
        if not lettered:
            return text
        for i in rng.sample(lettered, min(len(lettered), max(1, round(self.alpha * len(lettered))))):
            # the first kind (in a random order) that changes this word
            for op in rng.sample(self.ops, len(self.ops)):
                new = typo(w.words[i], op, rng)
                if new != w.words[i]:
                    w.words[i] = new
                    counts[f"typo_{op}"] += 1
                    break
        return w.text()
