"""Run a task over chunks of documents on all cores, results in input order, memory bounded.

`multiprocessing.Pool.imap` reads its whole input ahead of the workers; here at most `2 * workers` chunks
are in flight, so a corpus of any size streams through in constant memory. On Linux the workers are
forked after the task is built, so what the task loaded (a spelling dictionary, a language model) is
shared, not loaded again per worker.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing as mp
import os
import sys
from collections import deque
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

from lmforge.corpora import ReadStats
from lmforge.text.records import Doc

R = TypeVar("R")
CHUNK_CHARS = 1 << 20  # a chunk is about this much text: worth a trip to a worker, small enough to spread
CHUNK_DOCS = 2048

_task: Callable | None = None  # the task, in a worker process


def _install(task: Callable) -> None:
    global _task
    _task = task


def _run(chunk: list[Doc]):
    assert _task is not None
    return _task(chunk)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def chunks(docs: Iterable[Doc]) -> Iterator[list[Doc]]:
    """Consecutive documents in lists of about CHUNK_CHARS characters or CHUNK_DOCS documents."""
    chunk: list[Doc] = []
    size = 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc.text)
        if size >= CHUNK_CHARS or len(chunk) >= CHUNK_DOCS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def ordered_map(task: Callable[[list[Doc]], R], chunked: Iterable[list[Doc]],
                workers: int) -> Iterator[tuple[list[Doc], R]]:
    """(chunk, task(chunk)) for each chunk, in order; on `workers` processes when there are more than one
    of each (a single chunk is not worth starting processes for)."""
    chunked = iter(chunked)
    head = list(itertools.islice(chunked, 2))
    if workers <= 1 or len(head) < 2:
        for chunk in itertools.chain(head, chunked):
            yield chunk, task(chunk)
        return
    chunked = itertools.chain(head, chunked)
    method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform != "darwin" else "spawn"
    # A full garbage collection, in a worker or here, writes to every object it visits, and so copies each
    # page that the processes shared since the fork (about 20 MB for curation's task): a step up in memory
    # partway through a run. Collections leave frozen objects alone.
    gc.freeze()
    try:
        with mp.get_context(method).Pool(workers, initializer=_install, initargs=(task,)) as pool:
            pending: deque = deque()
            for chunk in chunked:
                pending.append((chunk, pool.apply_async(_run, (chunk,))))
                if len(pending) >= 2 * workers:
                    done, result = pending.popleft()
                    yield done, result.get()
            while pending:
                done, result = pending.popleft()
                yield done, result.get()
    finally:
        gc.unfreeze()


class Progress:
    """A bar over the input files' bytes read (MB/s) with documents per second beside it; silent off a
    terminal."""

    def __init__(self, stats: ReadStats, total_bytes: int | None, desc: str, enabled: bool):
        self.stats = stats
        self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc,
                        disable=not (enabled and sys.stderr.isatty()))
        self.docs = 0

    def update(self, docs: int) -> None:
        self.docs += docs
        self.bar.update(self.stats.bytes_read - self.bar.n)
        elapsed = self.bar.format_dict["elapsed"] or 1e-9
        self.bar.set_postfix_str(f"{self.docs / elapsed:,.0f} docs/s", refresh=False)

    def close(self) -> None:
        self.bar.close()
