"""Generation metrics: BLEU, chrF and chrF++ through sacrebleu, METEOR through NLTK, and the diversity of
generated text (n-gram entropy, distinct-n, self-BLEU, repetition rate).

sacrebleu is the reference implementation of BLEU and chrF: it reproduces the scores WMT published, and
its signature, printed with every score, says exactly how a number was computed. METEOR is NLTK's
implementation (Lavie & Agarwal 2007: exact, Porter-stem and WordNet-synonym matching); without WordNet
it matches exact words and stems only, and every METEOR score says which matching it used.

Scales follow the reference implementations: BLEU and chrF 0-100 (sacrebleu), METEOR 0-1 (NLTK).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

from lmforge.errors import DataError
from lmforge.text.wordlists import find_wordnet

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from sacrebleu.metrics.base import Metric

SACREBLEU_METRICS = ("bleu", "chrf", "chrf++")
NO_WORDNET = ("WordNet not found (set NLTK_DATA, or run nltk.download('wordnet')): "
              "METEOR falls back to exact + stem matching, without synonyms")

# Words (inner apostrophes and hyphens kept) and single punctuation marks: NLTK's METEOR wants
# pre-tokenized text, and its own word_tokenize needs the punkt model, which is not always installed.
_TOKEN = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


def words(text: str) -> list[str]:
    return _TOKEN.findall(text)


@dataclass
class Score:
    """A corpus-level score, how it was computed, and optionally one score per segment."""

    metric: str
    score: float
    signature: str
    summary: str
    sentences: list[float] | None = None
    sentence_signature: str | None = None
    warning: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def format(self) -> str:
        lines = [self.summary, f"signature: {self.signature}"]
        if self.sentences is not None:
            lines.append(f"sentence signature: {self.sentence_signature}")
            lines += [f"{i}\t{s:.4f}" for i, s in enumerate(self.sentences, 1)]
        return "\n".join(lines)


def _check_aligned(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must pair up")


def _sacrebleu_metric(name: str, references: list[list[str]] | None = None, sentence: bool = False) -> Metric:
    from sacrebleu.metrics import BLEU, CHRF

    if name == "bleu":
        # a single segment rarely has a 4-gram match: sentence BLEU uses the orders it has (sacrebleu's advice)
        return BLEU(references=references, effective_order=sentence)
    if name in ("chrf", "chrf++"):
        return CHRF(word_order=2 if name == "chrf++" else 0, references=references)
    raise ValueError(f"unknown sacrebleu metric {name!r} (known: {', '.join(SACREBLEU_METRICS)})")


class CorpusScorer:
    """One sacrebleu metric with its references prepared once, to score many systems against them."""

    def __init__(self, name: str, references: Sequence[str]):
        self.name = name
        self.references = list(references)
        self.metric = _sacrebleu_metric(name, [self.references])

    def score(self, hypotheses: Sequence[str], sentences: bool = False) -> Score:
        _check_aligned(hypotheses, self.references)
        result = self.metric.corpus_score(list(hypotheses), None)
        score = Score(result.name, result.score, str(self.metric.get_signature()), str(result))
        if sentences:
            metric = _sacrebleu_metric(self.name, sentence=True)
            score.sentences = [metric.sentence_score(h, [r]).score for h, r in zip(hypotheses, self.references)]
            score.sentence_signature = str(metric.get_signature())
        return score


def sacrebleu_score(name: str, hypotheses: Sequence[str], references: Sequence[str],
                    sentences: bool = False) -> Score:
    """Corpus BLEU, chrF or chrF++ (`name`: bleu, chrf, chrf++) with sacrebleu's defaults; one reference
    per hypothesis. With `sentences`, each segment's own score too."""
    return CorpusScorer(name, references).score(hypotheses, sentences)


class _NoSynonyms:
    """Stands in for WordNet when it is missing: no word has synonyms, so METEOR matches exact words and stems."""

    def synsets(self, word: str) -> list:
        return []


def sentence_meteor(hypothesis: str, references: Sequence[str],
                    wordnet: WordNetCorpusReader | _NoSynonyms | None = None) -> float:
    """NLTK's METEOR of one hypothesis: the best over its references (0-1)."""
    from nltk.translate.meteor_score import meteor_score

    return meteor_score([words(r) for r in references], words(hypothesis),
                        wordnet=wordnet if wordnet is not None else find_wordnet() or _NoSynonyms())


def meteor(hypotheses: Sequence[str], references: Sequence[str], sentences: bool = False) -> Score:
    """Mean sentence METEOR (NLTK, 0-1) of line-aligned hypotheses and references."""
    import nltk

    _check_aligned(hypotheses, references)
    wordnet = find_wordnet()
    matcher = wordnet or _NoSynonyms()
    per_sentence = [sentence_meteor(h, [r], matcher) for h, r in zip(hypotheses, references)]
    mean = sum(per_sentence) / len(per_sentence) if per_sentence else 0.0
    matching = "exact+stem+wordnet" if wordnet is not None else "exact+stem"
    signature = f"nltk:{nltk.__version__}|tok:words|case:lower|match:{matching}|alpha:0.9|beta:3.0|gamma:0.5"
    summary = f"METEOR = {mean:.4f} (mean of {len(per_sentence)} sentences; {matching} matching)"
    return Score("METEOR", mean, signature, summary, per_sentence if sentences else None,
                 signature if sentences else None, None if wordnet is not None else NO_WORDNET)


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(tokens[i:] for i in range(n))))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all texts (Li et al. 2016); 0 when there are none."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def ngram_entropy(texts: Sequence[str], n: int) -> float:
    """Shannon entropy (bits) of the n-gram distribution of all texts together."""
    counts = Counter(g for t in texts for g in ngrams(words(t), n))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0


def repetition_rate(texts: Sequence[str], n: int = 4) -> float:
    """Share of each text's n-grams that repeat an n-gram earlier in the same text, averaged over the texts
    (seq-rep-n, Welleck et al. 2019): 0 for text that never repeats itself, near 1 for a loop."""
    rates = [1 - len(set(g)) / len(g) for g in (ngrams(words(t), n) for t in texts) if g]
    return sum(rates) / len(rates) if rates else 0.0


def self_bleu(texts: Sequence[str]) -> float | None:
    """Mean sentence BLEU (sacrebleu) of each text against all the others as references (Zhu et al. 2018):
    high when samples resemble each other. None for fewer than two texts."""
    if len(texts) < 2:
        return None
    metric = _sacrebleu_metric("bleu", sentence=True)
    scores = [metric.sentence_score(t, [o for j, o in enumerate(texts) if j != i]).score for i, t in enumerate(texts)]
    return sum(scores) / len(scores)


def diversity(texts: Sequence[str]) -> dict:
    """How varied a set of generated texts is, within each text and across them."""
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "unigram_entropy": ngram_entropy(texts, 1), "bigram_entropy": ngram_entropy(texts, 2),
            "self_bleu": self_bleu(texts), "repetition_rate": repetition_rate(texts, 4)}
