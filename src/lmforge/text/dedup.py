"""Duplicate detection: an exact key of normalised text, and MinHash LSH bands for near duplicates.

Workers compute each document's keys; the main process keeps the index. MinHash signatures come from
datasketch over word shingles; the band layout (b bands of r rows) is the one datasketch's `MinHashLSH`
picks for the threshold. The index (`DupIndex`) lives in an SQLite database in a scratch folder, so that
curation's memory does not grow with the corpus; a query answers as `MinHashLSH.query` does (any band
equal), and the document cluster it gives is the one of the first document that had the band.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import zlib
from functools import cache
from pathlib import Path
from typing import Iterable

import numpy as np

_WORD = re.compile(r"\w+")
_SHINGLE_MIX = np.uint64(0x100000001B3)
_BATCH = 8192  # shingles per datasketch update: bounds the (shingles x permutations) array it builds
_LOOKUP = 250  # keys per SELECT: enough to share a statement's cost, under SQLite's oldest limit of 999 parameters
_FLUSH = 1 << 15  # new keys held in memory before they go to the database, sorted, in one transaction
_CACHE_KIB = 8192  # SQLite page cache: the database's memory, whatever its size on disk
_UNKNOWN = object()


def _key(data: bytes, signed: bool = False) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=signed)


def _signed(key: int) -> int:
    return key - ((key >> 63) << 64)  # SQLite integers are signed 64-bit


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
        """One signed 64-bit key per LSH band, the band's number hashed in so that all bands share one table;
        empty for a document without words."""
        shingles = self.shingles(text)
        if not len(shingles):
            return ()
        m = self.template.copy()
        for start in range(0, len(shingles), _BATCH):
            m.update_batch(shingles[start:start + _BATCH].tolist())
        rows = m.hashvalues[:self.bands * self.rows].reshape(self.bands, self.rows)
        return tuple(_key(band.to_bytes(4, "little") + row.tobytes(), signed=True) for band, row in enumerate(rows))


def open_scratch_db(path: Path) -> sqlite3.Connection:
    """An SQLite database for data that only lives as long as the run: no journal, no syncing, one user."""
    db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
    # 16 KiB pages: curation's index costs about 15% less than with the default 4 KiB
    for pragma in ("page_size = 16384", "journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE",
                   f"cache_size = -{_CACHE_KIB}"):
        db.execute(f"PRAGMA {pragma}")
    return db


class DupIndex:
    """The exact keys seen, and the cluster (the exact key of its first document) that first had each band key.

    A statement per key costs about twice a key's share of a statement of a few hundred, so a chunk's keys
    are looked up together (`prefetch`) into views that serve the chunk; new keys wait in memory and go to
    the database in large sorted batches. A key not prefetched is asked for alone: slower, still right.
    """

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        db.execute("CREATE TABLE exact (key INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE bands (key INTEGER PRIMARY KEY, cluster INTEGER NOT NULL)")
        self.new_exact: set[int] = set()  # added since the last write to the database
        self.new_bands: dict[int, int] = {}
        self.exact_view: dict[int, int | None] = {}  # prefetched keys and keys added since: 1, or None where absent
        self.band_view: dict[int, int | None] = {}  # the same for band keys: the cluster, or None
        self.exact_keys = 0
        self.first_band_keys = 0

    def _select(self, table: str, value: str, keys: set[int]) -> dict[int, int | None]:
        found: dict[int, int | None] = dict.fromkeys(keys)
        sql = f"SELECT key, {value} FROM {table} WHERE key IN ({', '.join('?' * _LOOKUP)})"
        keys_list = list(keys)
        for start in range(0, len(keys_list), _LOOKUP):
            batch = keys_list[start:start + _LOOKUP]
            batch += batch[-1:] * (_LOOKUP - len(batch))  # one statement text, so SQLite prepares it once
            found.update(self.db.execute(sql, batch))
        return found

    def prefetch(self, exact: Iterable[int], bands: Iterable[int]) -> None:
        """Look up the exact keys and band keys the next documents will ask about."""
        if len(self.new_exact) + len(self.new_bands) >= _FLUSH:
            self._flush()
        # keys still waiting to be written are left out, so that a lookup finds them where they wait
        self.exact_view = self._select("exact", "1", {_signed(k) for k in exact} - self.new_exact)
        self.band_view = self._select("bands", "cluster", set(bands) - self.new_bands.keys())

    def seen(self, key: int) -> bool:
        """Whether the exact key was added before."""
        key = _signed(key)
        present = self.exact_view.get(key, _UNKNOWN)
        if present is _UNKNOWN:
            present = 1 if key in self.new_exact else self.db.execute(
                "SELECT 1 FROM exact WHERE key = ?", (key,)).fetchone()
        return present is not None

    def add(self, key: int) -> None:
        key = _signed(key)
        self.new_exact.add(key)
        self.exact_view[key] = 1
        self.exact_keys += 1
        self._flush_if_overfull()

    def _band(self, key: int) -> int | None:
        cluster = self.new_bands.get(key)
        if cluster is None:
            row = self.db.execute("SELECT cluster FROM bands WHERE key = ?", (key,)).fetchone()
            cluster = row[0] if row else None
        return cluster

    def query(self, bands: tuple[int, ...]) -> tuple[int | None, list[int | None]]:
        """(the cluster of the first band, in band order, that an earlier document had, else None; what each
        band key maps to now, for `insert`)."""
        view = self.band_view
        found = [view.get(key, _UNKNOWN) for key in bands]
        if _UNKNOWN in found:
            found = [self._band(key) if c is _UNKNOWN else c for key, c in zip(bands, found)]
        first = next((c for c in found if c is not None), None)
        return (None if first is None else first & 0xFFFF_FFFF_FFFF_FFFF), found

    def insert(self, bands: tuple[int, ...], found: list[int | None], cluster: int) -> None:
        """Give to `cluster` each band key that `query` found no earlier document had."""
        cluster = _signed(cluster)
        for key, had in zip(bands, found):
            if had is None:
                self.new_bands[key] = self.band_view[key] = cluster
        self.first_band_keys += found[0] is None
        self._flush_if_overfull()

    def _flush_if_overfull(self) -> None:
        # prefetch writes at _FLUSH; this bound is for callers that never prefetch, whose views only grow
        if len(self.new_exact) + len(self.new_bands) >= 4 * _FLUSH:
            self._flush()

    def _flush(self) -> None:
        # in key order, consecutive inserts land on the same B-tree pages: curation's index costs 40% less
        # than inserting in arrival order
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO exact VALUES (?)", zip(sorted(self.new_exact)))
        keys = sorted(self.new_bands)
        self.db.executemany("INSERT INTO bands VALUES (?, ?)", zip(keys, map(self.new_bands.__getitem__, keys)))
        self.db.execute("COMMIT")
        self.new_exact, self.new_bands = set(), {}
        self.exact_view, self.band_view = {}, {}  # the database now answers for everything they held
