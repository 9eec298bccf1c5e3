import pytest
import torch
import torch.nn.functional as F

from lmforge.config import RNNConfig
from lmforge.errors import ConfigError
from lmforge.generate import generate
from lmforge.models import build_model
from lmforge.models.base import detach_state, reset_state
from lmforge.models.rnn import BIDIRECTIONAL_LM, BiLM, RecurrentLM, RNNEncoder, SequenceDropout, embedding_dropout

AWD = dict(locked_dropout=True, dropout=0.2, dropout_between=0.2, dropout_input=0.2, embed_dropout=0.1,
           weight_drop=0.3, tie_embeddings=True)


def tiny(**overrides) -> RNNConfig:
    return RNNConfig(**{**dict(arch="lstm", n_layer=2, n_embd=12, hidden_size=16, block_size=8, vocab_size=23),
                        **overrides})


def lm_loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    logits, _ = model(tokens[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


# --- construction -------------------------------------------------------------------------------------------

def test_parameter_counts_match_hand_arithmetic():
    V, C, H = 11, 6, 8
    lstm = build_model(tiny(vocab_size=V, n_embd=C, hidden_size=H))
    # an LSTM layer: 4 gates, each with input and recurrent matrices and two bias vectors (torch's b_ih, b_hh)
    layers = 4 * H * (C + H) + 8 * H + 4 * H * (H + H) + 8 * H
    head = H * V + V
    assert lstm.num_params(exclude_embeddings=False) == V * C + layers + head == 1253
    assert lstm.num_params() == 1253 - V * C
    assert lstm.flops_per_token() == 6 * (1253 - V * C)

    tied = build_model(tiny(vocab_size=V, n_embd=C, hidden_size=H, tie_embeddings=True))
    # tied: the last layer is n_embd wide, and the embedding is also the head's matrix (counted once, kept)
    layers = 4 * H * (C + H) + 8 * H + 4 * C * (H + C) + 8 * C
    assert tied.num_params() == tied.num_params(exclude_embeddings=False) == layers + V * C + V == 973

    gru = build_model(tiny(arch="gru", n_layer=1, vocab_size=V, n_embd=C, hidden_size=H))
    assert gru.num_params() == 3 * H * (C + H) + 6 * H + H * V + V == 483
    rnn = build_model(tiny(arch="rnn", n_layer=1, vocab_size=V, n_embd=C, hidden_size=H))
    assert rnn.num_params() == H * (C + H) + 2 * H + H * V + V == 227

    shared = build_model(tiny(vocab_size=V, n_embd=C, hidden_size=H, direction="both"))
    assert isinstance(shared, BiLM)
    assert shared.num_params(exclude_embeddings=False) == 1253 + 512 + 576  # a second pair of LSTM layers only
    apart = build_model(tiny(vocab_size=V, n_embd=C, hidden_size=H, direction="both", bilm_share_embedding=False))
    assert apart.num_params(exclude_embeddings=False) == 2 * 1253
    assert apart.num_params() == 2 * (1253 - V * C)


def test_fused_layers_unless_something_happens_between_them():
    assert len(RecurrentLM(tiny()).rnn.groups) == 1  # Zaremba-style: one 2-layer module
    assert len(RecurrentLM(tiny(dropout_between=0.3, weight_drop=0.5)).rnn.groups) == 1  # plain dropout is built in
    assert len(RecurrentLM(tiny(dropout_between=0.3, locked_dropout=True)).rnn.groups) == 2
    assert len(RecurrentLM(tiny(tie_embeddings=True)).rnn.groups) == 2  # the last layer is narrower


def test_tied_embeddings_share_one_matrix():
    model = RecurrentLM(tiny(tie_embeddings=True))
    assert model.lm_head.weight is model.wte.weight
    assert model.rnn.groups[-1].hidden_size == 12


def test_errors():
    with pytest.raises(ConfigError, match="model.vocab_size"):
        RecurrentLM(RNNConfig())
    with pytest.raises(ConfigError, match="model.tie_embeddings: .*n_embd \\(12\\).*hidden_size 16"):
        build_model(tiny(n_layer=1, tie_embeddings=True))
    for direction in ("forward", "both"):
        with pytest.raises(ConfigError) as err:
            build_model(tiny(bidirectional=True, direction=direction))
        assert str(err.value) == BIDIRECTIONAL_LM
        assert str(err.value).startswith("model.bidirectional: a bidirectional RNN sees the token it predicts")


def test_init_ranges():
    torch.manual_seed(0)
    model = RecurrentLM(tiny(vocab_size=500, n_embd=64, init_range=0.05))
    for w in (model.wte.weight, model.lm_head.weight):
        assert w.abs().max() <= 0.05 and w.abs().max() > 0.049
    assert torch.all(model.lm_head.bias == 0)


# --- training -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,options", [("rnn", {}), ("lstm", {}), ("gru", {}), ("lstm", AWD),
                                          ("lstm", {"direction": "both"})])
def test_overfits_one_batch(arch, options):
    torch.manual_seed(0)
    model = build_model(tiny(arch=arch, hidden_size=48, n_embd=48, **options))
    tokens = torch.randint(0, 23, (4, 9))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = lm_loss(model, tokens)
        if model.aux_loss is not None:
            loss = loss + model.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()  # judged without dropout
    assert lm_loss(model, tokens).item() < 0.2  # from ln(23) = 3.1


def copy_stream(rows: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, list[list[tuple[int, int]]]]:
    """Episodes [key, f_g-1, ..., f_0, key]: a key (0..3), a countdown of g in 1..6 filler tokens (4..9), the key
    again. Everything is predictable from the previous token except the new key, the gap, and the recalled key,
    which needs the key read up to 7 tokens earlier. Returns the token rows and each row's (recall, key) positions."""
    data, where = [], []
    for _ in range(rows):
        row: list[int] = []
        pairs = []
        while len(row) < length:
            key = int(torch.randint(0, 4, (), generator=generator))
            gap = int(torch.randint(1, 7, (), generator=generator))
            pairs.append((len(row) + gap + 1, len(row)))
            row += [key, *(4 + j for j in reversed(range(gap))), key]
        data.append(row[:length])
        where.append(pairs)
    return torch.tensor(data), where


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_carried_state_remembers_across_windows(arch):
    """A recalled key whose first appearance lies in an earlier window can only be predicted from the carried
    state: a model whose state is reset at every window is left guessing among 4 keys (loss ln 4 = 1.39)."""
    T, rows, steps = 5, 32, 500
    train_data, _ = copy_stream(rows, steps * T + 1, torch.Generator().manual_seed(1))
    test_data, pairs = copy_stream(rows, 40 * T + 1, torch.Generator().manual_seed(2))

    def recall_loss(carry: bool) -> float:
        torch.manual_seed(0)
        model = RecurrentLM(tiny(arch=arch, n_layer=1, n_embd=16, hidden_size=64, vocab_size=10, block_size=T))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        state = None
        for i in range(steps):  # consecutive windows, truncated BPTT
            window = train_data[:, i * T: (i + 1) * T + 1]
            logits, state = model(window[:, :-1], state if carry else None)
            loss = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state = detach_state(state)
        model.eval()
        nll, state = [], None
        with torch.no_grad():
            for i in range(40):
                window = test_data[:, i * T: (i + 1) * T + 1]
                logits, state = model(window[:, :-1], state if carry else None)
                nll.append(F.cross_entropy(logits.transpose(1, 2), window[:, 1:], reduction="none"))
        nll_at = torch.cat(nll, dim=1)  # nll_at[:, p]: predicting token p+1 from tokens ..p
        # recalls predicted in a later window than the one that read their key
        far = [nll_at[b, r - 1] for b in range(rows) for r, k in pairs[b] if r <= 40 * T and (r - 1) // T > k // T]
        assert len(far) > 300
        return torch.stack(far).mean().item()

    carried, reset = recall_loss(carry=True), recall_loss(carry=False)
    assert reset > 1.3
    assert carried < 0.5


def test_state_carried_across_windows_equals_one_long_window():
    for arch, options in [("rnn", {}), ("gru", {}), ("lstm", {}), ("lstm", AWD), ("gru", AWD)]:
        torch.manual_seed(0)
        model = build_model(tiny(arch=arch, **options)).eval()
        tokens = torch.randint(0, 23, (3, 10))
        with torch.no_grad():
            whole, final = model(tokens)
            first, state = model(tokens[:, :4])
            second, state = model(tokens[:, 4:], state)
        torch.testing.assert_close(torch.cat((first, second), dim=1), whole)
        for a, b in zip(state, final, strict=True):
            torch.testing.assert_close(a, b)
        n_parts = 2 if arch == "lstm" else 1
        assert len(state) == n_parts * 2 and all(s.shape[0] == 3 for s in state)  # batch-first, per layer


def test_detach_and_reset_state():
    model = RecurrentLM(tiny())
    _, state = model(torch.randint(0, 23, (3, 5)))
    assert all(s.requires_grad for s in state)
    assert not any(s.requires_grad for s in model.detach_state(state))
    reset = model.reset_state(state, torch.tensor([False, True, False]))
    for before, after in zip(state, reset, strict=True):
        assert torch.all(after[1] == 0) and torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert detach_state(None) is None and reset_state(None, torch.tensor([True])) is None
    # a reset row continues exactly like a sequence that starts from a zero state
    model.eval()
    x = torch.randint(0, 23, (3, 4))
    with torch.no_grad():
        after_reset, _ = model(x, reset)
        fresh, _ = model(x[1:2])
    torch.testing.assert_close(after_reset[1:2], fresh)


# --- regularisers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"locked_dropout": True, "dropout_between": 0.1, "tie_embeddings": True}])
def test_weight_drop_masks_the_recurrent_matrices_afresh_each_training_forward(options):
    torch.manual_seed(0)
    model = RecurrentLM(tiny(n_embd=16, hidden_size=16, weight_drop=0.5, **options))
    plain = RecurrentLM(tiny(n_embd=16, hidden_size=16, **options))
    plain.load_state_dict(model.state_dict())  # same parameters and names: the mask is not a parameter
    x = torch.randint(0, 23, (4, 8))
    rnn = model.rnn.groups[0]

    def dropped_entries(name: str) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        model(x)[0].square().sum().backward()
        return getattr(rnn, name).grad == 0  # a dropped weight gets no gradient

    first, second = dropped_entries("weight_hh_l0"), dropped_entries("weight_hh_l0")
    assert 0.4 < first.float().mean() < 0.6 and 0.4 < second.float().mean() < 0.6
    assert not torch.equal(first, second)
    assert dropped_entries("weight_ih_l0").float().mean() < 0.01  # the input matrices are not dropped
    assert type(rnn.weight_hh_l0) is torch.nn.Parameter

    model.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], plain(x)[0], rtol=0, atol=0)


def test_locked_dropout_uses_one_mask_for_every_time_step():
    torch.manual_seed(0)
    x = torch.ones(4, 6, 50)
    locked = SequenceDropout(0.5, locked=True)(x)
    assert torch.equal(locked, locked[:, :1].expand_as(locked))  # the same at every step
    assert not torch.equal(locked[0], locked[1])  # but not for every sequence
    assert set(locked.unique().tolist()) == {0.0, 2.0}  # rescaled by 1/(1-p)
    plain = SequenceDropout(0.5, locked=False)(x)
    assert not torch.equal(plain, plain[:, :1].expand_as(plain))
    assert torch.equal(SequenceDropout(0.5, locked=True).eval()(x), x)
    model = RecurrentLM(tiny(locked_dropout=True, dropout=0.1, dropout_input=0.2))
    assert model.drop_input.locked and model.drop_output.locked and model.drop_input.p == 0.2


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    wte = torch.nn.Embedding(10, 8)
    tokens = torch.randint(0, 10, (6, 20))
    out = embedding_dropout(wte, tokens, 0.5, training=True)
    plain = wte(tokens)
    dropped_words = set()
    for word in range(10):
        rows = out[tokens == word]
        if torch.all(rows == 0):
            dropped_words.add(word)
        else:  # every occurrence kept, rescaled by 1/(1-p)
            torch.testing.assert_close(rows, 2 * plain[tokens == word])
    assert 0 < len(dropped_words) < 10
    assert torch.equal(embedding_dropout(wte, tokens, 0.5, training=False), plain)


def test_ar_and_tar_match_a_hand_computation():
    torch.manual_seed(0)
    model = RecurrentLM(tiny(ar_alpha=2.0, tar_beta=1.5, dropout=0.4))
    x = torch.randint(0, 23, (3, 7))
    torch.manual_seed(1)
    model(x)
    aux = model.aux_loss
    # the same draws again: the only random op in this config is the output dropout
    torch.manual_seed(1)
    h, _ = model.rnn(model.wte(x))
    dropped = F.dropout(h, 0.4, training=True)
    B, T, H = h.shape
    ar = sum(dropped[b, t, j] ** 2 for b in range(B) for t in range(T) for j in range(H)) / (B * T * H)
    tar = sum((h[b, t, j] - h[b, t - 1, j]) ** 2 for b in range(B) for t in range(1, T) for j in range(H)) / (
        B * (T - 1) * H)
    torch.testing.assert_close(aux, 2.0 * ar + 1.5 * tar)
    model.eval()
    model(x)
    assert model.aux_loss is None
    model.train()
    plain = RecurrentLM(tiny())
    plain(x)
    assert plain.aux_loss is None


# --- bidirectional ------------------------------------------------------------------------------------------

def test_bilm_cannot_see_the_tokens_it_predicts():
    torch.manual_seed(0)
    model = BiLM(tiny(direction="both")).eval()
    tokens = torch.randint(0, 23, (2, 10))
    with torch.no_grad():
        fwd, _ = model(tokens)
        bwd = model.backward_logits(tokens)  # row t predicts token t
        for t in range(1, 9):
            changed = tokens.clone()
            changed[:, t] = (changed[:, t] + 1) % 23
            fwd2, _ = model(changed)
            bwd2 = model.backward_logits(changed)
            # forward position p predicts token p+1 from tokens ..p; backward row p predicts token p from p+1..
            torch.testing.assert_close(fwd[:, :t], fwd2[:, :t], rtol=0, atol=0)
            torch.testing.assert_close(bwd[:, t:], bwd2[:, t:], rtol=0, atol=0)
            # and each direction does read the token where it may
            assert not torch.allclose(fwd[:, t], fwd2[:, t]) and not torch.allclose(bwd[:, t - 1], bwd2[:, t - 1])


def test_bilm_reports_and_trains_both_directions():
    torch.manual_seed(0)
    model = BiLM(tiny(direction="both", ar_alpha=1.0))
    tokens = torch.randint(0, 23, (2, 10))
    logits, state = model(tokens)
    backward = F.cross_entropy(model.backward_logits(tokens).flatten(0, 1), tokens[:, :-1].flatten())
    forward = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    torch.testing.assert_close(model.last_losses["backward"], backward)
    torch.testing.assert_close(model.last_losses["forward"], forward)
    # aux_loss = the backward LM's loss plus both directions' AR
    penalty = model.forward_lm.aux_loss + model.backward_lm.aux_loss
    torch.testing.assert_close(model.aux_loss, backward + penalty)
    model.aux_loss.backward()
    assert model.backward_lm.rnn.groups[0].weight_hh_l0.grad.abs().sum() > 0
    assert model.backward_lm.wte is model.forward_lm.wte  # shared, as ELMo
    assert len(state) == 4  # the forward LM's state: only it carries across windows
    model.eval()
    model(tokens)
    assert model.aux_loss is None and set(model.last_losses) == {"forward", "backward"}


def test_encoder_features_read_both_directions_and_ignore_padding():
    torch.manual_seed(0)
    cfg = tiny(bidirectional=True, n_layer=2, hidden_size=16, locked_dropout=True, dropout_between=0.1)
    encoder = RNNEncoder(cfg).eval()
    assert encoder.out_features == 32 and len(encoder.rnn.groups) == 2
    tokens = torch.randint(0, 23, (2, 7))
    with torch.no_grad():
        features = encoder(tokens)
        assert features.shape == (2, 7, 32)
        changed = tokens.clone()
        changed[:, 6] = (changed[:, 6] + 1) % 23
        other = encoder(changed)
        assert not torch.allclose(features[:, 0], other[:, 0])  # the first token's features read the last token
        # a right-padded row gives the features of the unpadded sequence, and zeros on the padding
        padded = torch.cat((tokens[:1, :4], torch.full((1, 3), 5)), dim=1)
        both = encoder(torch.cat((padded, tokens[1:])), lengths=torch.tensor([4, 7]))
        torch.testing.assert_close(both[0, :4], encoder(tokens[:1, :4])[0])
        torch.testing.assert_close(both[1], features[1])
        assert torch.all(both[0, 4:] == 0)


# --- generation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,options", [("rnn", {}), ("lstm", {}), ("gru", {}), ("lstm", AWD),
                                          ("gru", {"direction": "both"})])
def test_generation_feeds_one_token_at_a_time_with_the_state(arch, options):
    torch.manual_seed(0)
    model = build_model(tiny(arch=arch, **options))
    prompt = [3, 1, 4, 1, 5]
    new = generate(model, prompt, 12, temperature=0, block_size=8)
    assert len(new) == 12 and all(0 <= i < 23 for i in new)
    # greedy decoding with the carried state picks what one pass over the whole text would pick
    with torch.no_grad():
        logits, _ = model.eval()(torch.tensor([prompt + new[:-1]]))
    assert logits[0, len(prompt) - 1:].argmax(-1).tolist() == new
    sampled = generate(model, prompt, 12, temperature=1.0, top_k=5, block_size=8,
                       generator=torch.Generator().manual_seed(0))
    assert len(sampled) == 12
