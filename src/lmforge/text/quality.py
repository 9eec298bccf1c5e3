"""Document quality filters in the style of Gopher (Rae et al. 2021, appendix A) and C4 (Raffel et al. 2020).

`first_failure(text, cfg)` names the first filter a document fails, or None. Words are whitespace-separated,
as in Gopher. The repetition filters (repeated lines, paragraphs and n-grams) work on integer word ids with
numpy, so a long document costs a few sorts rather than a Python loop per n-gram.
"""

from __future__ import annotations

import re

import numpy as np

from lmforge.config import QualityConfig

GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_BULLETS = ("•", "‣", "◦", "●", "▪", "-", "*", "–")
_ELLIPSES = ("...", "…")
_TERMINAL = (".", "!", "?", '"', "'", "”", "’", "»")  # C4 keeps lines ending in punctuation or a closing quote
_LETTER = re.compile(r"[^\W\d_]")
_NGRAM_MIX = np.uint64(0x9E3779B97F4A7C15)  # an odd multiplier: keys of different n-grams rarely collide


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _repeats(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and their characters."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def word_ids(words: list[str]) -> tuple[dict[str, int], np.ndarray]:
    """Each distinct word's id (in order of first use) and the words as ids; the loops run in C."""
    index = dict.fromkeys(words, 0)
    for i, w in enumerate(index):
        index[w] = i
    return index, np.fromiter(map(index.__getitem__, words), np.uint64, len(words))


def _ngram_failure(words: list[str], index: dict[str, int], ids: np.ndarray, cfg: QualityConfig) -> str | None:
    top = cfg.max_top_ngram_chars or ()
    dup = cfg.max_duplicate_ngram_chars or ()
    if not (top or dup) or len(index) == len(words):
        return None  # no word repeats, so no n-gram does
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    total = int(lengths.sum())
    keys = ids.copy()
    for n in range(2, 11):
        if len(words) < n:
            return None
        keys = keys[:-1] * _NGRAM_MIX + ids[n - 1:]  # wraps modulo 2**64, as meant
        threshold = top[n - 2] if n <= 4 and top else dup[n - 5] if n >= 5 and dup else None
        if threshold is None:
            continue
        if n <= 4:  # characters in the most frequent n-gram, over all its occurrences
            uniq, counts = np.unique(keys, return_counts=True)
            i = int(counts.argmax())
            if counts[i] < 2:
                return None  # no n-gram repeats, so no longer one does
            at = int(np.argmax(keys == uniq[i]))
            chars = int(lengths[at:at + n].sum()) * int(counts[i])
        else:  # characters of words inside a repeat of an earlier n-gram
            _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
            if counts.max() < 2:
                return None
            starts = np.flatnonzero(first[inverse] != np.arange(len(keys)))
            cover = np.zeros(len(words) + 1, np.int64)
            np.add.at(cover, starts, 1)
            np.add.at(cover, starts + n, -1)
            chars = int(lengths[np.cumsum(cover[:-1]) > 0].sum())
        if _share(chars, total) > threshold:
            return f"top_{n}gram" if n <= 4 else f"duplicate_{n}grams"
    return None


def first_failure(text: str, cfg: QualityConfig, english: bool = True) -> str | None:
    """The name of the first quality filter `text` fails, or None. The stop-word test runs only on
    English text (`english`)."""
    words = text.split()
    n = len(words)
    if n == 0 or (cfg.min_words is not None and n < cfg.min_words):
        return "too_few_words"
    if cfg.max_words is not None and n > cfg.max_words:
        return "too_many_words"
    mean = sum(map(len, words)) / n
    if cfg.min_mean_word_length is not None and mean < cfg.min_mean_word_length:
        return "short_words"
    if cfg.max_mean_word_length is not None and mean > cfg.max_mean_word_length:
        return "long_words"
    if cfg.max_symbol_word_ratio is not None:
        symbols = text.count("#") + text.count("...") + text.count("…")
        if symbols / n > cfg.max_symbol_word_ratio:
            return "symbols"
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    if cfg.max_bullet_lines is not None and _share(sum(line.startswith(_BULLETS) for line in lines), len(lines)) > cfg.max_bullet_lines:
        return "bullet_lines"
    if cfg.max_ellipsis_lines is not None and _share(sum(line.endswith(_ELLIPSES) for line in lines), len(lines)) > cfg.max_ellipsis_lines:
        return "ellipsis_lines"
    index, ids = word_ids(words)
    if cfg.min_alpha_words is not None:
        no_letter = {w for w in index if not w.isalpha() and not _LETTER.search(w)}
        if no_letter and 1 - sum(map(no_letter.__contains__, words)) / n < cfg.min_alpha_words:
            return "non_alpha_words"
    if english and cfg.min_stop_words:
        found = 0
        for w in words:
            found += w.lower() in GOPHER_STOP_WORDS
            if found >= cfg.min_stop_words:
                break
        else:
            return "no_stop_words"
    if (cfg.min_terminal_punctuation_lines is not None
            and _share(sum(line.endswith(_TERMINAL) for line in lines), len(lines)) < cfg.min_terminal_punctuation_lines):
        return "no_terminal_punctuation"
    dup_lines, dup_line_chars = _repeats(lines)
    chars = sum(map(len, lines))
    if cfg.max_duplicate_lines is not None and _share(dup_lines, len(lines)) > cfg.max_duplicate_lines:
        return "duplicate_lines"
    if cfg.max_duplicate_line_chars is not None and _share(dup_line_chars, chars) > cfg.max_duplicate_line_chars:
        return "duplicate_line_chars"
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    dup_paras, dup_para_chars = _repeats(paragraphs)
    if cfg.max_duplicate_paragraphs is not None and _share(dup_paras, len(paragraphs)) > cfg.max_duplicate_paragraphs:
        return "duplicate_paragraphs"
    if cfg.max_duplicate_paragraph_chars is not None and _share(dup_para_chars, chars) > cfg.max_duplicate_paragraph_chars:
        return "duplicate_paragraph_chars"
    return _ngram_failure(words, index, ids, cfg)
