"""Task metrics: accuracy, precision / recall / F1 and the confusion matrix for classification; entity F1
for BIO tagging with conlleval's semantics; SQuAD v1.1 exact match and F1.

Written here rather than taken from a library: each is a few lines whose exact definition matters
(conlleval's chunk rules, the SQuAD script's answer normalisation), scikit-learn and seqeval would be
heavy dependencies for that, and the official scripts are not packaged. The verification tests hold
them to the published numbers of the WNUT-17 submissions and SQuAD v1.1 systems.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Hashable, Sequence

from lmforge.errors import DataError


def _safe_div(a: float, b: float) -> float:
    return a / b if b else 0.0


def _f1(precision: float, recall: float) -> float:
    return _safe_div(2 * precision * recall, precision + recall)


def _prf(correct: int, predicted: int, gold: int) -> dict:
    p, r = _safe_div(correct, predicted), _safe_div(correct, gold)
    return {"precision": p, "recall": r, "f1": _f1(p, r)}


def accuracy(predicted: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
    if len(predicted) != len(gold):
        raise DataError(f"{len(predicted)} predictions but {len(gold)} gold labels: they must pair up")
    return _safe_div(sum(p == g for p, g in zip(predicted, gold)), len(gold))


def classification_report(predicted: Sequence[Hashable], gold: Sequence[Hashable],
                          labels: Sequence[Hashable] | None = None) -> dict:
    """Accuracy; precision, recall, F1 and support per class; their micro and macro averages; the confusion
    matrix (rows: gold label, columns: predicted label, in `labels` order; default: every label seen, sorted).

    A class never predicted has precision 0, one never in the gold data recall 0 (no NaNs). With one label
    per item, micro precision = micro recall = micro F1 = accuracy; macro is the unweighted class mean.
    """
    acc = accuracy(predicted, gold)
    labels = list(labels) if labels is not None else sorted(set(gold) | set(predicted), key=str)
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for p, g in zip(predicted, gold):
        if p not in index or g not in index:
            raise DataError(f"label {p if p not in index else g!r} is not one of the labels given")
        confusion[index[g]][index[p]] += 1
    per_class = {}
    for i, label in enumerate(labels):
        correct = confusion[i][i]
        support = sum(confusion[i])
        per_class[str(label)] = {**_prf(correct, sum(row[i] for row in confusion), support), "support": support}
    macro = {k: _safe_div(sum(c[k] for c in per_class.values()), len(labels)) for k in ("precision", "recall", "f1")}
    correct = sum(confusion[i][i] for i in range(len(labels)))
    return {"accuracy": acc, "per_class": per_class, "micro": _prf(correct, len(predicted), len(gold)),
            "macro": macro, "labels": [str(label) for label in labels], "confusion": confusion}


def split_tag(tag: str) -> tuple[str, str]:
    """`B-person` -> ("B", "person"); `O` -> ("O", ""). Anything else is not a BIO tag."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if prefix not in ("B", "I") or not dash:
        raise ValueError(f"tag {tag!r} is not O, B-TYPE or I-TYPE")
    return prefix, kind


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entities of one sentence as (type, start, end) with end exclusive, by conlleval's chunk rules.

    An entity starts at a B tag, at an I tag after O (IOB1 style), or where the type changes; it ends
    before a B or O tag or where the type changes. So `I-x I-x` is one entity and `B-x I-y` two.
    """
    spans = set()
    start, kind = None, ""
    for i, tag in enumerate([*tags, "O"]):  # a final O closes an entity still open at the end
        prefix, tag_kind = split_tag(tag)
        if start is not None and (prefix in ("B", "O") or tag_kind != kind):
            spans.add((kind, start, i))
            start = None
        if prefix != "O" and start is None:
            start, kind = i, tag_kind
    return spans


def entity_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict:
    """Entity-level micro precision, recall and F1 over sentences of BIO tags (an entity counts when its
    span and type are both exact, as in conlleval), and the same per entity type."""
    if len(predicted) != len(gold):
        raise DataError(f"{len(predicted)} predicted sentences but {len(gold)} gold sentences")
    found: Counter = Counter()
    wanted: Counter = Counter()
    right: Counter = Counter()
    for n, (p_tags, g_tags) in enumerate(zip(predicted, gold), 1):
        if len(p_tags) != len(g_tags):
            raise DataError(f"sentence {n}: {len(p_tags)} predicted tags but {len(g_tags)} gold tags")
        p_spans, g_spans = entity_spans(p_tags), entity_spans(g_tags)
        found.update(kind for kind, _, _ in p_spans)
        wanted.update(kind for kind, _, _ in g_spans)
        right.update(kind for kind, _, _ in p_spans & g_spans)
    per_type = {kind: {**_prf(right[kind], found[kind], wanted[kind]), "predicted": found[kind], "gold": wanted[kind]}
                for kind in sorted(found | wanted)}
    total = _prf(sum(right.values()), sum(found.values()), sum(wanted.values()))
    return {**total, "correct": sum(right.values()), "predicted": sum(found.values()), "gold": sum(wanted.values()),
            "per_type": per_type}


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The SQuAD v1.1 script's normalisation: lower-case, drop ASCII punctuation, drop the articles
    a/an/the, squash whitespace (in that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_f1(prediction: str, truth: str) -> float:
    """F1 of the bags of normalised words of a predicted and a true answer."""
    pred, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(true)).values())
    return _f1(_safe_div(same, len(pred)), _safe_div(same, len(true)))


def squad_scores(articles: Sequence[dict], predictions: dict[str, str]) -> dict:
    """Exact match and F1 (percent) of `predictions` ({question id: answer}) on a SQuAD v1.1 `data` list:
    for each question the best over its true answers, averaged over every question in the data set; a
    question without a prediction scores 0, as in the official script."""
    exact = f1 = 0.0
    total = unanswered = 0
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    unanswered += 1
                    continue
                answers = [a["text"] for a in qa["answers"]]
                exact += max(squad_exact(predictions[qa["id"]], a) for a in answers)
                f1 += max(squad_f1(predictions[qa["id"]], a) for a in answers)
    return {"exact_match": 100 * _safe_div(exact, total), "f1": 100 * _safe_div(f1, total),
            "questions": total, "unanswered": unanswered}


def format_entity_f1(result: dict) -> str:
    """`entity_f1`'s result as text: the total, then one line per entity type (percent)."""

    def line(name: str, r: dict) -> str:
        return (f"{name:<16} precision {100 * r['precision']:6.2f}  recall {100 * r['recall']:6.2f}  "
                f"F1 {100 * r['f1']:6.2f}  ({r['predicted']} predicted, {r['gold']} gold)")

    return "\n".join([line("all entities", result), *(line(k, r) for k, r in result["per_type"].items())])
