"""Token shards: the corpus encoded once into flat token files that training memory-maps. This module
writes and reads them; what goes in is the prepare recipe's business (prepare.py).

A prepared directory holds `tokenizer.json`, `tokens-00000.bin`, ... (raw little-endian uint16 when the
vocabulary fits, else uint32; `data.shard_tokens` tokens per file) and `meta.json`, which lists the
shards, the train/val splits as [file, start, end] token ranges (for a mixture of data.sources, the union
of the sources' splits, and under "mixture" each source's weight and own splits), what reading the corpus
found and the settings that produced it. `is_current` tells whether a directory still matches a config and
the files it was made from; `load_current` opens one only then, for evaluation, which never prepares.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from lmforge.config import Config, DataConfig
from lmforge.corpora import iter_pieces, stat_sources
from lmforge.errors import DataError
from lmforge.data.hash_cache import HashCache
from lmforge.tokenizer import Tokenizer

META_VERSION = 1
# Pieces handed to the encoder. Small enough that a single large document still spreads over all
# cores; fixed (not derived from the core count) so every machine produces the same tokens.
PIECE_CHARS = 1 << 16


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def prepared_dir(cfg: Config) -> Path:
    return Path(cfg.data.prepared_dir) if cfg.data.prepared_dir else Path("prepared") / cfg.data_key()


def encode_pieces(tokenizer: Tokenizer, pieces: Iterable[tuple[str, bool]], batch_chars: int,
                  engine: str = "auto") -> Iterator[np.ndarray]:
    """Token arrays of consecutive batches of about batch_chars characters, encoded on all cores (with
    `Tokenizer.encode_arrays`'s engine), with the end-of-document id (if any) after each document's last
    piece. While one batch encodes, the next is read: both encoders release the GIL."""
    dtype = token_dtype(tokenizer.vocab_size)
    eod = np.array([tokenizer.eod_id] if tokenizer.eod_id is not None else [], dtype=np.uint32)

    def encode(texts: list[str], ends: list[bool]) -> np.ndarray:
        ids = tokenizer.encode_arrays(texts, engine)
        parts = [part for i, end in zip(ids, ends) for part in ((i, eod) if end else (i,))]
        return np.concatenate(parts).astype(dtype)

    def batches() -> Iterator[tuple[list[str], list[bool]]]:
        texts: list[str] = []
        ends: list[bool] = []
        size = 0
        for piece, end in pieces:
            texts.append(piece)
            ends.append(end)
            size += len(piece)
            if size >= batch_chars:
                yield texts, ends
                texts, ends, size = [], [], 0
        if texts:
            yield texts, ends

    with ThreadPoolExecutor(1, thread_name_prefix="lmforge-batch") as ahead:
        pending: Future | None = None
        for texts, ends in batches():
            encoding = ahead.submit(encode, texts, ends)
            if pending is not None:
                yield pending.result()
            pending = encoding
        if pending is not None:
            yield pending.result()


class ShardWriter:
    """Appends token arrays to tokens-NNNNN.bin files of at most shard_tokens tokens each."""

    def __init__(self, directory: Path, shard_tokens: int):
        self.directory, self.shard_tokens = directory, shard_tokens
        self.shards: list[dict] = []
        self.file: BinaryIO | None = None
        self.total = 0

    def write(self, tokens: np.ndarray) -> None:
        while len(tokens):
            if self.file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                self.close()
                name = f"tokens-{len(self.shards):05d}.bin"
                self.file = open(self.directory / name, "wb")
                self.shards.append({"file": name, "tokens": 0, "sha256": None})
                self.digest = hashlib.sha256()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, tokens = tokens[:room], tokens[room:]
            data = part.tobytes()
            self.file.write(data)
            self.digest.update(data)
            self.shards[-1]["tokens"] += len(part)
            self.total += len(part)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            self.shards[-1]["sha256"] = self.digest.hexdigest()


def ranges(shards: list[dict], lo: int, hi: int) -> list[list]:
    """Tokens lo..hi of the whole stream as [file, start, end] ranges within the shards."""
    out, offset = [], 0
    for s in shards:
        start, end = max(lo, offset), min(hi, offset + s["tokens"])
        if start < end:
            out.append([s["file"], start - offset, end - offset])
        offset += s["tokens"]
    return out


def is_current(directory: Path, cfg: Config) -> bool:
    """Whether a prepared directory was made from these settings, these unchanged files and is whole."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("version") != META_VERSION or meta.get("data_key") != cfg.data_key():
        return False
    recorded, current = meta.get("sources", []), stat_sources(cfg.data)
    if len(recorded) != len(current) or any(any(r.get(k) != v for k, v in c.items())
                                            for r, c in zip(recorded, current)):
        return False
    if cfg.tokenizer.path and Tokenizer.load(cfg.tokenizer.path).sha256 != meta.get("tokenizer_sha256"):
        return False
    itemsize = np.dtype(meta.get("dtype", "uint8")).itemsize
    return all((directory / s["file"]).is_file() and (directory / s["file"]).stat().st_size == s["tokens"] * itemsize
               for s in meta.get("shards", []))


@dataclass
class PreparedData:
    """A prepared directory: its meta.json, its tokenizer and read-only views of its token splits."""

    path: Path
    meta: dict
    tokenizer: Tokenizer
    _maps: dict[str, np.memmap] = field(default_factory=dict, repr=False)

    def split(self, name: str) -> list[np.ndarray]:
        """The "train" or "val" tokens as read-only memory-mapped arrays, one per shard range (of a mixture:
        every source's, in order)."""
        if name not in self.meta["splits"]:
            raise DataError(f"{self.path}: no split {name!r} (splits: {', '.join(self.meta['splits'])})")
        return self._arrays(self.meta["splits"][name])

    @property
    def mixture(self) -> dict[str, float]:
        """A mixture's sources (data.sources) and their weights, in order; empty for one corpus."""
        return {name: source["weight"] for name, source in self.meta.get("mixture", {}).items()}

    def source_split(self, source: str, name: str) -> list[np.ndarray]:
        """One mixture source's "train" or "val" tokens, as `split` gives a whole split."""
        if source not in self.mixture:
            raise DataError(f"{self.path}: no source {source!r} (sources: {', '.join(self.mixture) or 'none'})")
        return self._arrays(self.meta["mixture"][source]["splits"][name])

    def _arrays(self, spans: list[list]) -> list[np.ndarray]:
        out = []
        for file, start, end in spans:
            if file not in self._maps:
                tokens = next(s["tokens"] for s in self.meta["shards"] if s["file"] == file)
                self._maps[file] = np.memmap(self.path / file, dtype=np.dtype(self.meta["dtype"]).newbyteorder("<"),
                                             mode="r", shape=(tokens,))
            out.append(self._maps[file][start:end])
        return out


def load_prepared(directory: str | Path) -> PreparedData:
    """Open a prepared directory, checking that meta.json, the tokenizer and every shard agree (a shard's SHA-256
    only when its file changed since it last matched: hash_cache.py)."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{directory}: not a prepared data directory (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{meta_path}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path}: corrupt (not a JSON object)")
    missing = [k for k in ("version", "dtype", "tokenizer_sha256", "shards", "splits") if k not in meta]
    if missing:
        raise DataError(f"{meta_path}: corrupt (no {', '.join(missing)})")
    if meta["version"] != META_VERSION:
        raise DataError(f"{meta_path}: format version {meta['version']}, expected {META_VERSION}; prepare again")
    tokenizer = Tokenizer.load(directory / "tokenizer.json")
    if tokenizer.sha256 != meta["tokenizer_sha256"]:
        raise DataError(f"{directory / 'tokenizer.json'}: not the tokenizer meta.json was written with")
    itemsize = np.dtype(meta["dtype"]).itemsize
    hashes = HashCache(directory)
    for s in meta["shards"]:
        path = directory / s["file"]
        size = path.stat().st_size if path.is_file() else None
        if size != s["tokens"] * itemsize:
            found = "missing" if size is None else f"{size:,} bytes"
            raise DataError(f"{path}: {found}, expected {s['tokens'] * itemsize:,} ({s['tokens']:,} tokens); "
                            f"truncated? prepare again")
        # a flipped bit or a shard of another preparation of the same size would train on the wrong tokens
        if s.get("sha256") is not None and not hashes.matches(path, s["sha256"]):
            raise DataError(f"{path}: its SHA-256 is not the one meta.json recorded: the shard is corrupt or from "
                            f"another preparation; prepare again (delete {directory})")
    hashes.save()
    return PreparedData(directory, meta, tokenizer)


def load_current(cfg: Config, recipe: str = "with the run's recipe") -> PreparedData:
    """cfg's prepared directory, opened only while it is current. Never rebuilt here: a rebuild re-runs the
    recipe's clean, curate and augment stages, which is `lmforge prepare`'s work, not evaluation's."""
    directory = prepared_dir(cfg)
    if not is_current(directory, cfg):
        raise DataError(f"{directory}: the run's prepared data is missing or out of date; run lmforge prepare {recipe}")
    return load_prepared(directory)


def encode_file(tokenizer: Tokenizer, path: str | Path, cfg: DataConfig) -> tuple[np.ndarray, int]:
    """Tokens of a text file read with cfg's format settings (end-of-document ids included), and the
    number of UTF-8 bytes of its text."""
    n_bytes = 0

    def counted() -> Iterator[tuple[str, bool]]:
        nonlocal n_bytes
        for piece, end in iter_pieces(cfg.model_copy(update={"path": str(path)}), max_chars=PIECE_CHARS):
            n_bytes += len(piece.encode("utf-8"))
            yield piece, end

    arrays = list(encode_pieces(tokenizer, counted(), cfg.encode_batch_bytes, cfg.encoder))
    tokens = np.concatenate(arrays) if arrays else np.empty(0, token_dtype(tokenizer.vocab_size))
    return tokens, n_bytes
