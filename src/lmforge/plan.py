"""The memory planner (`lmforge plan`, docs/planning.md): what training a recipe's model takes on each device
under each strategy (single, ddp, fsdp), the largest micro-batch that fits a device, and which strategy to pick.

It answers before any GPU is rented or any run dies of an out-of-memory error an hour in. Nothing is allocated:
the model is built on the meta device by lmforge's own registry, so the parameter count is exact, and the
optimizer's state is counted from the same split `train/optim.py: build_optimizer` makes. Activations are what
each family's forward keeps for the backward pass, tensor by tensor (`activations`); the terms were read off
autograd's saved tensors and are checked against them, and the peak against a measured peak on the CPU, by
tests/test_plan.py.

The peak of a training step is, on top of the parameters and the optimizer state, the larger of what the
backward pass and the optimizer step hold. The backward pass starts with every activation and the loss's
gradients alive and no parameter gradient (the trainer drops them with zero_grad(set_to_none=True)), then
frees activations block by block as it makes gradients (`_backward_peak`); the step holds every gradient and
its own scratch, the activations gone.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from lmforge.config import Config, EncoderConfig, FFNNConfig, GPTConfig, RNNConfig
from lmforge.errors import ConfigError
from lmforge.models import build_model
from lmforge.models.base import LanguageModel
from lmforge.models.transformer import swiglu_hidden
from lmforge.train.distributed import computes_in_bf16, fast_bf16_matmul
from lmforge.train.optim import decay_split, hidden_matrices

FP32 = 4  # master weights, gradients and optimizer state are float32 whatever the compute dtype
INT64 = 8  # token ids
PAGE = 4096  # oneDNN aligns each part of its RNN workspace to a page

# SI prefixes are powers of 1000 (80GB = 80e9 bytes), IEC prefixes powers of 1024 (80GiB = 80 * 2**30); a bare
# letter is binary, as nvidia-smi, free -g and docker read it (24G = 24 GiB).
SIZE_UNITS = {"": 1, "b": 1,
              "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
              "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
SIZE_HELP = "80GB (10^9 bytes), 80GiB or 80G (2^30 bytes), 512MB, 512MiB"


def parse_size(text: str, option: str = "--device-memory") -> int:
    """Bytes from `80GB`, `80GiB`, `24G`, `512MB`, `1.5TB` or a plain number of bytes (see SIZE_UNITS)."""
    match = re.fullmatch(r"\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise ConfigError(f"{option} {text!r}: expected a size such as {SIZE_HELP}")
    size = float(match.group(1)) * SIZE_UNITS[match.group(2).lower()]
    if not math.isfinite(size):  # more digits than a float holds
        raise ConfigError(f"{option} {text!r}: too large a size")
    if size < 1:
        raise ConfigError(f"{option} {text!r}: must be 1 byte or more")
    return int(size)


def parse_devices(text: str, option: str = "--devices") -> int:
    """A whole number of devices from the command line (its range is `plan`'s to check)."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected a whole number of devices, 1 or more") from None


def format_size(n: int) -> str:
    """Binary units, as the planner's tables print every size."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


@dataclass(frozen=True, eq=False)
class Setup:
    """What the plan is for: the config (vocab_size filled in), where it trains and in which dtype its
    activations are, and the facts read once off the model built on the meta device."""
    cfg: Config
    vocab_from: str  # where vocab_size came from
    model: LanguageModel
    device: str  # cpu or cuda: train.device, auto = CUDA when this machine has it
    bf16: bool  # activations in bf16 (autocast), as the trainer decides from train.dtype
    shapes: tuple[tuple[int, ...], ...]  # every parameter's shape, a tied matrix once
    trainable: tuple[bool, ...]  # stepped by the optimizer (`train/optim.py: decay_split`)
    block_of: tuple[int | None, ...]  # the index in blocks() of each parameter's block; None: the root
    muon: tuple[bool, ...]  # taken by Muon (`train/optim.py: hidden_matrices`) when the optimizer is muon
    buffer_elements: int
    n_blocks: int
    block_matrices: tuple[int, ...]  # elements of each block's matrices (autocast's bf16 copies)
    rnn_layers: tuple[tuple[str, int, int], ...]  # (mode, input width, hidden width) of each recurrent layer

    @property
    def compute_bytes(self) -> int:
        return 2 if self.bf16 else FP32

    def elements(self, devices: int = 1, where: Callable[[int], bool] | None = None) -> int:
        """Elements of the parameters (those `where(i)` holds for), as one of `devices` fsdp ranks keeps them."""
        return sum(shard_numel(shape, devices) for i, shape in enumerate(self.shapes) if where is None or where(i))


def shard_numel(shape: tuple[int, ...], devices: int) -> int:
    """Elements of one rank's shard: FSDP2 splits dim 0 in `devices` equal parts, the last one padded."""
    numel = math.prod(shape)
    if devices == 1 or not shape:
        return numel
    return math.ceil(shape[0] / devices) * (numel // shape[0])


def setup(cfg: Config) -> Setup:
    """The model of `cfg` on the meta device. An empty model.vocab_size is the tokenizer's target size, as
    prepare trains it (a char tokenizer's vocabulary is every character seen: set model.vocab_size)."""
    cfg = cfg.model_copy(deep=True)
    vocab_from = "model.vocab_size"
    if cfg.model.vocab_size is None:
        cfg.model.vocab_size = cfg.tokenizer.vocab_size
        vocab_from = "tokenizer.vocab_size"
    with torch.device("meta"):
        model = build_model(cfg.model)
    device = cfg.train.device if cfg.train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = computes_in_bf16(cfg.train.dtype, torch.device(device), model.bf16_on_cpu)  # as train/trainer.py decides
    params = list(model.parameters())
    stepped = {id(p) for group in decay_split(model) for p in group}
    blocks = model.blocks()
    block_index = {id(p): k for k, b in enumerate(blocks) for p in b.parameters()}
    muon = {id(p) for p in hidden_matrices(model)} if cfg.optimizer.name == "muon" else set()
    return Setup(cfg, vocab_from, model, device, bf16,
                 shapes=tuple(tuple(p.shape) for p in params),
                 trainable=tuple(id(p) in stepped for p in params),
                 block_of=tuple(block_index.get(id(p)) for p in params),
                 muon=tuple(id(p) in muon for p in params),
                 buffer_elements=sum(b.numel() for b in model.buffers()),
                 n_blocks=len(blocks),
                 block_matrices=tuple(sum(p.numel() for p in b.parameters() if p.dim() >= 2) for b in blocks),
                 rnn_layers=tuple((rnn.mode, rnn.input_size if k == 0 else rnn.hidden_size, rnn.hidden_size)
                                  for rnn in model.modules() if isinstance(rnn, nn.RNNBase)
                                  for k in range(rnn.num_layers)))


def optimizer_state(s: Setup, devices: int = 1) -> int:
    """Bytes of optimizer state on one rank (sharded as the parameters under fsdp): AdamW's two moments per
    parameter, SGD's momentum buffer (none without momentum), Muon's momentum for the hidden matrices it takes
    with AdamW's two moments for the rest."""
    opt = s.cfg.optimizer
    if opt.name == "sgd":
        return (FP32 if opt.momentum > 0 else 0) * s.elements(devices, lambda i: s.trainable[i])
    muon = s.elements(devices, lambda i: s.trainable[i] and s.muon[i])
    return FP32 * muon + 2 * FP32 * s.elements(devices, lambda i: s.trainable[i] and not s.muon[i])


def step_scratch(s: Setup, devices: int = 1) -> int:
    """Bytes the optimizer step allocates on top of the state (measured on the CPU, torch 2.13). Fused AdamW
    and SGD (the default impl) update in place; foreach kernels hold a temporary as large as all the
    parameters, plain ones three (AdamW) or two (SGD) as large as the largest parameter. Muon's
    Newton-Schulz (train/muon.py) works one shape group at a time: the Nesterov gradients (a shard each
    under fsdp, which then gathers them whole), their stack, and four iterates alive at once in the iteration's
    dtype, plus one Gram matrix per matrix. `devices`: the ranks fsdp shards over (1: not sharded)."""
    opt = s.cfg.optimizer
    if opt.name == "muon":
        ns_bytes = 2 if opt.muon_precision == "bfloat16" or (
            opt.muon_precision == "auto" and s.bf16 and fast_bf16_matmul(torch.device(s.device))) else FP32
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, shape in enumerate(s.shapes):
            if s.muon[i] and s.trainable[i]:
                groups.setdefault(shape, []).append(i)
        worst = 0
        for shape, members in groups.items():
            whole = len(members) * math.prod(shape)
            nesterov = FP32 * len(members) * shard_numel(shape, devices)
            gathered = FP32 * whole if devices > 1 else 0
            gram = len(members) * min(shape) ** 2 * ns_bytes
            worst = max(worst, nesterov + gathered + FP32 * whole + 4 * ns_bytes * whole + gram)
        return worst
    impl = opt.impl if opt.impl != "auto" else ("fused" if s.device in ("cpu", "cuda") else "foreach")
    stepped = [math.prod(shape) for i, shape in enumerate(s.shapes) if s.trainable[i]]
    if impl == "fused":
        return 0
    if impl == "foreach":
        return FP32 * sum(stepped)
    return (3 if opt.name == "adamw" else 2) * FP32 * max(stepped, default=0)


@dataclass(frozen=True)
class Activations:
    """Bytes one micro-batch keeps for the backward pass, by where they live and how long."""
    blocks: tuple[int, ...]  # inside each of the model's blocks(): what checkpointing recomputes
    block_input: int  # one block's input, all that checkpointing keeps of a block
    outside: int  # outside the blocks: ids, embeddings, recurrent layers, final norm, head, logits, log-probs
    held: int  # the part of `outside` alive through the whole backward pass: the logits the trainer holds, ids
    loss_grads: int  # the gradients of the log-probs and of the logits, alive together as the backward starts
    block_transient: int = 0  # gradients flowing through one block's backward: its output's, input's, hidden's

    def kept(self, checkpointing: bool) -> int:
        """Without checkpointing everything; with it each block's input, plus one block's internals while the
        backward pass recomputes it."""
        if not checkpointing or not self.blocks:
            return sum(self.blocks) + self.outside
        return len(self.blocks) * self.block_input + max(self.blocks) + self.outside


def _norm_bytes(norm: str) -> tuple[int, int]:
    """Per token and feature count C: (bytes per feature, bytes per token). LayerNorm keeps its input and two
    fp32 statistics; RMSNorm (nn.RMSNorm, decomposed) its input, the normalised input and the inverse RMS.
    Norms run in fp32 under autocast."""
    return (FP32, 2 * FP32) if norm == "layernorm" else (2 * FP32, FP32)


def _logit_terms(s: Setup, tokens: int, softcap: bool) -> tuple[int, int]:
    """(kept, loss_grads) of the LM head's output: the logits the trainer holds through the backward pass (in
    the compute dtype), the tanh of a soft-cap, the fp32 log-probs cross_entropy keeps; at the start of the
    backward pass the fp32 gradients of the log-probs and of the logits."""
    V, h = s.cfg.model.vocab_size, s.compute_bytes
    kept = tokens * V * (h + (h if softcap else 0) + FP32)
    return kept, tokens * V * 2 * FP32


def _transformer(s: Setup, B: int) -> Activations:
    """GPT and encoder (models/transformer.py, models/encoder.py): per block, both norms' inputs (the fp32
    residual stream) and statistics, the inputs of the four matmuls (attention's and the MLP's, their second
    one being attention's output and the activated hidden layer), q/k/v, and attention's log-sum-exp; what
    rotary positions, QK-norm, SwiGLU and dropout add; bf16 copies of the weights under autocast."""
    m, h = s.cfg.model, s.compute_bytes
    C, nh, T, V = m.n_embd, m.n_head, m.block_size, m.vocab_size
    tokens = B * T
    gpt = isinstance(m, GPTConfig)
    hidden = swiglu_hidden(m) if m.mlp == "swiglu" else int(m.mlp_ratio * C)
    norm_c, norm_t = _norm_bytes(m.norm)
    cuda = s.device == "cuda"
    mask = (1 if cuda else h) * C if m.dropout > 0 else 0  # dropout's mask: bool on CUDA, x's dtype on the CPU
    per_token = 2 * (norm_c * C + norm_t)
    per_token += h * C + 3 * h * C  # attention's input; q, k, v (one matmul's output)
    if gpt and (m.pos == "rotary" or m.qk_norm):
        per_token += 2 * h * C  # rotated or normalised q and k are new tensors
    if gpt and m.qk_norm:
        per_token += 2 * nh * FP32  # their inverse RMS
    per_token += h * C  # attention's output, c_proj's input
    if gpt and m.qk_norm:
        per_token += h * C  # from contiguous q and k the output comes out in the other layout: c_proj copies it
    if m.dropout > 0 and not cuda:
        # the CPU's fused attention has no dropout: the math path keeps the probabilities, the mask and the
        # dropped probabilities, (T, T) per head
        per_token += 3 * nh * T * h
    else:
        per_token += nh * FP32  # flash / memory-efficient attention: the log-sum-exp only, no (T, T) matrix
    per_token += h * C  # the MLP's input
    per_token += (4 if m.mlp == "swiglu" else 2) * h * hidden  # c_fc's output and the activation's
    per_token += 2 * mask  # the residual dropouts
    blocks = tuple(tokens * per_token + (2 * matrices if s.bf16 else 0) for matrices in s.block_matrices)
    logits, loss_grads = _logit_terms(s, tokens, gpt and m.logit_softcap is not None)
    positions = T * INT64 if not gpt or m.pos == "learned" else 0  # the position ids
    # ids and targets, the embeddings' dropout mask, ln_f, the head's input
    outside = tokens * (2 * INT64 + mask + norm_c * C + norm_t + h * C) + positions + logits
    held = tokens * (2 * INT64 + mask + V * h) + positions
    if s.bf16:
        outside += 2 * V * C  # the head's weight in bf16
    fc_out = 2 * hidden if m.mlp == "swiglu" else hidden
    transient = tokens * (2 * C * FP32 + 2 * fc_out * h)  # the residual stream's gradient in and out, two hidden's
    return Activations(blocks, tokens * C * FP32, outside, held, loss_grads, transient)


def _good_ld(n: int) -> int:
    """oneDNN's leading dimension: a multiple of 64 bytes, not of 1024 (4K aliasing)."""
    ld = -(-n // 16) * 16
    return ld + 16 if ld % 256 == 0 else ld


def _onednn_lstm_workspace(I: int, H: int, B: int, T: int) -> int:
    """One LSTM layer's training workspace in oneDNN (torch's CPU LSTM): the gates and their cell outputs per
    step, and the layer, cell and gradient states over T+1 steps, each part rounded up to a page."""
    wide = _good_ld(max(I, H))
    parts = [T * B * _good_ld(4 * H), T * B * _good_ld(H),  # gates, h_t
             2 * (T + 1) * B * wide, 2 * (T + 1) * B * H,  # layer states, cell states
             2 * (T + 1) * B * wide, 2 * (T + 1) * B * wide, 2 * (T + 1) * B * H]  # their gradients
    return sum(-(-FP32 * p // PAGE) * PAGE for p in parts)


def _recurrent_layer(mode: str, I: int, H: int, B: int, T: int, h: int) -> int:
    """Bytes one recurrent layer keeps besides its input: LSTM runs in oneDNN (its workspace, its output and
    the four B x H states); GRU and the Elman RNN run step by step (GRU keeps its three gates, the reset hidden
    state and its inputs, 7H per token, and the input projection's input; the RNN its input and its hidden
    states over T+1 steps)."""
    tokens = B * T
    if mode == "LSTM":
        return _onednn_lstm_workspace(I, H, B, T) + tokens * H * h + 4 * B * H * FP32
    if mode == "GRU":
        return tokens * (7 * H + I) * h
    return (tokens * I + B * (T + 1) * H) * h


def _recurrent(s: Setup, B: int) -> Activations:
    """RNN, LSTM and GRU (models/rnn.py): every recurrent layer of every nn.RNNBase the model holds, in order
    (a forward/backward pair has two stacks of n_layer), the dropouts' masks and outputs, the head's input, the
    logits the trainer holds and each direction's log-probs."""
    m, h = s.cfg.model, s.compute_bytes
    T, tokens = m.block_size, B * m.block_size
    layers = s.rnn_layers
    rows = B if m.locked_dropout else tokens  # a locked mask is one per sequence
    kept = 2 * tokens * INT64  # the ids and the targets
    for i, (mode, I, H) in enumerate(layers):
        kept += _recurrent_layer(mode, I, H, B, T, h)
        if i % m.n_layer == 0:
            if mode == "LSTM":
                kept += tokens * I * h  # oneDNN's time-major copy of the (batch-first) embeddings
        elif m.dropout_between > 0:
            kept += rows * I * h  # the mask on this layer's input
            if mode == "LSTM":
                kept += tokens * I * h  # the dropped input (GRU's and the RNN's count above already holds it)
    directions = 2 if m.direction == "both" else 1
    last = layers[-1][2]
    for p, width in ((m.dropout_input, m.n_embd), (m.dropout, last)):
        if p > 0:
            kept += directions * rows * width * h
    if m.embed_dropout > 0:
        kept += directions * tokens * FP32  # the kept rows' scale looked up per token
    kept += directions * tokens * last * h  # the batch-first copy of the last layer's output the head reads
    if directions == 2:
        # the backward LM reads flipped ids and scores T-1 tokens; its logits are not held past its loss
        kept += tokens * INT64 + B * (T - 1) * m.vocab_size * FP32
    logits, loss_grads = _logit_terms(s, tokens, False)
    return Activations((), 0, kept + logits, tokens * (2 * INT64 + m.vocab_size * h), directions * loss_grads)


def _ffnn(s: Setup, B: int) -> Activations:
    """The feed-forward LM (models/ffnn.py): the concatenated context windows (the first layer's input), each
    hidden layer's activation, dropout's masks and dropped outputs, the logits."""
    m, h = s.cfg.model, s.compute_bytes
    tokens = B * m.block_size
    window = m.context * m.n_embd
    per_token = 2 * INT64 + window * h + m.n_hidden * m.hidden_size * h
    if m.direct and m.dropout == 0:
        # undropped, the windows are a strided view, so each layer reading them keeps its own contiguous copy:
        # Bengio's direct connections a second one
        per_token += window * h
    if m.dropout > 0:
        # the dropped windows replace the copy the first layer kept, plus their mask; each hidden layer's
        # dropped output and mask
        per_token += window * h + 2 * m.n_hidden * m.hidden_size * h
    logits, loss_grads = _logit_terms(s, tokens, False)
    return Activations((), 0, tokens * per_token + logits, tokens * (2 * INT64 + m.vocab_size * h), loss_grads)


def activations(s: Setup, micro_batch: int) -> Activations:
    """What one micro-batch keeps for the backward pass, by family (the config class says which)."""
    m = s.cfg.model
    if isinstance(m, (GPTConfig, EncoderConfig)):
        return _transformer(s, micro_batch)
    if isinstance(m, RNNConfig):
        return _recurrent(s, micro_batch)
    if isinstance(m, FFNNConfig):
        return _ffnn(s, micro_batch)
    raise ConfigError(f"model.arch={m.arch}: the planner has no activation estimate for this family")


@dataclass(frozen=True)
class StrategyPlan:
    """One strategy's memory per device, in bytes; None where checkpointing does not apply (no blocks)."""
    strategy: str
    devices: int
    parameters: int
    gradients: int
    optimizer_state: int
    optimizer_scratch: int
    buffers: int  # ddp's gradient buckets; fsdp's gathered parameters at most (the root's and one block's)
    activations: int
    activations_checkpointed: int | None
    loss_gradients: int
    peak: int
    peak_checkpointed: int | None
    max_micro_batch: int
    max_micro_batch_checkpointed: int | None


@dataclass(frozen=True)
class _Held:
    """What one rank holds whatever the micro-batch, in bytes."""
    shards: int  # the ranks fsdp shards over; 1 for single and ddp
    parameters: int  # with the buffers
    gradients: int
    optimizer_state: int
    optimizer_scratch: int
    buckets: int  # ddp's copy of the gradients
    root_gradients: int  # the root's (embeddings, final norm, head), whole: fsdp reduce-scatters them last
    root_gathered: int  # the root's parameters gathered whole for the whole step (fsdp)
    blocks_whole: tuple[int, ...]  # each block's parameters, whole (gathered, and its gradient as made)
    blocks_shard: tuple[int, ...]  # each block's gradients as a rank keeps them after the reduce-scatter


def _held(s: Setup, strategy: str, devices: int) -> _Held:
    """One rank's fixed terms under `strategy` on `devices` devices."""
    shards = devices if strategy == "fsdp" else 1
    stepped = s.elements(1, lambda i: s.trainable[i])
    root = s.elements(1, lambda i: s.block_of[i] is None)
    return _Held(
        shards=shards,
        parameters=FP32 * (s.elements(shards) + s.buffer_elements),
        gradients=FP32 * s.elements(shards, lambda i: s.trainable[i]),
        optimizer_state=optimizer_state(s, shards),
        optimizer_scratch=step_scratch(s, shards),
        # DDP copies each gradient into its bucket (gradient_as_bucket_view is off): a second set, for good
        buckets=FP32 * stepped if strategy == "ddp" else 0,
        root_gradients=FP32 * s.elements(1, lambda i: s.block_of[i] is None and s.trainable[i]),
        root_gathered=FP32 * root if shards > 1 else 0,
        blocks_whole=tuple(FP32 * s.elements(1, lambda i: s.block_of[i] == k) for k in range(s.n_blocks)),
        blocks_shard=tuple(FP32 * s.elements(shards, lambda i: s.block_of[i] == k and s.trainable[i])
                           for k in range(s.n_blocks)))


def _backward_peak(held: _Held, acts: Activations, checkpointing: bool) -> int:
    """The most the backward pass holds besides parameters and optimizer state. It starts with every activation
    and the loss's gradients; then, block by block from the top, it holds the activations of the blocks below
    (their inputs only, with checkpointing), the block at work's internals (recomputed, with checkpointing) and
    the gradients flowing through it, and the parameter gradients made so far: the root's (a tied head's
    gradient comes first), the blocks' above and its own. Under fsdp the root's parameters stay gathered for
    the whole pass, a block's while it works, and the blocks above keep only their shards of the gradients."""
    fsdp = held.shards > 1
    peak = acts.kept(checkpointing) + acts.loss_grads + held.root_gathered
    below = [acts.block_input if checkpointing else a for a in acts.blocks]
    done = 0  # the gradients of the blocks above, as a rank keeps them
    for k in reversed(range(len(acts.blocks))):
        block = held.blocks_whole[k]
        peak = max(peak, acts.held + sum(below[:k]) + acts.blocks[k] + acts.block_transient + held.root_gradients
                   + done + block + held.root_gathered + (block if fsdp else 0))
        done += held.blocks_shard[k]
    return peak


def _peak(held: _Held, acts: Activations, checkpointing: bool) -> int:
    """The step's peak on one rank: the larger of the backward pass's and the optimizer step's (module doc)."""
    step = held.gradients + held.optimizer_scratch
    return (held.parameters + held.optimizer_state + held.buckets
            + max(_backward_peak(held, acts, checkpointing), step))


def max_micro_batch(s: Setup, held: _Held, memory: int, checkpointing: bool) -> int:
    """The largest micro-batch whose peak fits `memory` (0: not even one sequence). The peak grows with the
    micro-batch, so a doubling then a bisection finds it."""
    def fits(b: int) -> bool:
        return _peak(held, activations(s, b), checkpointing) <= memory

    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        if high >= 2**24:
            return high
        low, high = high, 2 * high
    while high - low > 1:  # low fits, high does not
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def strategy_plan(s: Setup, strategy: str, devices: int, memory: int) -> StrategyPlan:
    """The rows of one strategy at the recipe's micro-batch, with and without checkpointing."""
    held = _held(s, strategy, devices)
    acts = activations(s, s.cfg.train.micro_batch_size)
    ckpt = s.n_blocks > 0
    fsdp_gathered = held.root_gathered + max(held.blocks_whole, default=0) if held.shards > 1 else 0
    return StrategyPlan(
        strategy=strategy, devices=devices if strategy != "single" else 1, parameters=held.parameters,
        gradients=held.gradients, optimizer_state=held.optimizer_state, optimizer_scratch=held.optimizer_scratch,
        buffers=held.buckets + fsdp_gathered, activations=acts.kept(False),
        activations_checkpointed=acts.kept(True) if ckpt else None, loss_gradients=acts.loss_grads,
        peak=_peak(held, acts, False), peak_checkpointed=_peak(held, acts, True) if ckpt else None,
        max_micro_batch=max_micro_batch(s, held, memory, False),
        max_micro_batch_checkpointed=max_micro_batch(s, held, memory, True) if ckpt else None)


@dataclass(frozen=True)
class Plan:
    """The planner's answer: what was planned, each strategy's rows, the pick and why."""
    name: str
    arch: str
    parameters: int  # the model's parameter count (a tied matrix once)
    vocab_size: int
    vocab_from: str
    micro_batch_size: int
    block_size: int
    device: str
    activation_dtype: str
    optimizer: str
    checkpointing: bool  # the recipe's train.activation_checkpointing
    devices: int
    device_memory: int
    strategies: dict[str, StrategyPlan]
    pick: str | None  # the strategy to use; None when none fits as the recipe stands
    advice: str

    def as_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        cols = list(self.strategies.values())
        head = [p.strategy if p.strategy == "single" else f"{p.strategy} x{p.devices}" for p in cols]
        rows = [(label, ["n/a" if getattr(p, key) is None else fmt(getattr(p, key)) for p in cols])
                for label, key, fmt in (
                    ("parameters", "parameters", format_size), ("gradients", "gradients", format_size),
                    ("optimizer state", "optimizer_state", format_size),
                    ("optimizer step scratch", "optimizer_scratch", format_size),
                    ("ddp buckets / fsdp gathered", "buffers", format_size),
                    ("activations", "activations", format_size),
                    ("activations, checkpointed", "activations_checkpointed", format_size),
                    ("loss gradients", "loss_gradients", format_size),
                    ("peak", "peak", format_size), ("peak, checkpointed", "peak_checkpointed", format_size),
                    ("largest micro-batch", "max_micro_batch", str),
                    ("largest micro-batch, checkpointed", "max_micro_batch_checkpointed", str))]
        width = max(len(label) for label, _ in rows)
        cell = max(12, *(len(v) for _, values in rows for v in values), *(len(h) for h in head)) + 2
        devices = f"{self.devices} device{'s' if self.devices > 1 else ''}"
        lines = [f"{self.name}: {self.arch}, {self.parameters:,} parameters (vocab {self.vocab_size:,} from "
                 f"{self.vocab_from}), micro-batch {self.micro_batch_size} x {self.block_size} tokens, "
                 f"{self.optimizer}, activations in {self.activation_dtype} on {self.device}; {devices} of "
                 f"{format_size(self.device_memory)} ({self.device_memory / 1e9:,.1f} GB)",
                 "", " " * width + "".join(h.rjust(cell) for h in head)]
        lines += [label.ljust(width) + "".join(v.rjust(cell) for v in values) for label, values in rows]
        return "\n".join([*lines, "", f"pick: {self.advice}"])


def _advice(s: Setup, plans: dict[str, StrategyPlan], devices: int, memory: int) -> tuple[str | None, str]:
    """The simplest strategy that fits as the recipe stands (single, then ddp, then fsdp); if none does, what
    would: activation checkpointing, a smaller micro-batch, more devices under fsdp."""
    ckpt = s.cfg.train.activation_checkpointing and s.n_blocks > 0
    for name, p in plans.items():
        peak, largest = (p.peak_checkpointed, p.max_micro_batch_checkpointed) if ckpt else (p.peak, p.max_micro_batch)
        if peak <= memory:
            why = {"single": "one process holds it all", "ddp": "every rank holds it all, the data is split",
                   "fsdp": "the training state sharded over the ranks"}[name]
            also = ""
            if name == "single" and "ddp" in plans:
                ddp = plans["ddp"].peak_checkpointed if ckpt else plans["ddp"].peak
                also = (f"; to use all {devices} devices, ddp (peak {format_size(ddp)}) splits the data"
                        if ddp <= memory else f"; ddp over {devices} devices would not fit (its gradient buckets)")
            return name, (f"{name} ({why}): peak {format_size(peak)} of {format_size(memory)} per device, "
                          f"micro-batches up to {largest} fit{also}")
    hints = []
    if not ckpt and s.n_blocks:
        fitting = [n for n, p in plans.items() if p.peak_checkpointed <= memory]
        if fitting:
            hints.append(f"train.activation_checkpointing=true (then {fitting[0]} fits)")
    for name, p in plans.items():
        largest = p.max_micro_batch_checkpointed if ckpt else p.max_micro_batch
        if largest:
            accum = math.ceil(s.cfg.train.micro_batch_size * s.cfg.train.grad_accum_steps / largest)
            hints.append(f"train.micro_batch_size={largest} with {name} "
                         f"(train.grad_accum_steps={accum} keeps the batch)")
            break
    if s.n_blocks:
        acts = activations(s, s.cfg.train.micro_batch_size)
        more = next((n for n in range(devices + 1, 1025)
                     if _peak(_held(s, "fsdp", n), acts, ckpt) <= memory), None)
        if more is not None:
            hints.append(f"--devices {more} with fsdp")
    if not hints:
        return None, (f"nothing fits in {format_size(memory)} per device, not even one sequence per device: "
                      "a smaller model or a larger device")
    return None, f"none fits in {format_size(memory)} per device as the recipe stands; " + "; or ".join(hints)


def plan(cfg: Config, devices: int = 1, device_memory: int = 80 * 10**9) -> Plan:
    """Per-device memory of training `cfg` under each strategy that applies to `devices` devices of
    `device_memory` bytes: single always, ddp and fsdp from two devices (fsdp for families with blocks)."""
    if isinstance(devices, bool) or not isinstance(devices, int):
        raise ConfigError(f"--devices {devices!r}: expected a whole number of devices, 1 or more")
    if devices < 1:
        raise ConfigError(f"--devices {devices}: expected 1 or more")
    if device_memory < 1:
        raise ConfigError(f"--device-memory {device_memory}: must be more than 0 bytes")
    s = setup(cfg)
    names = ["single"] + (["ddp"] + (["fsdp"] if s.n_blocks else []) if devices > 1 else [])
    plans = {name: strategy_plan(s, name, devices, device_memory) for name in names}
    pick, advice = _advice(s, plans, devices, device_memory)
    return Plan(name=cfg.name, arch=cfg.model.arch, parameters=s.elements(), vocab_size=s.cfg.model.vocab_size,
                vocab_from=s.vocab_from, micro_batch_size=cfg.train.micro_batch_size,
                block_size=cfg.model.block_size, device=s.device,
                activation_dtype="bfloat16" if s.bf16 else "float32", optimizer=s.cfg.optimizer.name,
                checkpointing=cfg.train.activation_checkpointing, devices=devices, device_memory=device_memory,
                strategies=plans, pick=pick, advice=advice)
