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


class _RunsCode:
    """A pickle that runs a command when loaded: what a tampered optimizer.pt could hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_as_optimizer_state_is_refused_unrun(tiny_overrides, tmp_path):
    from typer.testing import CliRunner

    from lmforge.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", *tiny_overrides, "train.max_steps=10", "train.report=false",
                               "sample.num_samples=0", "--run-dir", str(run), "--no-progress"]).exit_code == 0
    marker = tmp_path / "pwned"
    torch.save({"state": _RunsCode(marker)}, run / "checkpoints" / "step-10" / "optimizer.pt")
    result = runner.invoke(app, ["train", "--resume", str(run), "train.max_steps=20", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert not marker.exists()  # weights_only=True: the pickle's code never ran
    (line,) = result.output.strip().splitlines()
    assert "optimizer.pt" in line or "step-10" in line, line


def test_nothing_lmforge_loads_can_run_code():
    """The audit behind the test above: every torch.load passes weights_only=True, nothing unpickles, and
    no Hugging Face load trusts remote code."""
    import re
    from pathlib import Path

    import lmforge

    found = []
    for path in Path(lmforge.__file__).parent.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for start in (m.end() for m in re.finditer(r"torch\.load\(", text)):
            depth, end = 1, start
            while depth:  # to the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            if "weights_only=True" not in text[start:end]:
                found.append(f"{path.name}: torch.load({text[start:end]}")
        found += [f"{path.name}: pickle" for _ in re.findall(r"^\s*import pickle|pickle\.loads?\(", text, re.M)]
        found += [f"{path.name}: trust_remote_code" for _ in re.findall(r"trust_remote_code\s*=\s*True", text)]
    assert not found, found
    assert len([p for p in Path(lmforge.__file__).parent.rglob("*.py") if "torch.load(" in p.read_text()]) >= 1
