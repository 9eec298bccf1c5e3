"""Atomic file writes: a killed process never leaves a half-written file that looks complete.

A file or directory is built under a hidden temporary name beside its final one (`.NAME.tmp-PID`) and renamed
when whole. A process killed mid-write leaves that temporary behind; the next write of the same name removes
it once its PID is gone. A disk that is full or read-only (`ENOSPC`, `EDQUOT`, `EROFS`) is a `WriteError`
naming the final path, with the temporary removed and whatever was under the final name left as it was.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lmforge.errors import LmforgeError, WriteError

# the write failed because of the disk, not the data: the user can free space or pick another folder
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def disk_error(path: str | Path, err: OSError) -> WriteError:
    return WriteError(f"{path}: cannot write: {os.strerror(err.errno)}")


def _as_write_error(path: Path, err: Exception) -> WriteError | None:
    """The one-line WriteError for a write that failed because of where it goes (the disk, permissions, a
    directory or a file in the way), else None. torch.save reports a full disk as a RuntimeError and
    safetensors as a SafetensorError, neither with an errno, so when the error is not an OSError the file
    system is asked: read-only, or under 16 MiB free at the moment of the failure."""
    if isinstance(err, OSError):
        if err.errno in DISK_ERRNOS | {errno.EACCES, errno.EPERM}:
            return disk_error(path, err)
        if err.errno == errno.EISDIR:
            return WriteError(f"{path}: is a directory; give a file name")
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if err.errno in (errno.ENOTDIR, errno.EEXIST) and blocker is not None:
            return WriteError(f"{path}: cannot write: {blocker} is a file, not a folder")
        return None
    if isinstance(err, LmforgeError):
        return None
    try:
        fs = os.statvfs(path.parent)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return disk_error(path, OSError(errno.EROFS, os.strerror(errno.EROFS)))
    if fs.f_bavail * fs.f_frsize < 16 << 20:
        return disk_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    return None


def user_cache_dir() -> Path:
    """Where lmforge keeps what it measures or builds once per machine: $LMFORGE_CACHE_DIR, else
    $XDG_CACHE_HOME/lmforge, else ~/.cache/lmforge."""
    if os.environ.get("LMFORGE_CACHE_DIR"):
        return Path(os.environ["LMFORGE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmforge"


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (a temporary's owner, say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clear_stale(path: Path) -> None:
    """Remove the temporaries that dead processes left beside `path` (`.NAME.tmp-PID`, `.NAME.old-PID`)."""
    _clear_dead(path.parent, re.escape(path.name))


def clear_stale_in(folder: Path) -> None:
    """Remove the temporaries that dead processes left in `folder`, whatever they were named for (a pruned
    checkpoint moved aside by a run killed while removing it)."""
    _clear_dead(folder, r"[^/]+?")


def _clear_dead(folder: Path, name: str) -> None:
    pattern = re.compile(rf"\.{name}\.(?:tmp|old)-(\d+)")
    if not folder.is_dir():
        return
    for leftover in folder.iterdir():
        m = pattern.fullmatch(leftover.name)
        if m and not pid_alive(int(m.group(1))):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _tmp_beside(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clear_stale(path)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except Exception as e:
        if (refused := _as_write_error(path, e)) is not None:
            raise refused from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success fsync its files and rename it to `path`. A directory already at
    `path` is moved aside first and removed only once the new one is in place."""
    path = Path(path)
    tmp, old = _tmp_beside(path), _tmp_beside(path, "old")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clear_stale(path)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        yield tmp
        for folder in [tmp, *(d for d in tmp.rglob("*") if d.is_dir())]:
            for f in folder.iterdir():
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
            fsync_dir(folder)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except Exception as e:
        if (refused := _as_write_error(path, e)) is not None:
            raise refused from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on `lock_file`, waiting for another holder; the kernel releases it when
    its holder dies, so a killed process never holds it."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process {what}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
