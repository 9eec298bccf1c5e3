"""Duplicate detection: an exact key of normalised text, and MinHash LSH bands for near duplicates.

Workers compute each document's keys and the set of its word shingles; the main process keeps the index.
Near duplicates are found in two steps. MinHash signatures (datasketch) in bands of rows make candidates:
any band equal to one of an earlier document's. The band layout is chosen for recall (`band_layout`): a
pair at the threshold becomes a candidate with probability 0.999. Each candidate is then verified: the
exact Jaccard similarity of the two shingle sets must reach the threshold. So the threshold means what it
says (no pair below it is a duplicate), and what LSH misses is only the rare pair above it that shares no
band. The index (`DupIndex`) lives in an SQLite database in a scratch folder, so that curation's memory
does not grow with the corpus: per document its shingle set, and per band key the first document that had it.
"""

from __future__ import annotations

import hashlib
import math
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
_FLUSH_BYTES = 1 << 24  # shingle sets held in memory before they go to the database (a 1 Mi-character document's: ~0.7 MB)
_CACHE_KIB = 8192  # SQLite page cache: the database's memory, whatever its size on disk
_MISS = 1e-3  # the chance that LSH misses a pair exactly at the threshold (more above it: 1e-5 at +0.05)
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
    """(bands, rows) of the LSH candidates: a pair with Jaccard similarity `threshold` shares a band with
    probability 1 - (1 - threshold^rows)^bands >= 1 - _MISS. Of the layouts within `num_perm` that do, the one
    with the most rows per band (the fewest chance candidates among dissimilar pairs, each of which costs a
    verification), with the fewest bands for them (the fewest index keys); (num_perm, 1) where none does."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = math.ceil(math.log(_MISS) / math.log1p(-threshold ** rows))
        if bands * rows <= num_perm:
            best = (bands, rows)
    return best


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted arrays of distinct shingle hashes."""
    if not len(a) or not len(b):
        return float(len(a) == len(b))
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


class MinHasher:
    """A document's shingle set (`shingle_size`-word shingles of its lowercased words) and its LSH band keys."""

    def __init__(self, num_perm: int, threshold: float, shingle_size: int, seed: int = 1):
        from datasketch import MinHash

        self.bands, self.rows = band_layout(threshold, num_perm)
        self.shingle_size = shingle_size
        # only the permutations the bands use: num_perm is how many the layout may use
        self.template = MinHash(num_perm=self.bands * self.rows, seed=seed, hashfunc=_identity)

    def shingles(self, text: str) -> np.ndarray:
        """Sorted distinct 32-bit hashes of the word shingles (one shingle of all words for a shorter document)."""
        words = _WORD.findall(text.lower())
        crc = {w: zlib.crc32(w.encode("utf-8", "surrogatepass")) for w in dict.fromkeys(words)}  # once per word
        hashes = np.fromiter(map(crc.__getitem__, words), np.uint64, len(words))
        k = min(self.shingle_size, len(hashes))
        if k == 0:
            return hashes.astype(np.uint32)
        count = len(hashes) - k + 1
        mixed = hashes[:count].copy()
        for j in range(1, k):
            mixed = mixed * _SHINGLE_MIX + hashes[j:j + count]  # wraps modulo 2**64, as meant
        return np.unique(((mixed ^ (mixed >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32))

    def band_keys(self, shingles: np.ndarray) -> tuple[int, ...]:
        """One signed 64-bit key per LSH band of the shingle set, the band's number hashed in so that all
        bands share one table; empty for a document without words."""
        if not len(shingles):
            return ()
        m = self.template.copy()
        for start in range(0, len(shingles), _BATCH):
            m.update_batch(shingles[start:start + _BATCH].tolist())
        rows = m.hashvalues.reshape(self.bands, self.rows)
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
    """The exact keys seen; the documents indexed for near duplicates (their cluster, the exact key of the
    cluster's first document, and their shingle set); and for each band key the first document that had it.

    A statement per key costs about twice a key's share of a statement of a few hundred, so a chunk's keys
    are looked up together (`prefetch`) into views that serve the chunk; new keys and documents wait in
    memory and go to the database in large sorted batches. A key not prefetched is asked for alone: slower,
    still right. A candidate's shingle set is read when it is verified, which few documents need.
    """

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        db.execute("CREATE TABLE exact (key INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE bands (key INTEGER PRIMARY KEY, doc INTEGER NOT NULL)")
        db.execute("CREATE TABLE docs (doc INTEGER PRIMARY KEY, cluster INTEGER NOT NULL, shingles BLOB NOT NULL)")
        self.new_exact: set[int] = set()  # added since the last write to the database
        self.new_bands: dict[int, int] = {}
        self.new_docs: dict[int, tuple[int, np.ndarray]] = {}  # document number -> (cluster, shingle set)
        self.new_bytes = 0  # of the shingle sets in new_docs
        self.exact_view: dict[int, int | None] = {}  # prefetched keys and keys added since: 1, or None where absent
        self.band_view: dict[int, int | None] = {}  # the same for band keys: the document, or None
        self.exact_keys = 0
        self.documents = 0
        self.verified = 0  # candidates whose shingle sets were compared

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
        if len(self.new_exact) + len(self.new_bands) >= _FLUSH or self.new_bytes >= _FLUSH_BYTES:
            self._flush()
        # keys still waiting to be written are left out, so that a lookup finds them where they wait
        self.exact_view = self._select("exact", "1", {_signed(k) for k in exact} - self.new_exact)
        self.band_view = self._select("bands", "doc", set(bands) - self.new_bands.keys())

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
        doc = self.new_bands.get(key)
        if doc is None:
            row = self.db.execute("SELECT doc FROM bands WHERE key = ?", (key,)).fetchone()
            doc = row[0] if row else None
        return doc

    def _doc(self, doc: int) -> tuple[int, np.ndarray]:
        held = self.new_docs.get(doc)
        if held is not None:
            return held
        cluster, blob = self.db.execute("SELECT cluster, shingles FROM docs WHERE doc = ?", (doc,)).fetchone()
        return cluster, np.frombuffer(blob, np.uint32)

    def query(self, bands: tuple[int, ...], shingles: np.ndarray, threshold: float) -> tuple[int | None, list[int | None]]:
        """(the cluster of the first candidate, in band order, whose shingle set has Jaccard similarity at
        least `threshold` with `shingles`, else None; the document each band key maps to now, for `insert`)."""
        view = self.band_view
        found = [view.get(key, _UNKNOWN) for key in bands]
        if _UNKNOWN in found:
            found = [self._band(key) if d is _UNKNOWN else d for key, d in zip(bands, found)]
        for doc in dict.fromkeys(d for d in found if d is not None):
            cluster, theirs = self._doc(doc)
            self.verified += 1
            if jaccard(shingles, theirs) >= threshold:
                return cluster & 0xFFFF_FFFF_FFFF_FFFF, found
        return None, found

    def insert(self, bands: tuple[int, ...], found: list[int | None], cluster: int, shingles: np.ndarray) -> None:
        """Index a document of `cluster` and give it each band key that `query` found no earlier document had."""
        doc = self.documents
        self.documents += 1
        self.new_docs[doc] = (_signed(cluster), shingles)
        self.new_bytes += shingles.nbytes
        for key, had in zip(bands, found):
            if had is None:
                self.new_bands[key] = self.band_view[key] = doc
        self._flush_if_overfull()

    def _flush_if_overfull(self) -> None:
        # prefetch writes at _FLUSH; this bound is for callers that never prefetch, whose views only grow
        if len(self.new_exact) + len(self.new_bands) >= 4 * _FLUSH or self.new_bytes >= 4 * _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        # in key order, consecutive inserts land on the same B-tree pages: curation's index costs 40% less
        # than inserting in arrival order (document numbers arrive in order already)
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO exact VALUES (?)", zip(sorted(self.new_exact)))
        keys = sorted(self.new_bands)
        self.db.executemany("INSERT INTO bands VALUES (?, ?)", zip(keys, map(self.new_bands.__getitem__, keys)))
        self.db.executemany("INSERT INTO docs VALUES (?, ?, ?)",
                            ((doc, cluster, shingles.tobytes()) for doc, (cluster, shingles) in self.new_docs.items()))
        self.db.execute("COMMIT")
        self.new_exact, self.new_bands, self.new_docs, self.new_bytes = set(), {}, {}, 0
        self.exact_view, self.band_view = {}, {}  # the database now answers for everything they held
