import numpy as np
import pytest
import torch

from lmforge.data.loader import RandomWindows, eval_batches
from lmforge.errors import DataError


def test_random_windows_are_shifted_slices_of_the_segments():
    segs = [np.arange(0, 100, dtype=np.uint16), np.arange(1000, 1050, dtype=np.uint16)]
    loader = RandomWindows(segs, block_size=8, micro_batch_size=64, seed=0)
    x, y = loader.next_batch()
    assert x.shape == y.shape == (64, 8) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y[:, -1] - x[:, -1], torch.ones(64, dtype=torch.int64))  # never crosses a segment
    assert (x[:, 0] >= 1000).any() and (x[:, 0] < 1000).any()


def test_ranks_split_the_global_batch_exactly():
    segs = [np.arange(500, dtype=np.uint16)]
    whole = RandomWindows(segs, 16, 8, seed=3)
    halves = [RandomWindows(segs, 16, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        x, _ = whole.next_batch()
        parts = [h.next_batch()[0] for h in halves]
        assert torch.equal(x, torch.cat(parts))


def test_state_dict_resumes_the_same_stream():
    segs = [np.arange(300, dtype=np.uint16)]
    a = RandomWindows(segs, 8, 4, seed=1)
    a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch()[0] for _ in range(3)]
    b = RandomWindows(segs, 8, 4, seed=99)
    b.load_state_dict(state)
    assert all(torch.equal(e, b.next_batch()[0]) for e in expected)
    assert b.batches_drawn == a.batches_drawn


def test_too_short_split_names_block_size():
    with pytest.raises(DataError, match="block_size=64"):
        RandomWindows([np.arange(50, dtype=np.uint16)], 64, 4, seed=0)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_batches_predict_every_token_once(world_size):
    segs = [np.arange(1, 104, dtype=np.uint16), np.arange(200, 210, dtype=np.uint16)]
    targets = []
    for rank in range(world_size):
        for x, y in eval_batches(segs, block_size=16, batch_size=4, rank=rank, world_size=world_size):
            assert torch.equal(y - x, torch.ones_like(y)) and x.shape[1] <= 16
            targets.extend(y.flatten().tolist())
    assert sorted(targets) == list(range(2, 104)) + list(range(201, 210))


def test_eval_batches_max_windows():
    segs = [np.arange(1000, dtype=np.uint16)]
    batches = list(eval_batches(segs, 10, 4, max_windows=5))
    assert sum(x.shape[0] for x, _ in batches) == 5
