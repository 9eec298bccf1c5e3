"""Duplicate detection: an exact key of normalised text, and MinHash LSH bands for near duplicates.

Workers compute each document's keys; the main process keeps the index. MinHash signatures come from
datasketch over word shingles; the band layout (b bands of r rows) is the one datasketch's `MinHashLSH`
picks for the threshold. The index itself is a dict per band from a 64-bit band key to the document
cluster that first had it, about 100 bytes per band per kept document, where datasketch's in-memory LSH
keeps a bytes key and a set per bucket; a query answers as `MinHashLSH.query` does (any band equal).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from functools import cache

import numpy as np

_WORD = re.compile(r"\w+")
_SHINGLE_MIX = np.uint64(0x100000001B3)
_BATCH = 8192  # shingles per datasketch update: bounds the (shingles x permutations) array it builds


def _key(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def exact_key(text: str) -> int:
    """64-bit key of the text lowercased with its whitespace collapsed."""
    return _key(" ".join(text.lower().split()).encode("utf-8", "surrogatepass"))


def _identity(value: int) -> int:
    return value  # shingles arrive as 32-bit hashes already


@cache
def band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) as datasketch's MinHashLSH picks them (it integrates error curves: half a second)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


class MinHasher:
    """Band keys of a document's MinHash over `shingle_size`-word shingles of its lowercased words."""

    def __init__(self, num_perm: int, threshold: float, shingle_size: int, seed: int = 1):
        from datasketch import MinHash

        self.bands, self.rows = band_layout(threshold, num_perm)
        self.shingle_size = shingle_size
        self.template = MinHash(num_perm=num_perm, seed=seed, hashfunc=_identity)

    def shingles(self, text: str) -> np.ndarray:
        """32-bit hashes of the word shingles (one shingle of all words for a shorter document)."""
        words = _WORD.findall(text.lower())
        crc = {w: zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in dict.fromkeys(words)}  # once per word
        hashes = np.fromiter(map(crc.__getitem__, words), np.uint64, len(words))
        k = min(self.shingle_size, len(hashes))
        if k == 0:
            return hashes
        count = len(hashes) - k + 1
        mixed = hashes[:count].copy()
        for j in range(1, k):
            mixed = mixed * _SHINGLE_MIX + hashes[j:j + count]  # wraps modulo 2**64, as meant
        return (mixed ^ (mixed >> np.uint64(32))) & np.uint64(0xFFFFFFFF)

    def band_keys(self, text: str) -> tuple[int, ...]:
        """One key per LSH band; empty for a document without words."""
        shingles = self.shingles(text)
        if not len(shingles):
            return ()
        m = self.template.copy()
        for start in range(0, len(shingles), _BATCH):
            m.update_batch(shingles[start:start + _BATCH].tolist())
        rows = m.hashvalues[:self.bands * self.rows].reshape(self.bands, self.rows)
        return tuple(_key(row.tobytes()) for row in rows)


class BandIndex:
    """Which cluster (the key of its first document) first had each band key."""

    def __init__(self, bands: int):
        self.tables: list[dict[int, int]] = [{} for _ in range(bands)]

    def __len__(self) -> int:
        return len(self.tables[0])

    def query(self, keys: tuple[int, ...]) -> int | None:
        for table, key in zip(self.tables, keys):
            cluster = table.get(key)
            if cluster is not None:
                return cluster
        return None

    def insert(self, keys: tuple[int, ...], cluster: int) -> None:
        for table, key in zip(self.tables, keys):
            table.setdefault(key, cluster)
