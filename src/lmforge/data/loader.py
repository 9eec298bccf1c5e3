"""Batches sliced straight from memory-mapped token shards: no per-token Python.

Training draws random windows (nanoGPT's `get_batch`), from one split or from a weighted mixture of sources;
evaluation walks non-overlapping windows in order.
Under DDP every rank draws the indices of the whole global micro-batch from the same generator and keeps
its own slice, so N ranks see exactly the windows one process with an N-times larger batch would see.
"""

from __future__ import annotations

import base64
from typing import Iterator

import numpy as np
import torch

from lmforge.errors import DataError


class RandomWindows:
    """Random (x, y) windows of block_size tokens; y is x shifted by one."""

    new_pass = False  # random windows carry no state between batches, so there is none to reset

    def __init__(self, segments: list[np.ndarray], block_size: int, micro_batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.segments = [s for s in segments if len(s) > block_size]
        if not self.segments:
            longest = max((len(s) for s in segments), default=0)
            raise DataError(f"training split has {longest} tokens in its longest segment; "
                            f"model.block_size={block_size} needs at least {block_size + 1}")
        # a window starting at i needs tokens i .. i+block_size (inclusive) for its shifted target
        self.ends = np.cumsum([len(s) - block_size for s in self.segments])
        self.block_size = block_size
        self.micro_batch_size = micro_batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.batches_drawn = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.micro_batch_size
        drawn = torch.randint(int(self.ends[-1]), (b * self.world_size,), generator=self.generator)
        mine = drawn[self.rank * b:(self.rank + 1) * b].numpy()
        which = np.searchsorted(self.ends, mine, side="right")
        starts = mine - np.concatenate([[0], self.ends[:-1]])[which]
        rows = [self.segments[w][s:s + self.block_size + 1] for w, s in zip(which, starts)]
        batch = torch.from_numpy(np.stack(rows).astype(np.int64))
        self.batches_drawn += 1
        return batch[:, :-1], batch[:, 1:]

    def state_dict(self) -> dict:
        state = self.generator.get_state().numpy().tobytes()
        return {"generator": base64.b64encode(state).decode(), "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        raw = np.frombuffer(base64.b64decode(state["generator"]), dtype=np.uint8).copy()
        self.generator.set_state(torch.from_numpy(raw))
        self.batches_drawn = state["batches_drawn"]


class MixtureWindows:
    """Random windows from a weighted mixture of sources (data.sources): each window goes to the source that is
    furthest behind its share (weight / total weight) of the windows drawn so far, as Megatron's blended datasets
    assign samples, so after n windows every source has had its share to within one window; the global batch's
    windows are then shuffled, and each is drawn uniformly within its source as `RandomWindows` draws it. The
    counts of windows drawn per source and one generator are the whole state, so a resumed run draws exactly
    what an uninterrupted one would, and every rank draws the whole global batch and keeps its slice, as
    `RandomWindows` does."""

    new_pass = False

    def __init__(self, sources: dict[str, tuple[list[np.ndarray], float]], block_size: int, micro_batch_size: int,
                 seed: int, rank: int = 0, world_size: int = 1):
        self.names = list(sources)
        self.segments, self.ends = [], []
        for name, (segments, _) in sources.items():
            kept = [s for s in segments if len(s) > block_size]
            if not kept:
                longest = max((len(s) for s in segments), default=0)
                raise DataError(f"source {name!r}: its training split has {longest} tokens in its longest segment; "
                                f"model.block_size={block_size} needs at least {block_size + 1}")
            self.segments.append(kept)
            self.ends.append(np.cumsum([len(s) - block_size for s in kept]))
        total = sum(weight for _, weight in sources.values())
        self.shares = [weight / total for _, weight in sources.values()]
        self.train_tokens = [int(sum(len(s) for s in segments)) for segments, _ in sources.values()]
        self.block_size = block_size
        self.micro_batch_size = micro_batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.drawn = [0] * len(self.names)  # windows drawn from each source, every rank's
        self.batches_drawn = 0

    def _assign(self, n: int) -> list[int]:
        """The sources of the next n windows, each the one furthest behind its share (the first on a tie)."""
        out = []
        for _ in range(n):
            done = sum(self.drawn) + 1
            lag = [share * done - drawn for share, drawn in zip(self.shares, self.drawn)]
            k = lag.index(max(lag))
            self.drawn[k] += 1
            out.append(k)
        return out

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.micro_batch_size
        which = np.array(self._assign(b * self.world_size))
        # shuffled within the global batch, so that no rank or row (batch warm-up trains on the first rows) keeps
        # to one source where the shares repeat in a fixed pattern
        which = which[torch.randperm(len(which), generator=self.generator).numpy()]
        starts = np.empty(len(which), dtype=np.int64)
        segment = np.empty(len(which), dtype=np.int64)
        for k, ends in enumerate(self.ends):  # in source order, from the one generator: the draws are fixed
            rows = np.flatnonzero(which == k)
            if len(rows):
                drawn = torch.randint(int(ends[-1]), (len(rows),), generator=self.generator).numpy()
                segment[rows] = np.searchsorted(ends, drawn, side="right")
                starts[rows] = drawn - np.concatenate([[0], ends[:-1]])[segment[rows]]
        mine = slice(self.rank * b, (self.rank + 1) * b)
        rows = [self.segments[k][w][s:s + self.block_size + 1]
                for k, w, s in zip(which[mine], segment[mine], starts[mine])]
        batch = torch.from_numpy(np.stack(rows).astype(np.int64))
        self.batches_drawn += 1
        return batch[:, :-1], batch[:, 1:]

    def epochs(self) -> dict[str, float]:
        """Passes over each source's training tokens that the windows drawn so far amount to (block_size
        targets a window)."""
        return {name: drawn * self.block_size / tokens
                for name, drawn, tokens in zip(self.names, self.drawn, self.train_tokens)}

    def state_dict(self) -> dict:
        state = self.generator.get_state().numpy().tobytes()
        return {"generator": base64.b64encode(state).decode(), "batches_drawn": self.batches_drawn,
                "drawn": dict(zip(self.names, self.drawn))}

    def load_state_dict(self, state: dict) -> None:
        if list(state.get("drawn", {})) != self.names:
            raise DataError(f"the checkpoint's mixture has sources {', '.join(state.get('drawn', {})) or 'none'}; "
                            f"this recipe's data.sources are {', '.join(self.names)}")
        raw = np.frombuffer(base64.b64decode(state["generator"]), dtype=np.uint8).copy()
        self.generator.set_state(torch.from_numpy(raw))
        self.batches_drawn = state["batches_drawn"]
        self.drawn = [state["drawn"][name] for name in self.names]


def eval_batches(segments: list[np.ndarray], block_size: int, batch_size: int,
                 max_windows: int | None = None, rank: int = 0, world_size: int = 1
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows that make every token of a segment but its first a target exactly once.

    A segment's last window is shorter and comes as a batch of its own. With world_size > 1 rank r takes
    windows r, r + world_size, ...; the caller sums losses across ranks.
    """
    windows = [(seg, start, min(block_size, len(seg) - 1 - start))
               for seg in segments for start in range(0, len(seg) - 1, block_size)]
    windows = windows[:max_windows][rank::world_size]
    full = [(seg, start) for seg, start, length in windows if length == block_size]
    for i in range(0, len(full), batch_size):
        batch = torch.from_numpy(np.stack([seg[s:s + block_size + 1] for seg, s in full[i:i + batch_size]]).astype(np.int64))
        yield batch[:, :-1], batch[:, 1:]
    for seg, start, length in windows:
        if length < block_size:
            batch = torch.from_numpy(seg[start:start + length + 1].astype(np.int64))[None]
            yield batch[:, :-1], batch[:, 1:]


class _Concatenated:
    """Segments read as one array without copying them all: read(lo, hi) copies only that slice."""

    def __init__(self, segments: list[np.ndarray]):
        self.segments = segments
        self.starts = np.concatenate([[0], np.cumsum([len(s) for s in segments])])
        self.size = int(self.starts[-1])

    def read(self, lo: int, hi: int) -> np.ndarray:
        first = int(np.searchsorted(self.starts, lo, side="right")) - 1
        parts = []
        for i in range(first, len(self.segments)):
            seg_lo = int(self.starts[i])
            if seg_lo >= hi:
                break
            parts.append(self.segments[i][max(lo - seg_lo, 0):hi - seg_lo])
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _stream_batch(tokens: _Concatenated, streams: range, stream_len: int, start: int, length: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tokens.read(j * stream_len + start, j * stream_len + start + length + 1) for j in streams]
    batch = torch.from_numpy(np.stack(rows).astype(np.int64))
    return batch[:, :-1], batch[:, 1:]


class StreamWindows:
    """Truncated BPTT: the split cut into parallel streams read window after window, so a recurrent model
    can carry its state from one window to the next (the `batchify` of PyTorch's word_language_model).

    The global batch has micro_batch_size x world_size streams; rank r reads streams r*b .. (r+1)*b-1,
    so N ranks see what one process with N-times more streams sees. After the last window of a pass the
    next batch starts the next pass, and `new_pass` is True for it: the caller resets its state.
    """

    def __init__(self, segments: list[np.ndarray], block_size: int, micro_batch_size: int,
                 rank: int = 0, world_size: int = 1):
        self.tokens = _Concatenated(segments)
        n_streams = micro_batch_size * world_size
        self.stream_len = (self.tokens.size - 1) // n_streams
        if self.stream_len < 1:
            raise DataError(f"training split has {self.tokens.size} tokens: too few for {n_streams} streams "
                            f"(train.micro_batch_size x world size)")
        self.block_size = block_size
        self.streams = range(rank * micro_batch_size, (rank + 1) * micro_batch_size)
        self.position = 0  # offset of the next window within each stream
        self.passes = 0
        self.new_pass = False

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position >= self.stream_len:
            self.position, self.passes = 0, self.passes + 1
        self.new_pass = self.position == 0
        length = min(self.block_size, self.stream_len - self.position)
        x, y = _stream_batch(self.tokens, self.streams, self.stream_len, self.position, length)
        self.position += length
        return x, y

    def state_dict(self) -> dict:
        return {"position": self.position, "passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.passes = state["position"], state["passes"]


def stream_eval_batches(segments: list[np.ndarray], block_size: int, n_streams: int
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(x, y, reset) windows for evaluating a recurrent model with carried state, predicting every token
    but the first exactly once: n_streams parallel streams, then the few tokens left over as one more
    stream. `reset` is True where a new set of streams starts (the state must be dropped)."""
    tokens = _Concatenated(segments)
    stream_len = (tokens.size - 1) // n_streams
    if stream_len:
        for start in range(0, stream_len, block_size):
            length = min(block_size, stream_len - start)
            yield (*_stream_batch(tokens, range(n_streams), stream_len, start, length), start == 0)
    done = stream_len * n_streams
    for start in range(done, tokens.size - 1, block_size):
        window = tokens.read(start, min(start + block_size + 1, tokens.size))
        batch = torch.from_numpy(window.astype(np.int64))[None]
        yield batch[:, :-1], batch[:, 1:], start == done
