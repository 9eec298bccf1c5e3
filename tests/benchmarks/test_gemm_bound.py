"""benchmarks/gemm_bound.py counts the matrix products a training step makes with each linear layer."""

import importlib.util
from pathlib import Path

import torch

from lmforge.config import GPTConfig
from lmforge.models import build_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gemm_bound.py"
spec = importlib.util.spec_from_file_location("gemm_bound", SCRIPT)
gemm_bound = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gemm_bound)


def test_a_step_makes_three_products_per_linear_layer_and_6mkn_flops():
    model = build_model(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=30))
    x = torch.randint(0, 30, (3, 8))
    shapes = gemm_bound.linear_shapes(model, x)
    # per block: q/k/v, attention output, MLP in, MLP out; then the head; every one over the 24 tokens
    assert shapes == {(24, 16, 48): 2, (24, 16, 16): 2, (24, 16, 64): 2, (24, 64, 16): 2, (24, 16, 30): 1}
    products = gemm_bound.products(shapes)
    assert sum(products.values()) == 3 * 9
    assert products[((24, 16), (16, 48))] == 2  # a forward product
    assert products[((24, 48), (48, 16))] == 2  # its input gradient
    assert products[((48, 24), (24, 16))] == 2  # its weight gradient
    flops = sum(2 * a[0] * a[1] * b[1] * n for (a, b), n in products.items())
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert flops == 6 * 24 * linear
