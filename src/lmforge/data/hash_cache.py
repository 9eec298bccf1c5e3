"""SHA-256 checks remembered per file, so that a prepared directory's shards are hashed once, not at every load.

Opening prepared data checks every shard against the SHA-256 its meta.json recorded (a flipped bit or a shard
of another preparation of the same size would otherwise train on the wrong tokens). Hashing a few GB at every
`train`, `eval` or resume is most of their start-up, so a check that passed is remembered with the file's stat
(device, inode, size, modification and change times) in the user's cache dir, and skipped while the stat is
unchanged: git's index and rsync's quick check make the same bargain. Any write, copy, rename over or
hard-link changes the stat, so the file is hashed again; only a change that leaves every one of those fields
alone (a disk's own bit rot) goes unseen until the stat changes.

A check is remembered only for a file last changed more than a second before it was hashed: a file's times
have the clock's granularity, and a write within the same tick as the check could otherwise leave the stat
as it was (git's "racy clean" entries). A cache that cannot be read or written is ignored: the files are
hashed every time, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from lmforge.errors import LmforgeError
from lmforge.io import atomic_write_json, sha256_file, user_cache_dir

SETTLED_NS = 1_000_000_000  # a file's times are trusted only this long after its last change


def _stamp(stat: os.stat_result, sha256: str) -> list:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, sha256]


class HashCache:
    """The checks remembered for the files of one directory. `matches(path, sha256)` hashes only a file whose
    stat changed since it last matched; `save()` writes what was learnt."""

    def __init__(self, directory: Path):
        key = hashlib.sha256(str(directory.resolve()).encode("utf-8")).hexdigest()[:32]
        self.path = user_cache_dir() / "verified" / f"{key}.json"
        try:
            stamps = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stamps = {}
        self.stamps: dict = stamps if isinstance(stamps, dict) else {}
        self.changed = False

    def matches(self, path: Path, sha256: str) -> bool:
        stat = path.stat()  # before hashing: a write during the hash changes it, so it is not remembered stale
        stamp = _stamp(stat, sha256)
        if self.stamps.get(path.name) == stamp:
            return True
        if sha256_file(path) != sha256:
            return False
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > SETTLED_NS:
            self.stamps[path.name] = stamp
            self.changed = True
        return True

    def save(self) -> None:
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, self.stamps)
        except (OSError, LmforgeError):  # a read-only home: the checks are simply made again next time
            pass
