"""Task data encoded for a model: examples (read by data/taskfiles.py) turned into model inputs (`Feature`s),
labels into their targets.

- classify: each text is one input, [CLS] text [SEP] cut to max_length. lm: the texts joined with
  end-of-document tokens, cut into non-overlapping windows whose targets are the next tokens.
- tag: each word is split into subwords; the word's tag goes on its first subword and the others are ignored
  by the loss (-100), so a word is predicted from its first subword and the prediction maps back one to one
  (`word_predictions`).
- qa: a context longer than the window is cut into overlapping windows (`doc_stride` tokens shared), each
  paired with the question; an answer is labelled in every window that holds it whole, and token offsets
  map a predicted span back to the exact characters of the context.

Labels seen in training are stored with the run; a label in evaluation data that training never saw is
counted (`unseen`), left out of the loss and kept in the gold data, where it counts as an error.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from lmforge.data.taskfiles import QAExample, Sentence
from lmforge.errors import ConfigError, DataError
from lmforge.finetune.backbones import Backbone

IGNORE = -100  # cross_entropy's ignore_index: positions the loss skips


@dataclass
class Feature:
    """One model input: token ids (specials included) and what training or prediction needs with it."""

    ids: list[int]
    type_ids: list[int]
    example: int  # index of the example (text, sentence, question) it came from
    target: object = None  # class id, multi-hot list, per-token tag ids, (start, end) or next-token ids
    word_ids: list[int | None] | None = None  # tag: the word each token belongs to
    offsets: list[tuple[int, int] | None] | None = None  # qa: character span of each context token


# -- tables (classify, lm) ----------------------------------------------------------------------------------

def label_targets(labels: list[list[str]], names: list[str], multi: bool) -> tuple[list, Counter]:
    """Class ids (or multi-hot rows) for `labels`, and a count of the labels not in `names`: a single-label
    example with an unseen label gets IGNORE, a multi-label example just loses that label."""
    index = {name: i for i, name in enumerate(names)}
    unseen: Counter = Counter()
    targets: list = []
    for example in labels:
        unseen.update(label for label in example if label not in index)
        if multi:
            row = [0.0] * len(names)
            for label in example:
                if label in index:
                    row[index[label]] = 1.0
            targets.append(row)
        else:
            targets.append(index.get(example[0], IGNORE))
    return targets, unseen


def unseen_warning(path: Path, unseen: Counter, what: str = "labels") -> str | None:
    if not unseen:
        return None
    listed = ", ".join(f"{k!r} x{n}" for k, n in unseen.most_common(5))
    return (f"{path}: {sum(unseen.values())} {what} that training never saw ({listed}); they are left out of "
            f"the loss and count as errors in the scores")


def encode_texts(backbone: Backbone, texts: list[str], max_length: int) -> list[Feature]:
    """[CLS] text [SEP] (the specials the backbone has), cut to max_length tokens."""
    sp = backbone.special
    head, tail = ([sp.cls] if sp.cls is not None else []), ([sp.sep] if sp.sep is not None else [])
    room = max_length - len(head) - len(tail)
    encodings = backbone.tokenizer.encode_batch(texts, add_special_tokens=False)
    features = []
    for i, enc in enumerate(encodings):
        ids = head + enc.ids[:room] + tail
        if not ids:  # an empty text with no specials still needs one position to pool
            ids = [sp.pad]
        features.append(Feature(ids, [0] * len(ids), i))
    return features


def lm_windows(backbone: Backbone, texts: list[str], block: int, eod: int | None) -> list[Feature]:
    """Non-overlapping windows of `block` tokens over the texts joined with end-of-document tokens; the
    target of each position is the next token."""
    stream: list[int] = []
    for enc in backbone.tokenizer.encode_batch(texts, add_special_tokens=False):
        stream.extend(enc.ids)
        if eod is not None:
            stream.append(eod)
    n = (len(stream) - 1) // block
    if n == 0:
        raise DataError(f"too little text for one window of {block + 1} tokens ({len(stream)} tokens)")
    return [Feature(stream[i * block:(i + 1) * block], [0] * block, i, stream[i * block + 1:(i + 1) * block + 1])
            for i in range(n)]


# -- tagging (CoNLL) ----------------------------------------------------------------------------------------

def encode_words(backbone: Backbone, sentences: list[Sentence], tags: list[str] | None,
                 max_length: int) -> tuple[list[Feature], Counter]:
    """Subword features of pre-split sentences; with `tags`, each word's tag id on its first subword."""
    sp = backbone.special
    head, tail = ([sp.cls] if sp.cls is not None else []), ([sp.sep] if sp.sep is not None else [])
    room = max_length - len(head) - len(tail)
    index = {tag: i for i, tag in enumerate(tags or [])}
    unseen: Counter = Counter()
    encodings = backbone.tokenizer.encode_batch([s.words for s in sentences], is_pretokenized=True,
                                                add_special_tokens=False)
    features = []
    for i, (sentence, enc) in enumerate(zip(sentences, encodings)):
        word_ids = [None] * len(head) + enc.word_ids[:room] + [None] * len(tail)
        ids = head + enc.ids[:room] + tail
        target = None
        if tags is not None and sentence.tags is not None:
            target = []
            for j, w in enumerate(word_ids):
                first = w is not None and (j == 0 or word_ids[j - 1] != w)
                if not first:
                    target.append(IGNORE)
                    continue
                tag = sentence.tags[w]
                if tag not in index:
                    unseen[tag] += 1
                target.append(index.get(tag, IGNORE))
        features.append(Feature(ids, [0] * len(ids), i, target, word_ids=word_ids))
    return features, unseen


def word_predictions(word_ids: list[int | None], token_labels: list[str], n_words: int,
                     default: str = "O") -> list[str]:
    """Per-word labels from per-token ones: each word takes its first subword's label; a word with no token
    (cut off by max_length, or one the tokenizer drops, such as a control character) gets `default`."""
    words = [default] * n_words
    seen = set()
    for w, label in zip(word_ids, token_labels):
        if w is not None and w not in seen:
            words[w] = label
            seen.add(w)
    return words


# -- question answering (SQuAD) -----------------------------------------------------------------------------

def encode_qa(backbone: Backbone, examples: list[QAExample], max_length: int, doc_stride: int,
              max_query_length: int) -> list[Feature]:
    """[CLS] question [SEP] context window [SEP] for every window of every context.

    Windows hold `room` context tokens and start every `room - doc_stride` tokens, so an answer shorter than
    doc_stride tokens lies whole in at least one window. A window's target is the answer's (start, end) token
    positions when it holds the whole first answer, else (0, 0): "not here"."""
    sp = backbone.special
    head, sep = ([sp.cls] if sp.cls is not None else []), ([sp.sep] if sp.sep is not None else [])
    tk = backbone.tokenizer
    questions = tk.encode_batch([e.question for e in examples], add_special_tokens=False)
    contexts = tk.encode_batch([e.context for e in examples], add_special_tokens=False)
    features = []
    for i, (example, q, c) in enumerate(zip(examples, questions, contexts)):
        prefix = head + q.ids[:max_query_length] + sep
        room = max_length - len(prefix) - len(sep)
        if room <= doc_stride:
            raise ConfigError(f"finetune.doc_stride: {doc_stride} leaves no new context per window (max_length "
                              f"{max_length} holds {room} context tokens after the question); lower it")
        span = None
        if example.answers:
            text, start = example.answers[0]
            span = (start, start + len(text))
        begin = 0
        while True:
            end = min(begin + room, len(c.ids))
            ids = prefix + c.ids[begin:end] + sep
            offsets = [None] * len(prefix) + list(c.offsets[begin:end]) + [None] * len(sep)
            target = (0, 0)
            if span is not None:
                target = _answer_positions(offsets, span, len(prefix))
            features.append(Feature(ids, [0] * len(prefix) + [1] * (len(ids) - len(prefix)), i, target,
                                    offsets=offsets))
            if end >= len(c.ids):
                break
            begin += room - doc_stride
    return features


def _answer_positions(offsets: list, span: tuple[int, int], first: int) -> tuple[int, int]:
    """Token positions of the first and last context tokens overlapping the character span, when the window
    covers it whole; else (0, 0)."""
    start_char, end_char = span
    inside = [j for j in range(first, len(offsets)) if offsets[j] is not None
              and offsets[j][0] < end_char and offsets[j][1] > start_char]
    context = [j for j in range(first, len(offsets)) if offsets[j] is not None]
    if not inside or not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return (0, 0)
    return (inside[0], inside[-1])


def best_answers(examples: list[QAExample], features: list[Feature], start_logits: list[torch.Tensor],
                 end_logits: list[torch.Tensor], max_answer_length: int, n_best: int = 20) -> dict[str, str]:
    """{question id: answer text}: the context span with the highest start + end logit over all windows of its
    question, at most max_answer_length tokens long."""
    best: dict[int, tuple[float, str]] = {}
    for feature, s_log, e_log in zip(features, start_logits, end_logits):
        context = examples[feature.example].context
        offsets = feature.offsets
        n = len(feature.ids)
        s_log, e_log = s_log[:n], e_log[:n]
        starts = s_log.topk(min(n_best, n)).indices.tolist()
        ends = e_log.topk(min(n_best, n)).indices.tolist()
        for s in starts:
            for e in ends:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(s_log[s] + e_log[e])
                if feature.example not in best or score > best[feature.example][0]:
                    best[feature.example] = (score, context[offsets[s][0]:offsets[e][1]])
    return {example.id: best.get(i, (0.0, ""))[1] for i, example in enumerate(examples)}


# -- batches ------------------------------------------------------------------------------------------------

def collate(features: list[Feature], pad_id: int, task: str, multi_label: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded ids, mask and type ids, and the targets of the task when the features have them."""
    T = max(len(f.ids) for f in features)
    ids = torch.full((len(features), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), T), dtype=torch.long)
    type_ids = torch.zeros((len(features), T), dtype=torch.long)
    for i, f in enumerate(features):
        ids[i, :len(f.ids)] = torch.tensor(f.ids)
        mask[i, :len(f.ids)] = 1
        type_ids[i, :len(f.ids)] = torch.tensor(f.type_ids)
    batch = {"ids": ids, "mask": mask, "type_ids": type_ids}
    if features[0].target is None:
        return batch
    if task == "classify":
        batch["target"] = torch.tensor([f.target for f in features],
                                       dtype=torch.float32 if multi_label else torch.long)
    elif task in ("tag", "lm"):
        target = torch.full((len(features), T), IGNORE, dtype=torch.long)
        for i, f in enumerate(features):
            target[i, :len(f.target)] = torch.tensor(f.target)
        batch["target"] = target
    else:
        batch["target"] = torch.tensor([list(f.target) for f in features], dtype=torch.long)
    return batch
