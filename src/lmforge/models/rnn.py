"""Recurrent language models: Elman RNN, LSTM and GRU, with the AWD-LSTM regularisers as options.

The LMs implement `models/base.py`'s interface with `recurrent = True`:
`forward(tokens[B, T], state=None) -> (logits[B, T, V], state)`. A recurrent LM carries its hidden state from one window to the next (truncated backpropagation through time):
the trainer feeds consecutive windows, passes the returned state back in, and calls `detach_state` between
windows so that gradients stop at the window edge, and `reset_state` to start afresh the rows whose document
ended. `state=None` is a zero state.

State format: a tuple of batch-first tensors, one [B, H_l] per layer l — (h_1, ..., h_L) for an RNN or GRU,
(h_1, ..., h_L, c_1, ..., c_L) for an LSTM. Batch-first, so that a row is one sequence in every tensor.

The regularisers follow Merity, Keskar & Socher 2017 (AWD-LSTM): embedding dropout (whole words), dropout on
the input, between layers and on the output (locked: one mask per sequence for all time steps, Gal &
Ghahramani 2016), DropConnect on the hidden-to-hidden matrices (weight_drop), and activation / temporal
activation regularisation (AR/TAR), exposed as `aux_loss` for the trainer to add to the cross-entropy.

Also here: `RNNEncoder`, (bi)directional per-token features for fine-tuning heads, and `BiLM`, an ELMo-style
pair of a forward and a backward LM (Peters et al. 2018). A bidirectional RNN is never a causal LM: each output
would have read the token it is asked to predict.
"""

from __future__ import annotations

import re
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lmforge.config import RNNConfig
from lmforge.errors import ConfigError
from lmforge.models.base import LanguageModel, top_group

State = tuple[torch.Tensor, ...]

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

BIDIRECTIONAL_LM = ("model.bidirectional: a bidirectional RNN sees the token it predicts; use it as an encoder "
                    "(fine-tuning) or train a backward LM (data direction)")


class SequenceDropout(nn.Module):
    """Dropout on (B, T, C) activations. Locked (variational) dropout draws one mask per sequence and uses it at
    every time step, so that a unit is off for the whole window rather than flickering (AWD's LockedDropout)."""

    def __init__(self, p: float, locked: bool) -> None:
        super().__init__()
        self.p = p
        self.locked = locked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if not self.locked:
            return F.dropout(x, self.p, training=True)
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, locked={self.locked}"


def embedding_dropout(wte: nn.Embedding, tokens: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Embed `tokens`, dropping whole words (AWD's dropoute): each vocabulary row is kept with probability 1-p and
    rescaled by 1/(1-p), so every occurrence of a dropped word in the batch reads zeros. Looking the row mask up
    per token gives the same result as masking the whole matrix, for B*T multiplies instead of V*C."""
    x = wte(tokens)
    if not training or p == 0:
        return x
    keep = wte.weight.new_empty(wte.num_embeddings).bernoulli_(1 - p) / (1 - p)
    return x * keep[tokens].unsqueeze(-1)


class RecurrentStack(nn.Module):
    """`len(widths)` recurrent layers over (B, T, C) inputs, with dropout between layers and DropConnect on the
    hidden-to-hidden matrices.

    The layers run as one multi-layer module (a single fused kernel, cuDNN's on GPU) unless something must
    happen between layers that the module cannot do — locked dropout — or the layers differ in width (the last
    layer of a tied LM is n_embd wide); then each layer is its own module. The module's own between-layer
    dropout is ordinary dropout, which is exactly dropout_between without locking.
    """

    def __init__(self, cfg: RNNConfig, input_size: int, widths: list[int], bidirectional: bool) -> None:
        super().__init__()
        cell = CELLS[cfg.arch]
        extra = {"nonlinearity": cfg.nonlinearity} if cfg.arch == "rnn" else {}
        self.weight_drop = cfg.weight_drop
        self.lstm = cfg.arch == "lstm"
        if len(set(widths)) == 1 and not (cfg.locked_dropout and cfg.dropout_between > 0):
            between = cfg.dropout_between if len(widths) > 1 else 0.0  # torch warns about dropout on one layer
            self.groups = nn.ModuleList([cell(input_size, widths[0], num_layers=len(widths), dropout=between,
                                              batch_first=True, bidirectional=bidirectional, **extra)])
            self.drop_between = SequenceDropout(0.0, locked=False)  # only one group: nothing between groups
        else:
            dirs = 2 if bidirectional else 1
            inputs = [input_size] + [dirs * w for w in widths[:-1]]
            self.groups = nn.ModuleList([cell(i, w, batch_first=True, bidirectional=bidirectional, **extra)
                                         for i, w in zip(inputs, widths)])
            self.drop_between = SequenceDropout(cfg.dropout_between, cfg.locked_dropout)

    def layer_parameters(self) -> list[list[nn.Parameter]]:
        """The parameters of each layer, bottom to top: torch names a fused module's weights weight_ih_l{k}, so a
        fused group splits by that k; a group of its own is one layer."""
        layers = []
        for rnn in self.groups:
            per_layer: list[list[nn.Parameter]] = [[] for _ in range(rnn.num_layers)]
            for name, p in rnn.named_parameters():
                per_layer[int(re.search(r"_l(\d+)", name).group(1))].append(p)
            layers += per_layer
        return layers

    def _run(self, rnn: nn.RNNBase, x: torch.Tensor | PackedSequence, hx: torch.Tensor | State | None):
        if not (self.training and self.weight_drop > 0):
            return rnn(x, hx)
        # DropConnect (Wan et al. 2013) on the recurrent matrices, as AWD's WeightDrop: a fresh mask per forward,
        # the same at every time step. functional_call runs the module with the dropped matrices in place of
        # its parameters for this call only: the parameters, their names and the fused kernels stay as they are,
        # and the gradient reaches the parameters through the mask.
        dropped = {name: F.dropout(w, self.weight_drop, training=True)
                   for name, w in rnn.named_parameters() if name.startswith("weight_hh")}
        with warnings.catch_warnings():
            # cuDNN warns that the weights are no longer one contiguous buffer and copies them into one; with a
            # new matrix each call that copy is the price of the mask, not a mistake to fix with flatten_parameters.
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
            return functional_call(rnn, dropped, (x, hx))

    def forward(self, x: torch.Tensor, state: State | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """x (B, T, C) -> (outputs of the last layer (B, T, dirs*H), final state in the module's State format,
        with one h (and c) per layer and direction). With `lengths`, each row stops at its length (packed), so
        padding never reaches the real tokens; outputs at padded positions are zero."""
        T = x.size(1)
        n_parts = 2 if self.lstm else 1  # h, or h and c
        parts = None  # the state as [h per unit] (and [c per unit]), a unit being one layer in one direction
        if state is not None:
            units = len(state) // n_parts
            parts = [state[j * units:(j + 1) * units] for j in range(n_parts)]
        new_parts: list[list[torch.Tensor]] = [[] for _ in range(n_parts)]
        first = 0  # the group's first unit
        for i, rnn in enumerate(self.groups):
            if i > 0:
                x = self.drop_between(x)
            count = rnn.num_layers * (2 if rnn.bidirectional else 1)
            hx = None
            if parts is not None:  # torch takes each part as one (units, B, H) tensor
                hx = tuple(torch.stack(part[first:first + count]) for part in parts)
                hx = hx if self.lstm else hx[0]
            if lengths is not None:
                x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            x, h_n = self._run(rnn, x, hx)
            if lengths is not None:
                x = pad_packed_sequence(x, batch_first=True, total_length=T)[0]
            for new, part in zip(new_parts, h_n if self.lstm else (h_n,)):
                new.extend(part.unbind(0))
            first += count
        return x, tuple(t for new in new_parts for t in new)


class RecurrentLM(LanguageModel):
    """Embedding -> recurrent layers -> linear head over the vocabulary, for arch rnn, lstm or gru."""

    recurrent = True

    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ConfigError("model.vocab_size: not set (it is normally taken from the tokenizer)")
        if cfg.bidirectional:
            raise ConfigError(BIDIRECTIONAL_LM)
        if cfg.tie_embeddings and cfg.n_layer == 1 and cfg.hidden_size != cfg.n_embd:
            raise ConfigError(f"model.tie_embeddings: the only layer's width must equal n_embd ({cfg.n_embd}) to tie, "
                              f"so hidden_size {cfg.hidden_size} cannot be used; set hidden_size={cfg.n_embd}, "
                              f"n_layer >= 2 or tie_embeddings=false")
        self.config = cfg
        # As AWD-LSTM: when tied, the last layer is n_embd wide so that its output can be scored by the embedding.
        widths = [cfg.hidden_size] * (cfg.n_layer - 1) + [cfg.n_embd if cfg.tie_embeddings else cfg.hidden_size]
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop_input = SequenceDropout(cfg.dropout_input, cfg.locked_dropout)
        self.rnn = RecurrentStack(cfg, cfg.n_embd, widths, bidirectional=False)
        self.drop_output = SequenceDropout(cfg.dropout, cfg.locked_dropout)
        self.lm_head = nn.Linear(widths[-1], cfg.vocab_size)
        if cfg.tie_embeddings:
            self.wte.weight = self.lm_head.weight  # Press & Wolf 2017; Inan et al. 2017
        # Zaremba et al. and AWD-LSTM: embedding and output weights ~ U(-r, r), output bias 0; the recurrent
        # layers keep torch's U(-1/sqrt(H), 1/sqrt(H)).
        nn.init.uniform_(self.wte.weight, -cfg.init_range, cfg.init_range)
        nn.init.uniform_(self.lm_head.weight, -cfg.init_range, cfg.init_range)
        nn.init.zeros_(self.lm_head.bias)

    def num_params(self, exclude_embeddings: bool = True) -> int:
        """Parameter count; with exclude_embeddings, without the embedding when it is lookup-only (untied)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings and not self.config.tie_embeddings:
            n -= self.wte.weight.numel()
        return n

    @property
    def feature_size(self) -> int:
        return self.lm_head.in_features

    def blocks(self) -> list[nn.Module]:
        """The recurrent layer stack, as one block: fsdp gathers all its layers at once (DropConnect draws its
        masks from the gathered matrices), and activation checkpointing recomputes it whole."""
        return [self.rnn]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """[embedding, layer 0, ..., last layer + head bias and (untied) head weight]."""
        bottom = list(self.wte.parameters())
        layers = self.rnn.layer_parameters()
        layers[-1] += top_group(bottom, list(self.lm_head.parameters()))
        return [bottom, *layers]

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's dropped output from a zero state; with `mask`, each row is packed to its length so
        that right padding is never read."""
        x = embedding_dropout(self.wte, tokens, self.config.embed_dropout, self.training)
        h, _ = self.rnn(self.drop_input(x), lengths=None if mask is None else mask.sum(1))
        return self.drop_output(h)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.lm_head(features)

    def activation_penalty(self, h: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor | None:
        """AR + TAR of the last layer's output h (B, T, H): ar_alpha * mean(dropped h^2) keeps activations small,
        tar_beta * mean((h_t - h_t-1)^2) on the undropped h keeps them from jumping between steps (AWD-LSTM)."""
        cfg = self.config
        penalty = None
        if cfg.ar_alpha > 0:
            penalty = cfg.ar_alpha * dropped.pow(2).mean()
        if cfg.tar_beta > 0 and h.size(1) > 1:
            tar = cfg.tar_beta * (h[:, 1:] - h[:, :-1]).pow(2).mean()
            penalty = tar if penalty is None else penalty + tar
        return penalty

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        x = embedding_dropout(self.wte, tokens, self.config.embed_dropout, self.training)  # (B, T, n_embd)
        x = self.drop_input(x)
        h, state = self.block(self.rnn, x, state)
        out = self.drop_output(h)
        # Set by every forward, so a stale penalty from an earlier batch is never added twice.
        self.aux_loss = self.activation_penalty(h, out) if self.training else None
        return self.logits(out), state


class BiLM(LanguageModel):
    """An ELMo-style pair (Peters et al. 2018): a forward LM reads the window left to right, a backward LM right
    to left, each with its own recurrent layers; with bilm_share_embedding, one embedding and output layer serve
    both, as in ELMo.

    `forward` is the forward LM's: its logits go to the trainer's causal loss and its state is carried. The
    backward LM reads the same window reversed, from a zero state (its past is the next window, not yet read),
    and predicts each token from the tokens after it, all inside the input: `backward_logits` row t is read from
    tokens t+1..T-1 only. Its mean cross-entropy becomes `aux_loss` in training, so the trainer optimises the
    sum of both directions' losses (ELMo's joint objective). `last_losses` reports both directions (detached,
    in training and eval) over the same T-1 token pairs of the window: "forward" predicts tokens 1..T-1 from the
    tokens before, "backward" tokens 0..T-2 from the tokens after.
    """

    recurrent = True
    feature_note = ("a forward/backward pair (model.direction=both) is not supported as a backbone; fine-tune one "
                    "trained with direction=forward")

    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        self.config = cfg
        self.forward_lm = RecurrentLM(cfg)
        self.backward_lm = RecurrentLM(cfg)
        if cfg.bilm_share_embedding:
            self.backward_lm.wte = self.forward_lm.wte
            self.backward_lm.lm_head = self.forward_lm.lm_head

    def num_params(self, exclude_embeddings: bool = True) -> int:
        """Parameter count (shared tensors once); with exclude_embeddings, without lookup-only embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings and not self.config.tie_embeddings:
            tables = {id(lm.wte.weight): lm.wte.weight.numel() for lm in (self.forward_lm, self.backward_lm)}
            n -= sum(tables.values())
        return n

    @property
    def feature_size(self) -> int:
        return self.forward_lm.feature_size

    def blocks(self) -> list[nn.Module]:
        return [*self.forward_lm.blocks(), *self.backward_lm.blocks()]

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The forward LM's features (the backward LM's read the text the other way)."""
        return self.forward_lm.features(tokens, mask)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_lm.logits(features)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Layer k of both directions together; the shared (or both) embeddings at the bottom."""
        forward, backward = self.forward_lm.layer_groups(), self.backward_lm.layer_groups()
        seen: set[int] = set()
        groups = []
        for f, b in zip(forward, backward):
            groups.append([p for p in [*f, *b] if id(p) not in seen and not seen.add(id(p))])
        return groups

    def backward_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """The backward LM's predictions of tokens[:, :-1], (B, T-1, V): row t is read from tokens t+1..T-1."""
        # Reversed step s has read original tokens T-1..T-1-s and predicts token T-2-s. The last step would
        # predict the token before the window, which is not in the input, so it is dropped.
        logits, _ = self.backward_lm(tokens.flip(1))
        return logits[:, :-1].flip(1)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        logits, state = self.forward_lm(tokens, state)
        terms = [self.forward_lm.aux_loss]  # its AR/TAR (None in eval)
        self.last_losses = None
        if tokens.size(1) > 1:  # a single token (as in generation) has no pair inside the window
            back = self.backward_logits(tokens)
            backward = F.cross_entropy(back.flatten(0, 1), tokens[:, :-1].flatten())
            with torch.no_grad():
                forward = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
            self.last_losses = {"forward": forward, "backward": backward.detach()}
            terms += [backward, self.backward_lm.aux_loss]
        present = [t for t in terms if t is not None]
        self.aux_loss = sum(present[1:], start=present[0]) if self.training and present else None
        return logits, state


class RNNEncoder(nn.Module):
    """Per-token features from a (bi)directional RNN for fine-tuning heads (classification, tagging):
    `forward(tokens[B, T], lengths=None) -> features[B, T, out_features]`, out_features = 2*hidden_size when
    bidirectional (forward and backward halves concatenated), else hidden_size. Not an LM: each feature has read
    the whole sequence. Pass `lengths` for right-padded batches so that padding never reaches real tokens (the
    backward direction would otherwise read the padding first). The dropouts of the config apply; AR/TAR and
    tying are LM-only and ignored.
    """

    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ConfigError("model.vocab_size: not set (it is normally taken from the tokenizer)")
        self.config = cfg
        self.out_features = cfg.hidden_size * (2 if cfg.bidirectional else 1)
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop_input = SequenceDropout(cfg.dropout_input, cfg.locked_dropout)
        self.rnn = RecurrentStack(cfg, cfg.n_embd, [cfg.hidden_size] * cfg.n_layer, cfg.bidirectional)
        self.drop_output = SequenceDropout(cfg.dropout, cfg.locked_dropout)
        nn.init.uniform_(self.wte.weight, -cfg.init_range, cfg.init_range)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = embedding_dropout(self.wte, tokens, self.config.embed_dropout, self.training)
        h, _ = self.rnn(self.drop_input(x), lengths=lengths)
        return self.drop_output(h)
