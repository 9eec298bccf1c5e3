import pytest
import torch
import torch.nn as nn

from lmforge.config import GPTConfig, SampleConfig, TokenizerConfig
from lmforge.generate import filter_logits, generate, sample_texts
from lmforge.models.transformer import GPT
from lmforge.tokenizer import Tokenizer

V = 23


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    # a larger init spreads the logits, so greedy and sampled continuations differ clearly
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=8, vocab_size=V, init_std=0.3))


class Recorder(nn.Module):
    """A fake model that predicts (last token + 1) mod vocab and records what it is fed.

    With `recurrent`, it returns a state (the number of calls so far) as an RNN would."""

    def __init__(self, recurrent: bool, vocab: int = V) -> None:
        super().__init__()
        self.recurrent = recurrent
        self.vocab = vocab
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[list[int], object, bool]] = []

    def forward(self, tokens: torch.Tensor, state: int | None = None) -> tuple[torch.Tensor, int | None]:
        self.seen.append((tokens[0].tolist(), state, self.training))
        logits = torch.nn.functional.one_hot((tokens + 1) % self.vocab, self.vocab).float() * 10
        return logits, (len(self.seen) if self.recurrent else None)


def greedy_by_hand(model: GPT, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(torch.tensor([ids[-8:]]))
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_greedy_is_argmax_decoding(model):
    prompt = [1, 2, 3]
    out = generate(model, prompt, 20, temperature=0, block_size=8)
    assert len(out) == 20
    assert out == generate(model, prompt, 20, temperature=0, block_size=8)
    assert out == greedy_by_hand(model, prompt, 20)  # 20 > block_size: the context is cropped as by hand


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    greedy = generate(model, [4, 5], 15, temperature=0, block_size=8)
    g = torch.Generator().manual_seed(0)
    assert generate(model, [4, 5], 15, temperature=1.0, top_k=1, block_size=8, generator=g) == greedy
    assert generate(model, [4, 5], 15, temperature=1.0, top_p=1e-6, block_size=8, generator=g) == greedy


def test_seeded_sampling_is_reproducible(model):
    def sample(seed: int) -> list[int]:
        return generate(model, [7], 30, temperature=1.0, top_k=10, top_p=0.9, block_size=8,
                        generator=torch.Generator().manual_seed(seed))

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    assert sample(1) != generate(model, [7], 30, temperature=0, block_size=8)


def test_stops_at_stop_id(model):
    greedy = generate(model, [1], 20, temperature=0, block_size=8)
    stop = greedy[5]
    out = generate(model, [1], 20, temperature=0, block_size=8, stop_id=stop)
    assert out == greedy[: greedy.index(stop) + 1]  # the stop id is included


def test_recurrent_model_is_fed_one_token_with_its_state():
    rnn = Recorder(recurrent=True)
    out = generate(rnn, [1, 2, 3], 4, temperature=0, block_size=8)
    assert out == [4, 5, 6, 7]
    assert rnn.seen == [([1, 2, 3], None, False), ([4], 1, False), ([5], 2, False), ([6], 3, False)]


def test_stateless_model_sees_the_last_block_size_tokens():
    gpt = Recorder(recurrent=False)
    out = generate(gpt, [1, 2, 3, 4, 5, 6], 3, temperature=0, block_size=4)
    assert out == [7, 8, 9]
    assert [tokens for tokens, _, _ in gpt.seen] == [[3, 4, 5, 6], [4, 5, 6, 7], [5, 6, 7, 8]]


def test_eval_mode_during_the_call_and_training_flag_restored():
    fake = Recorder(recurrent=False)
    fake.train()
    generate(fake, [1], 2, block_size=4)
    assert fake.training
    assert all(not training for _, _, training in fake.seen)
    fake.eval()
    generate(fake, [1], 1, block_size=4)
    assert not fake.training


def test_filter_logits():
    logits = torch.tensor([0.2, 0.5, 0.3]).log()
    kept = lambda out: torch.isfinite(out).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, None, 0.5)) == [1]  # 0.5 alone reaches 0.5
    assert kept(filter_logits(logits, None, 0.6)) == [1, 2]
    assert kept(filter_logits(logits, None, 1.0)) == [0, 1, 2]
    assert kept(filter_logits(logits, 2, 1.0)) == [1, 2]
    assert kept(filter_logits(logits, 5, 1.0)) == [0, 1, 2]


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompt=[]), "prompt is empty"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
])
def test_bad_arguments(kwargs, match):
    args = dict(prompt=[1], max_new_tokens=3, block_size=4) | kwargs
    with pytest.raises(ValueError, match=match):
        generate(Recorder(recurrent=False), **args)


def test_sample_texts_continue_the_prompt_reproducibly():
    tok = Tokenizer.train(TokenizerConfig(kind="char"), ["hello world, hello there"])
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=tok.vocab_size, init_std=0.3))
    cfg = SampleConfig(prompt="he", num_samples=3, max_new_tokens=12, temperature=1.0, top_k=None)
    texts = sample_texts(gpt, tok, cfg, 8, "cpu", seed=1)
    assert len(texts) == 3 and all(t.startswith("he") for t in texts)
    assert len(set(texts)) == 3  # one generator runs through all samples
    assert texts == sample_texts(gpt, tok, cfg, 8, "cpu", seed=1)


def test_sample_texts_start_an_empty_prompt_at_end_of_document():
    tok = Tokenizer.train(TokenizerConfig(kind="char"), ["abc"])
    fake = Recorder(recurrent=False, vocab=tok.vocab_size)
    texts = sample_texts(fake, tok, SampleConfig(prompt="", num_samples=1, max_new_tokens=3), 4, "cpu", seed=0)
    assert fake.seen[0][0] == [tok.eod_id]
    assert texts == ["abc"]  # eod (id 1) -> a, b, c; the made-up start token is not shown
