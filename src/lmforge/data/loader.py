"""Batches sliced straight from memory-mapped token shards: no per-token Python.

Training draws random windows (nanoGPT's `get_batch`); evaluation walks non-overlapping windows in order.
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
