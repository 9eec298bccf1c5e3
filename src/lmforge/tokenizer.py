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
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from lmforge.config import TokenizerConfig
from lmforge.errors import ConfigError, DataError
from lmforge.io import atomic_write_text

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

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; <|endoftext|> and <unk> are left out unless skip_special_tokens is False."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # numpy arrays: plain ints, fast
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)


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
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one piece per code point
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
