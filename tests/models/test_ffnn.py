import pytest
import torch
import torch.nn.functional as F

from lmforge.config import FFNNConfig
from lmforge.errors import ConfigError
from lmforge.generate import generate
from lmforge.models import build_model
from lmforge.models.ffnn import FFNN


def tiny(**overrides) -> FFNNConfig:
    return FFNNConfig(**{**dict(context=3, block_size=10, vocab_size=19, n_embd=8, hidden_size=16), **overrides})


def lm_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits, _ = model(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def test_parameter_count_matches_hand_arithmetic():
    model = build_model(tiny(context=3, n_embd=4, hidden_size=5, n_hidden=2, vocab_size=7, direct=True))
    assert isinstance(model, FFNN)
    wte, pad = 7 * 4, 4
    hidden = (3 * 4 * 5 + 5) + (5 * 5 + 5)  # the concatenated window -> H, then H -> H, with biases
    head, direct = 5 * 7 + 7, 3 * 4 * 7  # U with the output bias b; W has no bias of its own
    assert model.num_params(exclude_embeddings=False) == wte + pad + hidden + head + direct == 253
    assert model.num_params() == 253 - wte - pad
    assert model.flops_per_token() == 6 * (253 - wte - pad)
    assert build_model(tiny(context=3, n_embd=4, hidden_size=5, vocab_size=7)).num_params() == 65 + 42


@pytest.mark.parametrize("activation,direct,n_hidden", [("tanh", False, 1), ("relu", True, 2)])
def test_overfits_one_batch(activation, direct, n_hidden):
    torch.manual_seed(0)
    model = FFNN(tiny(activation=activation, direct=direct, n_hidden=n_hidden, hidden_size=64))
    # each row repeats its own 3 distinct tokens, so a 3-token window determines the next token
    pattern = torch.randperm(19)[:12].view(4, 3)
    tokens = pattern.repeat(1, 4)[:, :11]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = lm_loss(model, tokens).item()
    for _ in range(100):
        loss = lm_loss(model, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert first > 2.5  # about ln(19) at init
    assert loss.item() < 0.05


@pytest.mark.parametrize("context", [1, 3, 5])
def test_logits_at_t_read_exactly_tokens_t_minus_context_plus_1_to_t(context):
    torch.manual_seed(0)
    model = FFNN(tiny(context=context, direct=True)).eval()
    tokens = torch.randint(0, 19, (2, 10))
    with torch.no_grad():
        before, _ = model(tokens)
        for t in range(10):
            changed = tokens.clone()
            changed[:, t] = (changed[:, t] + 1) % 19
            after, _ = model(changed)
            moved = {p for p in range(10) if not torch.equal(before[:, p], after[:, p])}
            # the token at t is in the windows of positions t..t+context-1, and nowhere else
            assert moved == set(range(t, min(t + context, 10))), (t, moved)


def test_windows_reaching_before_the_input_read_the_padding_embedding():
    torch.manual_seed(0)
    model = FFNN(tiny(context=4)).eval()
    tokens = torch.randint(0, 19, (2, 10))
    with torch.no_grad():
        before, _ = model(tokens)
        model.pad.add_(1.0)
        after, _ = model(tokens)
    # positions 0..2 have 3, 2, 1 slots before the input; position 3 on sees only real tokens
    assert all(not torch.allclose(before[:, p], after[:, p]) for p in range(3))
    torch.testing.assert_close(before[:, 3:], after[:, 3:], rtol=0, atol=0)


def test_dropout_only_while_training():
    torch.manual_seed(0)
    model = FFNN(tiny(dropout=0.3))
    x = torch.randint(0, 19, (2, 10))
    assert not torch.equal(model(x)[0], model(x)[0])
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)


def test_generation_continues_with_the_models_own_greedy_choices():
    torch.manual_seed(0)
    model = FFNN(tiny())
    prompt = [3, 1, 4]
    new = generate(model, prompt, 6, temperature=0, block_size=10)
    assert len(new) == 6 and all(0 <= i < 19 for i in new)
    with torch.no_grad():
        logits, _ = model.eval()(torch.tensor([prompt + new[:-1]]))
    assert logits[0, len(prompt) - 1:].argmax(-1).tolist() == new


def test_errors():
    with pytest.raises(ConfigError, match="model.vocab_size"):
        FFNN(FFNNConfig())
