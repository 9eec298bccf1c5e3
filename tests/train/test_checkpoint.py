import pytest
import torch
from torch import nn

from lmforge.errors import CheckpointError
from lmforge.train.checkpoint import load_weights, save_weights


class FlatWeights(nn.Module):
    """Two weights that are views of one buffer, as cuDNN flattens an LSTM's weights on CUDA, plus a tied pair."""

    def __init__(self):
        super().__init__()
        flat = torch.randn(12)
        self.a = nn.Parameter(flat[:6].view(2, 3))
        self.b = nn.Parameter(flat[6:].view(3, 2))
        self.emb = nn.Embedding(5, 4)
        self.head = nn.Linear(4, 5, bias=False)
        self.head.weight = self.emb.weight


def test_weights_that_share_memory_save_and_load(tmp_path):
    model = FlatWeights()
    save_weights(model, tmp_path / "model.safetensors")
    restored = FlatWeights()
    load_weights(restored, tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name
    assert restored.head.weight is restored.emb.weight


def test_weights_of_another_shape_are_a_clear_error(tmp_path):
    save_weights(FlatWeights(), tmp_path / "model.safetensors")
    other = FlatWeights()
    other.b = nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_weights(other, tmp_path)
