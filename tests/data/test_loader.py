import numpy as np
import pytest
import torch

from lmforge.data.loader import MixtureWindows, RandomWindows, StreamWindows, eval_batches, stream_eval_batches
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


def mixture_sources() -> dict:
    """Three sources told apart by their token ids (a: 0.., b: 10000.., c: 20000..), weighted 3 : 1 : 0.5."""
    return {"a": ([np.arange(0, 400, dtype=np.uint16), np.arange(400, 1000, dtype=np.uint16)], 3.0),
            "b": ([np.arange(10000, 10500, dtype=np.uint16)], 1.0),
            "c": ([np.arange(20000, 20300, dtype=np.uint16)], 0.5)}


def source_of(x: torch.Tensor) -> np.ndarray:
    return (x[:, 0] // 10000).numpy()


@pytest.mark.parametrize("micro_batch_size", [1, 7, 64])
def test_mixture_proportions_are_within_2_percent_of_the_weights_over_10k_windows(micro_batch_size):
    loader = MixtureWindows(mixture_sources(), block_size=16, micro_batch_size=micro_batch_size, seed=0)
    drawn = []
    while len(drawn) < 10_000:
        x, y = loader.next_batch()
        assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1] - x[:, -1], torch.ones(len(x), dtype=torch.int64))
        assert (x // 10000 == x[:, :1] // 10000).all()  # a window never leaves its source
        drawn.extend(source_of(x))
    shares = np.bincount(drawn[:10_000], minlength=3) / 10_000
    assert np.allclose(shares, np.array([3, 1, 0.5]) / 4.5, rtol=0.02)  # within 2 % of each source's share
    epochs = loader.epochs()
    assert epochs["b"] == pytest.approx(loader.drawn[1] * 16 / 500) and set(epochs) == {"a", "b", "c"}


def test_mixture_windows_cover_each_source_and_are_shuffled_over_rows():
    loader = MixtureWindows(mixture_sources(), block_size=16, micro_batch_size=4, seed=1)
    batches = [loader.next_batch()[0] for _ in range(300)]
    firsts = {int(source_of(x)[0]) for x in batches}
    assert firsts == {0, 1, 2}  # the first row (what batch warm-up keeps) is not always one source
    starts = torch.cat([x[:, 0] for x in batches])
    a = starts[starts < 1000]
    assert (a < 400 - 16).any() and (a >= 400).any()  # both of a's segments
    assert a.max() <= 1000 - 17 and starts[starts >= 20000].max() <= 20300 - 17  # windows end inside their segment


def test_mixture_ranks_split_the_global_batch_and_state_resumes_exactly():
    whole = MixtureWindows(mixture_sources(), 16, 6, seed=3)
    halves = [MixtureWindows(mixture_sources(), 16, 3, seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(4):
        x, _ = whole.next_batch()
        assert torch.equal(x, torch.cat([h.next_batch()[0] for h in halves]))
    state = whole.state_dict()
    expected = [whole.next_batch()[0] for _ in range(5)]
    fresh = MixtureWindows(mixture_sources(), 16, 6, seed=99)
    fresh.load_state_dict(state)
    assert all(torch.equal(e, fresh.next_batch()[0]) for e in expected)
    assert fresh.drawn == whole.drawn and fresh.epochs() == whole.epochs()
    other = MixtureWindows({k: v for k, v in mixture_sources().items() if k != "c"}, 16, 6, seed=3)
    with pytest.raises(DataError, match="mixture has sources a, b, c; this recipe's data.sources are a, b"):
        other.load_state_dict(state)


def test_mixture_source_too_short_is_named():
    sources = {**mixture_sources(), "tiny": ([np.arange(30000, 30010, dtype=np.uint16)], 1.0)}
    with pytest.raises(DataError, match="source 'tiny'.*block_size=16"):
        MixtureWindows(sources, 16, 4, seed=0)


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


def test_stream_windows_are_consecutive_per_stream_and_wrap():
    segs = [np.arange(0, 60, dtype=np.uint16), np.arange(60, 101, dtype=np.uint16)]  # 101 tokens
    loader = StreamWindows(segs, block_size=7, micro_batch_size=4)
    assert loader.stream_len == 25
    seen = []
    for _ in range(4):  # 7 + 7 + 7 + 4 = one pass of 25
        x, y = loader.next_batch()
        assert torch.equal(y - x, torch.ones_like(x))
        seen.append(x)
    whole = torch.cat(seen, dim=1)
    assert torch.equal(whole, torch.arange(100).view(4, 25))  # crosses the segment boundary seamlessly
    assert not loader.new_pass
    x, _ = loader.next_batch()
    assert loader.new_pass and loader.passes == 1 and torch.equal(x[:, 0], torch.tensor([0, 25, 50, 75]))


def test_stream_windows_ranks_and_resume():
    segs = [np.arange(500, dtype=np.uint16)]
    whole = StreamWindows(segs, 10, 6)
    ranks = [StreamWindows(segs, 10, 3, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        assert torch.equal(whole.next_batch()[0], torch.cat([r.next_batch()[0] for r in ranks]))
    state = whole.state_dict()
    expected = whole.next_batch()[0]
    fresh = StreamWindows(segs, 10, 6)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.next_batch()[0], expected)


@pytest.mark.parametrize("n_streams", [1, 3, 7])
def test_stream_eval_predicts_every_token_once(n_streams):
    segs = [np.arange(1, 80, dtype=np.uint16), np.arange(80, 104, dtype=np.uint16)]
    targets, resets = [], 0
    for x, y, reset in stream_eval_batches(segs, block_size=5, n_streams=n_streams):
        assert torch.equal(y - x, torch.ones_like(x))
        targets.extend(y.flatten().tolist())
        resets += reset
    assert sorted(targets) == list(range(2, 104))
    assert resets == (2 if 102 % n_streams else 1)  # 102 targets: leftovers get a stream of their own
