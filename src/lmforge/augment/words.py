"""A text as words and the whitespace between them, so that word edits keep the rest of the text as it was;
sentence splitting; and the seeded random numbers every method draws from."""

from __future__ import annotations

import hashlib
import random
import re
from typing import Callable

_GAP = re.compile(r"(\s+)")
_LETTER = re.compile(r"[^\W\d_]")
_ALPHA_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# a sentence ends at . ! or ? (possibly followed by a closing quote or bracket) before whitespace, or at a newline
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+|\s*\n\s*")


def seed_of(*parts: object) -> int:
    """A 63-bit seed fixed by its arguments: the same on every machine and process (unlike hash())."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its arguments."""
    return seed_of(*parts) / 2**63


def rng_of(*parts: object) -> random.Random:
    return random.Random(seed_of(*parts))


def has_letter(word: str) -> bool:
    return _LETTER.search(word) is not None


def is_alpha_word(word: str) -> bool:
    """Letters only (an inner apostrophe or hyphen allowed): a word a dictionary or a model could replace."""
    return _ALPHA_WORD.fullmatch(word) is not None


def match_case(new: str, old: str) -> str:
    """`new` capitalised like `old`: all upper, first upper, or as it is."""
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


class Words:
    """`words[i]` with `gaps[i]` the whitespace before it and `gaps[-1]` what follows the last word."""

    def __init__(self, text: str):
        parts = _GAP.split(text)
        if parts and parts[0] == "":
            parts = parts[1:]
        else:
            parts = ["", *parts]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        else:
            parts.append("")
        # parts alternates gap, word, gap, ..., word, gap
        self.gaps = parts[0::2]
        self.words = parts[1::2]

    def text(self) -> str:
        return "".join(g + w for g, w in zip(self.gaps, self.words)) + self.gaps[-1]

    def delete(self, i: int) -> None:
        del self.words[i]
        del self.gaps[1 if i == 0 else i]  # the first word's leading whitespace stays the text's

    def insert(self, i: int, word: str) -> None:
        self.words.insert(i, word)
        self.gaps.insert(max(i, 1), " ")

    def swap(self, i: int, j: int) -> None:
        self.words[i], self.words[j] = self.words[j], self.words[i]


def sentences(text: str) -> list[str]:
    """The text's sentences, split at end punctuation followed by whitespace and at line breaks."""
    return [s for s in _SENTENCE_BREAK.split(text.strip()) if s]


def split_to_fit(text: str, size: Callable[[str], int], limit: int) -> tuple[list[str], bool]:
    """The text as consecutive parts of at most `limit` by `size` (tokens), cut at sentence boundaries, then
    at word boundaries; and whether a single word was longer than the limit (that part is still too long).
    Joined with single spaces, the parts give the text back up to whitespace."""
    if size(text) <= limit:
        return [text], False
    units: list[str] = []
    for sentence in sentences(text):
        units.extend([sentence] if size(sentence) <= limit else sentence.split())
    parts: list[str] = []
    too_long = False
    current = ""
    for unit_text in units:
        joined = f"{current} {unit_text}" if current else unit_text
        if size(joined) <= limit:
            current = joined
            continue
        if current:
            parts.append(current)
        current = unit_text
        if size(unit_text) > limit:
            too_long = True
            parts.append(unit_text)
            current = ""
    if current:
        parts.append(current)
    return parts, too_long
