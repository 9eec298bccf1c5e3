"""The bidirectional encoder and BERT's masking: the configured fractions, labels only where chosen, attention
in both directions, padding that changes nothing."""

import pytest
import torch

from lmforge.config import EncoderConfig, load_config
from lmforge.errors import ConfigError
from lmforge.models import build_model
from lmforge.data.masking import IGNORE, MaskedLM


def masked_fractions(cfg: EncoderConfig, seed: int = 0):
    vocab, mask_id, eod = 1000, 1, 0
    x = torch.randint(2, vocab, (64, 512), generator=torch.Generator().manual_seed(seed))
    x[:, ::50] = eod
    inputs, labels = MaskedLM(cfg, mask_id, vocab, [eod], seed)(x)
    chosen = labels != IGNORE
    assert torch.equal(labels[chosen], x[chosen])  # a label is the token that was there
    assert torch.equal(inputs[~chosen], x[~chosen])  # nothing else changes
    assert not chosen[x == eod].any()
    n = chosen.sum().item()
    masked = (inputs[chosen] == mask_id).sum().item() / n
    kept = (inputs[chosen] == x[chosen]).sum().item() / n
    return n / (x != eod).sum().item(), masked, 1 - masked - kept, kept


@pytest.mark.parametrize("probs", [(0.15, 0.8, 0.1), (0.3, 0.5, 0.3)])
def test_masking_follows_the_configured_fractions(probs):
    p, m, r = probs
    cfg = EncoderConfig(mask_prob=p, mask_token_frac=m, random_token_frac=r)
    chosen, masked, random, kept = masked_fractions(cfg)
    # 32,000 tokens: the shares are within a few standard errors of their targets
    assert chosen == pytest.approx(p, abs=0.01)
    assert masked == pytest.approx(m, abs=0.02)
    assert random == pytest.approx(r, abs=0.015)  # a random draw of the token itself counts as kept (0.1 %)
    assert kept == pytest.approx(1 - m - r, abs=0.015)


def test_masking_is_seeded_and_resumable():
    cfg = EncoderConfig()
    x = torch.randint(2, 100, (4, 32))
    a = MaskedLM(cfg, 1, 100, [0], seed=5)
    b = MaskedLM(cfg, 1, 100, [0], seed=5)
    first = a(x)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(u, v) for u, v in zip(a(x), b(x)))
    assert not torch.equal(first[0], a(x)[0])
    # row by row, a window's masks do not depend on what it is batched with
    rows = MaskedLM(cfg, 1, 100, [0], seed=9).rows(x)
    alone = MaskedLM(cfg, 1, 100, [0], seed=9).rows(x[:2])
    assert torch.equal(rows[0][:2], alone[0])
    with pytest.raises(ConfigError, match="no <mask> token"):
        MaskedLM(cfg, None, 100, [0], seed=0)


def test_a_batch_always_has_a_prediction():
    inputs, labels = MaskedLM(EncoderConfig(mask_prob=1e-6), 1, 10, [0], seed=0)(torch.full((1, 4), 5))
    assert (labels != IGNORE).sum() == 1


def test_encoder_attends_both_ways_and_ignores_padding():
    torch.manual_seed(0)
    model = build_model(EncoderConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=50, dropout=0.0)).eval()
    x = torch.randint(0, 50, (1, 8))
    later = x.clone()
    later[0, -1] = (later[0, -1] + 1) % 50
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(later)
        assert not torch.allclose(a[0, 0], b[0, 0])  # the first position sees the last token
        padded = torch.cat([x, torch.zeros((1, 4), dtype=torch.long)], dim=1)
        mask = torch.cat([torch.ones((1, 8)), torch.zeros((1, 4))], dim=1)
        c, _ = model(padded, mask=mask)
    torch.testing.assert_close(c[:, :8], a, rtol=1e-5, atol=1e-5)


def test_an_encoder_recipe_gets_a_mask_token():
    cfg = load_config(None, ["model.arch=encoder"])
    assert cfg.tokenizer.mask_token and cfg.optimizer.name == "adamw"
    # recipes without it keep the data keys (and prepared shards) they had before the option existed
    assert load_config(None, []).data_key() == "3e517cf7803c"
    assert load_config(None, ["tokenizer.kind=word", "data.path=x.txt"]).data_key() == "9b6bbf28c488"
    assert load_config(None, ["tokenizer.mask_token=true"]).data_key() != "3e517cf7803c"
    with pytest.raises(ConfigError, match="mask_token_frac \\+ random_token_frac"):
        load_config(None, ["model.arch=encoder", "model.mask_token_frac=0.8", "model.random_token_frac=0.3"])
