"""Character, word and subword tokenizers on HF `tokenizers`, saved as one `tokenizer.json`.

Kinds (`tokenizer.kind`):
- char: every character seen in training is a token; others map to <unk>. decode(encode(s)) == s.
- word: whole words from a whitespace-and-punctuation split (or whitespace only: `word_split`), the
  `vocab_size` most frequent of those seen `min_frequency` times; others map to <unk>.
- bpe: byte-level BPE (GPT-2's pre-tokenizer) over all 256 bytes, so any text encodes and round-trips.
- wordpiece: BERT's pre-tokenizer, "##" continuations, <unk> for words it cannot spell.
- unigram: SentencePiece-style Metaspace + Unigram, with byte fallback for characters it never saw
  (256 of its `vocab_size` ids are the byte pieces).

char, word and bpe train deterministically. wordpiece and unigram may not: HF tokenizers breaks their
ties in hash-map order, which changes from process to process. The prepared data and every run keep
their tokenizer.json, so what was trained on is never in doubt.

Specials are kept minimal: <unk> where the kind can meet an unknown symbol, <|endoftext|> when
`tokenizer.eod` is on, and <mask> when `tokenizer.mask_token` is (masked-LM encoders). They are registered
as special tokens but nothing adds them automatically: the data preparation appends the end-of-document id
after each document. The file loads unchanged in
`transformers.PreTrainedTokenizerFast(tokenizer_file=...)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from lmforge.config import TokenizerConfig
from lmforge.errors import ConfigError, DataError
from lmforge.io import atomic_write_text

if TYPE_CHECKING:
    import tiktoken

UNK = "<unk>"
EOD = "<|endoftext|>"
MASK = "<mask>"
_TRAIN_BATCH = 1000  # texts handed to the Rust trainer at a time


def _training_batches(texts: Iterable[str], max_bytes: int, specials: list[str]) -> Iterator[list[str]]:
    """Batches of `texts` up to max_bytes of UTF-8 (the last text cut short), split at special-token
    strings. Encoding turns such a string into its special token, so training must not count it as a
    word: the trainers would give it a second id and leave a hole in the vocabulary."""
    batch: list[str] = []
    left = max_bytes
    for text in texts:
        size = len(text.encode("utf-8"))
        if size >= left:
            # cutting bytes may split a character: drop the broken tail rather than invent one
            text = text.encode("utf-8")[:left].decode("utf-8", errors="ignore")
        parts = [text]
        for special in specials:
            if special in text:
                parts = [p for part in parts for p in part.split(special)]
        batch.extend(parts)
        left -= size
        if left <= 0:
            break
        if len(batch) >= _TRAIN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class Tokenizer:
    """A trained tokenizer: text <-> token ids, plus what data preparation and training need to know."""

    def __init__(self, backend: HFTokenizer):
        self.backend = backend
        self.eod_id: int | None = backend.token_to_id(EOD)
        self.mask_id: int | None = backend.token_to_id(MASK)
        # the largest id + 1, not the number of tokens: a tokenizer from elsewhere may have holes
        self.vocab_size: int = max(backend.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        self.sha256: str = hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()

    @classmethod
    def train(cls, cfg: TokenizerConfig, texts: Iterable[str], progress: bool = False) -> "Tokenizer":
        """Train a tokenizer of kind `cfg.kind` on at most cfg.train_sample_bytes of `texts` (the first ones: which
        texts to give it is the caller's choice; prepare samples them over the corpus)."""
        specials = ([UNK] if cfg.kind != "bpe" else []) + ([EOD] if cfg.eod else []) + ([MASK] if cfg.mask_token else [])
        normalizer = normalizers.Lowercase() if cfg.lowercase else None
        batches = _training_batches(texts, cfg.train_sample_bytes, specials)

        if cfg.kind == "char":
            tk = _char_tokenizer(batches, specials, normalizer)
        else:
            tk, trainer = _untrained(cfg, specials, progress)
            if normalizer:
                tk.normalizer = normalizer
            try:
                tk.train_from_iterator(batches, trainer=trainer)
            except Exception as e:  # Unigram refuses a vocabulary smaller than the alphabet
                if "not large enough" not in str(e):
                    raise
                raise ConfigError(f"tokenizer.vocab_size: {cfg.vocab_size} is too small for a unigram model of this "
                                  f"corpus: it needs every character seen plus 256 byte pieces") from None
            if cfg.kind == "unigram":
                tk = _with_byte_fallback(tk)
        tk.add_special_tokens(specials)
        return cls(tk)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such tokenizer file")
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises a bare Exception for any malformed file
            raise DataError(f"{path}: not a tokenizer.json ({str(e).splitlines()[0]})") from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.backend.to_str(pretty=True))

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many texts at once on all cores (the Rust side runs them in parallel)."""
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]

    def encode_arrays(self, texts: list[str], engine: str = "auto") -> list[np.ndarray]:
        """The ids of each text as a uint32 array, encoded on all cores. engine "auto" encodes a byte-level BPE
        with tiktoken where that gives this tokenizer's ids exactly (`tiktoken_encoding`), and a char tokenizer
        with a lookup table of code points (`char_table`): several times faster than tokenizers, and without a
        Python int per token. "tokenizers" always uses the reference library."""
        fast = self.tiktoken_encoding if engine == "auto" else None
        if fast is not None:
            # tiktoken releases the GIL while it encodes, so threads use every core
            return list(_encoding_threads().map(lambda text: fast.encode_to_numpy(text, allowed_special="all"), texts))
        table = self.char_table if engine == "auto" else None
        if table is not None:
            return [table.encode(text) for text in texts]
        return [np.array(e.ids, dtype=np.uint32) for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]

    @cached_property
    def char_table(self) -> "CharTable | None":
        """A char tokenizer (one token per code point, no normalizer) as a lookup table, else None."""
        return CharTable.of(json.loads(self.backend.to_str()))

    @cached_property
    def tiktoken_encoding(self) -> "tiktoken.Encoding | None":
        """This tokenizer as a tiktoken Encoding when that encodes every text to the same ids, else None.
        That holds for a byte-level BPE with GPT-2's split and nothing around it (no normalizer, dropout or
        affixes) whose merges tiktoken's rule (merge the adjacent pair whose joined bytes rank lowest) would
        rediscover: each merged token's id grows with its merge's rank, and tiktoken's merging of the token's own
        bytes, with only the tokens ranked below it, ends in exactly its two listed halves. Checked here for
        every merge; any other tokenizer (char, word, wordpiece, unigram, a lowercasing BPE) stays on tokenizers."""
        return _tiktoken_of(json.loads(self.backend.to_str()))

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; <|endoftext|> and <unk> are left out unless skip_special_tokens is False."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # numpy arrays: plain ints, fast
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)


class CharTable:
    """A char tokenizer's encoding in numpy: the text's code points (its UTF-32) looked up in the sorted
    vocabulary, <unk> for the rest, and the special-token strings matched first, as tokenizers matches its
    added tokens (leftmost, the longest of those starting there)."""

    def __init__(self, chars: dict[str, int], specials: dict[str, int], unk: int | None):
        order = sorted(chars)
        self.codes = np.array([ord(c) for c in order], dtype=np.uint32)
        self.ids = np.array([chars[c] for c in order], dtype=np.uint32)
        self.specials, self.unk = specials, unk
        self.split = re.compile("|".join(map(re.escape, sorted(specials, key=len, reverse=True)))) if specials else None

    @classmethod
    def of(cls, spec: dict) -> "CharTable | None":
        model, split = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
        if model.get("type") != "WordLevel":
            return None
        added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
        chars = {tok: i for tok, i in model.get("vocab", {}).items() if tok not in added}
        if (spec.get("normalizer") is not None or split.get("type") != "Split"
                or split.get("pattern") != {"Regex": _ONE_CODE_POINT} or split.get("behavior") != "Isolated"
                or split.get("invert") or not chars or any(len(c) != 1 for c in chars)
                or any(t.get(k) for t in spec.get("added_tokens", []) for k in ("lstrip", "rstrip", "single_word"))):
            return None
        return cls(chars, added, added.get(model.get("unk_token")))

    def encode(self, text: str) -> np.ndarray:
        if self.split is None:
            return self._chars(text)
        parts, start = [], 0
        for match in self.split.finditer(text):
            parts += [self._chars(text[start:match.start()]), np.array([self.specials[match.group()]], np.uint32)]
            start = match.end()
        return np.concatenate([*parts, self._chars(text[start:])])

    def _chars(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        known = self.codes[at] == codes
        if self.unk is None and not known.all():  # tokenizers drops a character it has no id for
            at, known = at[known], known[known]
        return np.where(known, self.ids[at], self.unk or 0).astype(np.uint32)


_ONE_CODE_POINT = r"[\s\S]"


def _char_tokenizer(batches: Iterable[list[str]], specials: list[str],
                    normalizer: normalizers.Normalizer | None) -> HFTokenizer:
    # counting characters needs no trainer; sorted, so the ids do not depend on the corpus order
    chars: set[str] = set()
    for batch in batches:
        for text in batch:
            chars.update(normalizer.normalize_str(text) if normalizer else text)
    vocab = {tok: i for i, tok in enumerate(specials + sorted(chars - set(specials)))}
    tk = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
    if normalizer:
        tk.normalizer = normalizer
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(_ONE_CODE_POINT), behavior="isolated")  # one piece per code point
    tk.decoder = decoders.Fuse()
    return tk


def _untrained(cfg: TokenizerConfig, specials: list[str], progress: bool) -> tuple[HFTokenizer, trainers.Trainer]:
    """An empty tokenizer of a trainable kind and the trainer that fills it."""
    common = dict(vocab_size=cfg.vocab_size, special_tokens=specials, show_progress=progress)
    if cfg.kind == "word":
        tk = HFTokenizer(models.WordLevel(unk_token=UNK))
        whitespace_only = cfg.word_split == "whitespace"
        tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit() if whitespace_only else pre_tokenizers.Whitespace()
        return tk, trainers.WordLevelTrainer(min_frequency=cfg.min_frequency, **common)
    if cfg.kind == "bpe":
        tk = HFTokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        return tk, trainers.BpeTrainer(min_frequency=cfg.min_frequency,
                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **common)
    if cfg.kind == "wordpiece":
        tk = HFTokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##"))
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tk.decoder = decoders.WordPiece(prefix="##")
        return tk, trainers.WordPieceTrainer(min_frequency=cfg.min_frequency, continuing_subword_prefix="##",
                                             **common)
    if cfg.kind == "unigram":
        tk = HFTokenizer(models.Unigram())
        tk.pre_tokenizer = pre_tokenizers.Metaspace()
        # room for the 256 byte pieces added after training
        common["vocab_size"] = max(cfg.vocab_size - 256, len(specials) + 1)
        return tk, trainers.UnigramTrainer(unk_token=UNK, **common)
    raise ValueError(f"unknown tokenizer kind {cfg.kind!r}")


def _with_byte_fallback(tk: HFTokenizer) -> HFTokenizer:
    """Give a trained Unigram model SentencePiece's byte fallback: an unseen character becomes the
    <0xNN> pieces of its UTF-8 bytes instead of <unk>, and decodes back to itself."""
    spec = json.loads(tk.to_str())
    model = spec["model"]
    known = {piece for piece, _ in model["vocab"]}
    # SentencePiece's pieces <0x00>..<0xFF>, scored below anything learned so they are only a last resort
    model["vocab"] += [[p, -1e4] for p in (f"<0x{b:02X}>" for b in range(256)) if p not in known]
    model["byte_fallback"] = True
    tk = HFTokenizer.from_str(json.dumps(spec))
    tk.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    return tk


# GPT-2's pre-tokenizer split, which HF's ByteLevel(use_regex=True) applies
_GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@cache
def _encoding_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(len(os.sched_getaffinity(0)), thread_name_prefix="lmforge-encode")


def _byte_of_char() -> dict[str, int]:
    """Byte-level BPE's alphabet: the printable character that stands for each byte (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), ord("\xff") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(others)}}


def _merged_parts(token: bytes, ranks: dict[bytes, int], below: int) -> list[bytes]:
    """tiktoken's merging of `token`'s bytes, using only the tokens ranked below `below`."""
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 1:
        rank, i = min((ranks.get(a + b, below), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
        if rank >= below:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def _tiktoken_of(spec: dict) -> "tiktoken.Encoding | None":
    model, split = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if (spec.get("normalizer") is not None or model.get("type") != "BPE"
            or any(model.get(k) for k in ("dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback",
                                          "ignore_merges"))
            or split.get("type") != "ByteLevel" or split.get("add_prefix_space") or not split.get("use_regex", True)
            or any(t.get(k) for t in spec.get("added_tokens", []) for k in ("lstrip", "rstrip", "single_word"))):
        return None
    byte_of = _byte_of_char()
    added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}

    def as_bytes(token: str) -> bytes | None:
        return bytes(byte_of[c] for c in token) if all(c in byte_of for c in token) else None

    ranks = {as_bytes(token): i for token, i in model.get("vocab", {}).items() if token not in added}
    merges = [m.split(" ") if isinstance(m, str) else m for m in model.get("merges", [])]  # older files: "a b"
    if None in ranks or sum(len(b) == 1 for b in ranks) != 256 or len(ranks) != 256 + len(merges):
        return None
    last = -1
    for left, right in merges:
        halves = [as_bytes(left), as_bytes(right)]
        rank = ranks.get(halves[0] + halves[1]) if None not in halves else None
        if rank is None or rank <= last or _merged_parts(halves[0] + halves[1], ranks, rank) != halves:
            return None
        last = rank
    import tiktoken  # only here: a tokenizer that cannot use it never pays for the import

    return tiktoken.Encoding("lmforge", pat_str=_GPT2_SPLIT, mergeable_ranks=ranks, special_tokens=added)
