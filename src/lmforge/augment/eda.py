"""EDA (Wei & Zou 2019): synonym replacement, random insertion, random swap and random deletion of words.

Each copy draws one operation and applies it to n = max(1, round(alpha * words)) words. Synonyms come from
WordNet (NLTK's reader, $NLTK_DATA or nltk's folders); stop words are never replaced. Without WordNet the two
operations that need it are left out, and the method says so in a warning, never silently. Punctuation
tokens are neither replaced, swapped nor deleted, so a sentence keeps its shape.
"""

from __future__ import annotations

import random
from collections import Counter

from lmforge.augment.words import Words, has_letter, is_alpha_word, match_case, rng_of
from lmforge.config import AugmentConfig, CleanConfig
from lmforge.errors import ConfigError
from lmforge.text.wordlists import find_wordnet, load_stopwords

NO_WORDNET = ("WordNet not found (set NLTK_DATA, or run nltk.download('wordnet')): eda uses {ops} only, without "
              "synonym replacement and random insertion")


class Synonyms:
    """WordNet synonyms of a word (lowercased lookup, multi-word lemmas with spaces), cached."""

    def __init__(self, wordnet):
        self.wordnet = wordnet
        self._cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, word: str) -> tuple[str, ...]:
        key = word.lower()
        if key not in self._cache:
            found: dict[str, None] = {}
            for synset in self.wordnet.synsets(key):
                for lemma in synset.lemma_names():
                    name = lemma.replace("_", " ")
                    if name.lower() != key:
                        found[name] = None
            self._cache[key] = tuple(found)
        return self._cache[key]


class EDA:
    name = "eda"

    def __init__(self, cfg: AugmentConfig):
        self.alpha = cfg.alpha
        self.warnings: list[str] = []
        wordnet = find_wordnet() if {"synonym", "insert"} & set(cfg.eda_ops) else None
        self.synonyms = Synonyms(wordnet) if wordnet is not None else None
        ops = list(dict.fromkeys(cfg.eda_ops))
        if wordnet is None and {"synonym", "insert"} & set(ops):
            ops = [op for op in ops if op not in ("synonym", "insert")]
            if not ops:
                raise ConfigError("augment.eda_ops: synonym and insert need WordNet, which was not found (set "
                                  "NLTK_DATA, or run nltk.download('wordnet')); add swap or delete")
            self.warnings.append(NO_WORDNET.format(ops=" and ".join(ops)))
        self.ops = ops
        self.stopwords, source = load_stopwords(CleanConfig())
        self.settings = {"ops": ops, "alpha": cfg.alpha, "wordnet": wordnet is not None, "stopwords": source}

    def __call__(self, texts: list[str], seeds: list[int], copies: int, counts: Counter) -> list[list[str]]:
        out = []
        for text, seed in zip(texts, seeds):
            variants = []
            for k in range(copies):
                rng = rng_of(seed, k)
                op = rng.choice(self.ops)
                counts[f"op_{op}"] += 1
                variants.append(self.apply(op, text, rng))
            out.append(variants)
        return out

    def apply(self, op: str, text: str, rng: random.Random) -> str:
        w = Words(text)
        movable = [i for i, word in enumerate(w.words) if has_letter(word) or any(c.isdigit() for c in word)]
        n = max(1, round(self.alpha * len(movable)))
        if op == "synonym":
            candidates = [i for i in movable if is_alpha_word(w.words[i]) and w.words[i].lower() not in self.stopwords]
            rng.shuffle(candidates)
            replaced = 0
            for i in candidates:
                options = self.synonyms(w.words[i])
                if options:
                    w.words[i] = match_case(rng.choice(options), w.words[i])
                    replaced += 1
                    if replaced == n:
                        break
        elif op == "insert":
            candidates = [w.words[i] for i in movable if is_alpha_word(w.words[i])
                          and w.words[i].lower() not in self.stopwords]
            for _ in range(n):
                with_synonyms = [c for c in candidates if self.synonyms(c)]
                if not with_synonyms:
                    break
                word = rng.choice(self.synonyms(rng.choice(with_synonyms)))
                w.insert(rng.randrange(len(w.words) + 1), word.lower())
        elif op == "swap":
            if len(movable) >= 2:
                for _ in range(n):
                    i, j = rng.sample(movable, 2)
                    w.swap(i, j)
        elif op == "delete":
            if len(movable) >= 2:
                # at least one word stays
                for i in sorted(rng.sample(movable, min(n, len(movable) - 1)), reverse=True):
                    w.delete(i)
        return w.text()
