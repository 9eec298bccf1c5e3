"""Typed, documented configuration: one pydantic model per section, YAML recipes, dotted overrides.

Every field has a default and a one-line description; `lmforge config show` prints them. Unknown keys
and bad values are `ConfigError`s naming the field. The defaults are the main job: a small GPT on the
built-in corpus that trains in a few minutes on a laptop CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmforge.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


SectionT = TypeVar("SectionT", bound=Section)


class SourceConfig(Section):
    """One corpus of a weighted mixture (data.sources): read with the data section's format settings."""

    path: str = Field(..., description="this source's corpus: a file, a folder or a glob (the formats of data.path)")
    weight: float = Field(..., description="this source's share of the training windows, relative to the other sources' weights (> 0)")
    field: str | None = Field(None, description="the jsonl field or csv/tsv/parquet column that holds the text; empty = data.field")
    name: str | None = Field(None, description="the name its validation loss (val_loss/<name>) and epochs (epochs/<name>) are logged under; empty = the file or folder name without extensions (of a glob, its folder's)")

    @model_validator(mode="after")
    def _named_and_weighted(self) -> "SourceConfig":
        name = self.name
        if name is None:  # the file or folder name without extensions; of a glob, the folder it is in
            parts = [p for p in Path(self.path).parts if not any(c in p for c in "*?[")]
            base = parts[-1] if parts else ""
            name = base.split(".", 1)[0] or base
            if not name:
                raise ValueError(f"source {self.path!r}: no file or folder name to call it by; give it a name")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"source {name!r}: a name is letters, digits, '_', '.' and '-' (it names a metric)")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"source {name!r}: weight must be a positive number, got {self.weight}")
        if self.name is None:  # validated again on assignment, now with its name
            self.name = name
        return self


class DataConfig(Section):
    path: str | None = Field(None, description="corpus: a file, a folder or a glob (.txt/.jsonl/.csv/.tsv/.parquet/.arrow, optionally .gz), a folder written by datasets' save_to_disk, or hf:NAME (a Hugging Face dataset, streamed); empty = the built-in Python-docs corpus")
    format: Literal["auto", "txt", "jsonl", "csv", "tsv", "parquet", "arrow"] = Field("auto", description="input format; auto = from each file's extension")
    field: str = Field("text", description="the jsonl field or csv/tsv/parquet/arrow/dataset column that holds the text")
    split: str = Field("train", description="the split of data.path to read when it is a DatasetDict save_to_disk folder or an hf: dataset")
    val_split: str = Field("validation", description="the split of data.val_path to read when it is a DatasetDict save_to_disk folder or an hf: dataset")
    test_split: str = Field("test", description="the split of data.test_path to read when it is a DatasetDict save_to_disk folder or an hf: dataset")
    hf_config: str | None = Field(None, description="hf: datasets: the configuration (subset) name, e.g. wikitext-103-raw-v1; empty = the dataset's default")
    hf_revision: str | None = Field(None, description="hf: datasets: the branch, tag or commit to read; empty = the default branch (a hub corpus counts as unchanged while its name, config, split and revision are)")
    txt_documents: Literal["file", "line", "blank_line"] = Field("file", description="how a .txt file splits into documents: the whole file, each line, or paragraphs separated by blank lines")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="the last fraction of the token stream held out for validation (when val_path is empty)")
    val_path: str | None = Field(None, description="a separate validation corpus (e.g. ptb.valid.txt); then all of path is training data")
    test_path: str | None = Field(None, description="a test corpus, encoded as the test split (lmforge eval --split test)")
    prepared_dir: str | None = Field(None, description="where token shards are written; empty = prepared/<hash of data and tokenizer settings>")
    shard_tokens: int = Field(2**26, ge=1024, description="tokens per shard file")
    encode_batch_bytes: int = Field(1 << 22, ge=1024, description="text encoded per batch on all cores (bounds memory while preparing)")
    encoder: Literal["auto", "tokenizers"] = Field("auto", description="what encodes the corpus: auto = tiktoken for a byte-level BPE whose ids it gives exactly (checked on the merges), a code-point lookup table for a char tokenizer (both several times faster), else tokenizers; tokenizers = always the reference library. The tokens are the same either way")
    sources: list[SourceConfig] | None = Field(None, description="a weighted mixture of corpora instead of data.path: [{path, weight, field, name}]; training windows are drawn from each in proportion to its weight, each holds out its own last data.val_fraction for validation, logged per source")

    @model_validator(mode="after")
    def _one_corpus(self) -> "DataConfig":
        if self.sources is None:
            return self
        if not self.sources:
            raise ValueError("data.sources: give at least one source, or leave it empty for data.path")
        if self.path is not None:
            raise ValueError("data.path and data.sources: a recipe reads one corpus or a mixture of sources, not both")
        if self.val_path is not None:
            raise ValueError("data.val_path: each of data.sources holds out its own last data.val_fraction for validation")
        names = [s.name for s in self.sources]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"data.sources: two sources are named {twice[0]!r}; give each a distinct name")
        return self

    def of_source(self, source: SourceConfig) -> "DataConfig":
        """The data settings that read one source: its path and field, the format settings of this section."""
        return self.model_copy(update={"path": source.path, "field": source.field or self.field, "sources": None,
                                       "val_path": None, "test_path": None})


_DATASET_FIELDS = ("split", "val_split", "test_split", "hf_config", "hf_revision")


class TokenizerConfig(Section):
    kind: Literal["char", "word", "bpe", "wordpiece", "unigram"] = Field("bpe", description="character, word, or a trained subword model (byte-level BPE, WordPiece, Unigram)")
    vocab_size: int = Field(2048, ge=16, description="target vocabulary size for word and subword tokenizers (char uses every character seen)")
    min_frequency: int = Field(2, ge=1, description="a word or merge must occur this often to enter the vocabulary")
    word_split: Literal["punctuation", "whitespace"] = Field("punctuation", description="word tokenizer: split at whitespace and punctuation, or at whitespace only (pre-tokenized text such as PTB, whose 10k vocabulary this reproduces)")
    lowercase: bool = Field(False, description="lowercase text before tokenizing")
    eod: bool = Field(True, description="append an end-of-document token <|endoftext|> after every document")
    path: str | None = Field(None, description="use this existing tokenizer.json instead of training one")
    mask_token: bool = Field(False, description="add a <mask> special token (masked-LM encoders; on by itself for model.arch=encoder)")
    train_sample_bytes: int = Field(200_000_000, ge=1, validation_alias=AliasChoices("train_sample_bytes", "train_max_bytes"), description="train the tokenizer on at most this many bytes, sampled evenly over the whole corpus (all of a smaller one); train_max_bytes, its old name, still works")


class GPTConfig(Section):
    """Decoder-only Transformer (models/transformer.py)."""

    arch: Literal["gpt"] = Field("gpt", description="model family: gpt, ffnn, rnn, lstm, gru or encoder")
    n_layer: int = Field(4, ge=1, description="transformer blocks")
    n_head: int = Field(4, ge=1, description="attention heads per block")
    n_embd: int = Field(128, ge=1, description="embedding width")
    block_size: int = Field(128, ge=1, description="context length in tokens")
    vocab_size: int | None = Field(None, ge=1, description="vocabulary size; empty = taken from the tokenizer")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on embeddings, attention and residual branches")
    bias: bool = Field(False, description="biases in linear layers and LayerNorm")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="normalisation layer")
    pos: Literal["learned", "rotary"] = Field("learned", description="learned absolute position embeddings or rotary embeddings")
    rope_base: float = Field(10000.0, gt=0, description="rotary embedding base frequency")
    mlp: Literal["gelu", "relu2", "swiglu"] = Field("gelu", description="MLP activation: GELU, squared ReLU, or SwiGLU")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width as a multiple of n_embd (SwiGLU uses 2/3 of it per branch)")
    tie_embeddings: bool = Field(True, description="share the token embedding with the output head")
    init_std: float = Field(0.02, gt=0, description="std of the normal weight init; residual projections get init_std/sqrt(2*n_layer)")
    qk_norm: bool = Field(False, description="RMS-normalise queries and keys per head before attention (QK-norm)")
    zero_init_proj: bool = Field(False, description="initialise the residual output projections to zero, so every block starts as the identity")
    logit_softcap: float | None = Field(None, gt=0, description="squash logits smoothly into (-cap, cap) with cap * tanh(logits / cap); empty = off")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "GPTConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.pos == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError("rotary positions need an even head size (n_embd / n_head)")
        return self


class FFNNConfig(Section):
    """Feed-forward neural LM over a fixed window of previous tokens (Bengio et al. 2003; models/ffnn.py)."""

    arch: Literal["ffnn"] = Field("ffnn", description="model family: gpt, ffnn, rnn, lstm, gru or encoder")
    context: int = Field(5, ge=1, description="previous tokens the model sees for each prediction (n-1 of an n-gram)")
    block_size: int = Field(64, ge=1, description="positions predicted per training window")
    vocab_size: int | None = Field(None, ge=1, description="vocabulary size; empty = taken from the tokenizer")
    n_embd: int = Field(64, ge=1, description="embedding width per context token")
    hidden_size: int = Field(256, ge=1, description="width of each hidden layer")
    n_hidden: int = Field(1, ge=1, description="hidden layers")
    activation: Literal["tanh", "relu"] = Field("tanh", description="hidden activation")
    direct: bool = Field(False, description="direct connections from the concatenated embeddings to the output (Bengio's W)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the embeddings and hidden layers")
    init_std: float = Field(0.02, gt=0, description="std of the normal weight init")


class RNNConfig(Section):
    """Recurrent LM: Elman RNN, LSTM or GRU with AWD-LSTM regularisers as options (models/rnn.py)."""

    arch: Literal["rnn", "lstm", "gru"] = Field("lstm", description="model family: gpt, ffnn, rnn, lstm, gru or encoder")
    n_layer: int = Field(2, ge=1, description="stacked recurrent layers")
    n_embd: int = Field(200, ge=1, description="embedding width")
    hidden_size: int = Field(200, ge=1, description="hidden units per layer (the last layer uses n_embd when tied)")
    block_size: int = Field(35, ge=1, description="truncated-BPTT length: tokens per window; state carries across windows")
    vocab_size: int | None = Field(None, ge=1, description="vocabulary size; empty = taken from the tokenizer")
    nonlinearity: Literal["tanh", "relu"] = Field("tanh", description="Elman RNN activation")
    bidirectional: bool = Field(False, description="a bidirectional encoder (fine-tuning heads only; not a causal LM)")
    direction: Literal["forward", "both"] = Field("forward", description="forward: a left-to-right LM; both: an ELMo-style pair of a forward and a backward LM trained together, the loss reported per direction")
    bilm_share_embedding: bool = Field(True, description="direction=both: the two LMs share the embedding and output layer, as ELMo does (false = separate)")
    tie_embeddings: bool = Field(False, description="share the embedding with the output head (needs the last layer's output width = n_embd)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the output of the last layer (AWD: dropout)")
    dropout_between: float = Field(0.0, ge=0.0, lt=1.0, description="dropout between recurrent layers (AWD: dropouth)")
    dropout_input: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the embedded input (AWD: dropouti)")
    embed_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="drop whole words from the embedding matrix (AWD: dropoute)")
    locked_dropout: bool = Field(False, description="one dropout mask per sequence for all time steps (variational dropout)")
    weight_drop: float = Field(0.0, ge=0.0, lt=1.0, description="DropConnect on the hidden-to-hidden matrices (AWD: wdrop)")
    ar_alpha: float = Field(0.0, ge=0.0, description="activation regularisation: alpha * mean(h^2) of the last layer's dropped output")
    tar_beta: float = Field(0.0, ge=0.0, description="temporal activation regularisation: beta * mean((h_t - h_t-1)^2)")
    reset_state_at_eod: bool = Field(False, description="zero the carried state where a document ends")
    init_range: float = Field(0.1, gt=0, description="embedding and output weights ~ U(-init_range, init_range)")


class EncoderConfig(Section):
    """Bidirectional Transformer encoder pretrained with BERT's masked-LM objective (models/encoder.py)."""

    arch: Literal["encoder"] = Field("encoder", description="model family: gpt, ffnn, rnn, lstm, gru or encoder")
    n_layer: int = Field(4, ge=1, description="transformer blocks")
    n_head: int = Field(4, ge=1, description="attention heads per block")
    n_embd: int = Field(128, ge=1, description="embedding width")
    block_size: int = Field(128, ge=1, description="context length in tokens")
    vocab_size: int | None = Field(None, ge=1, description="vocabulary size; empty = taken from the tokenizer")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on embeddings, attention and residual branches")
    bias: bool = Field(True, description="biases in linear layers and LayerNorm")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="normalisation layer")
    mlp: Literal["gelu", "relu2", "swiglu"] = Field("gelu", description="MLP activation: GELU, squared ReLU, or SwiGLU")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width as a multiple of n_embd")
    init_std: float = Field(0.02, gt=0, description="std of the normal weight init")
    mask_prob: float = Field(0.15, gt=0, lt=1, description="masked LM: share of tokens the loss predicts (BERT: 0.15)")
    mask_token_frac: float = Field(0.8, ge=0, le=1, description="masked LM: share of the predicted tokens replaced by <mask> in the input (BERT: 0.8)")
    random_token_frac: float = Field(0.1, ge=0, le=1, description="masked LM: share replaced by a random token (BERT: 0.1); the rest stay as they are")

    @model_validator(mode="after")
    def _consistent(self) -> "EncoderConfig":
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.mask_token_frac + self.random_token_frac > 1:
            raise ValueError("mask_token_frac + random_token_frac must be at most 1")
        return self


ModelConfig = Annotated[GPTConfig | FFNNConfig | RNNConfig | EncoderConfig, Field(discriminator="arch")]
ARCHITECTURES = ("gpt", "ffnn", "rnn", "lstm", "gru", "encoder")


class OptimizerConfig(Section):
    name: Literal["auto", "adamw", "sgd", "muon"] = Field("auto", description="optimizer: auto = muon when pretraining a gpt, adamw otherwise; AdamW; SGD (with optional momentum) as the classic RNN LM recipes use; or Muon for hidden matrices with AdamW for the rest")
    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    betas: tuple[float, float] = Field((0.9, 0.99), description="AdamW betas")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum")
    muon_lr: float = Field(0.03, gt=0, description="Muon: peak rate of the orthogonalised updates (follows the same schedule as lr)")
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="Muon: Nesterov momentum")
    muon_precision: Literal["auto", "float32", "bfloat16"] = Field("auto", description="Muon: precision of the Newton-Schulz iteration; auto = bfloat16 when training computes in bf16 (train.dtype; CUDA by default) on hardware that multiplies bf16, else float32, which keeps gradient accumulation and DDP exact to float32; bfloat16 is about 1.5x faster on CPUs with AVX512-BF16 or AMX")
    nesterov: bool = Field(False, description="SGD with Nesterov momentum")
    weight_decay: float = Field(0.1, ge=0, description="weight decay on 2-D weights, not biases, norms or gains (decoupled in AdamW, added to the gradient in SGD)")
    l1: float = Field(0.0, ge=0, description="explicit L1 penalty coefficient added to the loss (weights only)")
    l2: float = Field(0.0, ge=0, description="explicit L2 penalty coefficient added to the loss (weights only)")
    impl: Literal["auto", "fused", "foreach", "plain"] = Field("auto", description="optimizer kernel: fused where available, else foreach")


class ScheduleConfig(Section):
    name: Literal["constant", "cosine", "linear", "inverse_sqrt", "onecycle", "slanted_triangular", "wsd", "step"] = Field("cosine", description="learning-rate schedule (wsd: warmup, stable, then a linear cooldown; step: constant, then multiplied by step_gamma every step_size steps from step_start on)")
    warmup_steps: int = Field(100, ge=0, description="linear warmup steps (constant, cosine, linear, inverse_sqrt)")
    warmup_fraction: float = Field(0.1, gt=0, lt=1, description="fraction of decay_steps spent rising (onecycle, slanted_triangular)")
    min_lr: float = Field(1e-4, ge=0, description="learning rate at the end of the decay")
    cooldown_fraction: float = Field(0.2, gt=0, le=1, description="wsd: the final fraction of decay_steps over which the rate falls linearly to min_lr")
    decay_steps: int | None = Field(None, ge=1, description="steps over which the rate decays; empty = train.max_steps")
    stlr_ratio: float = Field(32.0, ge=1, description="slanted triangular: how much smaller the lowest rate is than the peak")
    onecycle_div: float = Field(25.0, ge=1, description="onecycle: the starting rate is lr / onecycle_div")
    step_start: int = Field(0, ge=0, description="step: steps at the full rate before the decay clock starts (the first decay comes step_size steps later)")
    step_size: int = Field(1000, ge=1, description="step: steps between decays (e.g. one epoch)")
    step_gamma: float = Field(0.5, gt=0, le=1, description="step: the factor applied at each decay")


class TrainConfig(Section):
    max_steps: int = Field(1000, ge=1, description="optimizer steps")
    micro_batch_size: int = Field(16, ge=1, description="sequences per forward pass per process")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step (global batch = micro_batch_size x grad_accum_steps x world size)")
    grad_clip: float = Field(1.0, ge=0, description="clip the global gradient norm to this; 0 = off")
    max_bad_steps: int = Field(5, ge=1, description="a step whose loss or gradient norm is not finite is skipped (no update, the schedule waits); this many in a row stop the run with one line, checkpointing the weights if they still give a finite validation loss")
    batch_warmup_steps: int = Field(0, ge=0, description="grow the micro-batch linearly from batch_warmup_start sequences to micro_batch_size over this many steps; 0 = off (fixed-context models only)")
    batch_warmup_start: int = Field(1, ge=1, description="sequences per micro-batch at step 0 of the batch-size warm-up")
    seed: int = Field(1337, description="seeds model init, batch sampling and dropout")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when available")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto = bf16 autocast where bf16 matrix products run in hardware (CUDA with bf16; a CPU with AVX512-BF16 or AMX: same loss, faster), else float32; attention stays float32 under CPU autocast")
    compile: bool | Literal["auto"] = Field("auto", description="torch.compile the model: true, false, or auto = after 5 eager steps, compile when the time it would save on the steps left is twice its cost (this model's last measured compile time and speed-up on this device, kept in lmforge's cache folder with inductor's kernels; else a measured prior: on the CPU 0.97x the eager step for a 44 s cold compile, so only very long runs compile there; train/compiling.py)")
    strategy: Literal["auto", "single", "ddp", "fsdp"] = Field("auto", description="how the model is spread over torchrun's processes: single (one process), ddp (each rank holds everything; gradients averaged), fsdp (FSDP2: parameters, gradients and optimizer state sharded over the ranks, per transformer block or recurrent layer stack); auto = single for one process, ddp under torchrun")
    fsdp_reshard_after_forward: bool = Field(True, description="fsdp: free a block's gathered parameters after its forward pass and gather them again for the backward (ZeRO-3); false keeps them (ZeRO-2: more memory, one gather less)")
    checkpoint_format: Literal["auto", "full", "sharded"] = Field("auto", description="how checkpoints are written: full (one model.safetensors and optimizer.pt, gathered on rank 0), sharded (torch.distributed.checkpoint: every rank writes its own shards, for models whose state does not fit one host; fsdp only); auto = sharded under fsdp, full otherwise. Either kind is read by every verb and resumes on any number of processes")
    activation_checkpointing: bool = Field(False, description="keep only each transformer block's input (a recurrent model's: its layer stack's) for the backward pass and recompute the rest: less activation memory for about one more forward pass of compute; gpt, encoder and recurrent families")
    num_threads: int | None = Field(None, ge=1, description="CPU threads for torch; empty = torch's default")
    eval_interval: int = Field(250, ge=1, description="evaluate on the validation split every this many steps (and at the end)")
    eval_max_windows: int | None = Field(None, ge=1, description="cap on validation windows per evaluation; empty = the whole validation split")
    eval_batch_size: int = Field(64, ge=1, description="windows per evaluation forward pass")
    log_interval: int = Field(10, ge=1, description="write a metrics line every this many steps")
    checkpoint_interval: int | None = Field(None, ge=1, description="save a checkpoint every this many steps; empty = at every evaluation")
    keep_last: int = Field(2, ge=1, description="checkpoints to keep besides the best one")
    early_stopping_patience: int | None = Field(None, ge=1, description="stop after this many evaluations without a lower validation loss; empty = never")
    early_stopping_min_delta: float = Field(0.0, ge=0, description="a validation loss must beat the best by more than this to count as better")
    time_budget_s: float | None = Field(None, gt=0, description="stop (with a final evaluation and checkpoint) after this much wall time")
    tensorboard: bool = Field(True, description="write TensorBoard events to the run directory (false drops tensorboard from loggers)")
    loggers: list[Literal["jsonl", "tensorboard", "csv", "wandb", "mlflow"]] = Field(
        ["jsonl", "tensorboard"], description="where metrics go: jsonl (metrics.jsonl: always, resume and reports read it), tensorboard, csv (metrics.csv), wandb (pip install 'lmforge[wandb]'), mlflow (pip install 'lmforge[mlflow]'); rank 0 only")
    tracker_project: str | None = Field(None, description="the W&B project and MLflow experiment; empty = the recipe's name")
    mlflow_tracking_uri: str | None = Field(None, description="MLflow's tracking URI; empty = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory")
    report: bool = Field(True, description="write report.html (curves, results, samples, config) to the run directory at the end")
    report_every: int | None = Field(None, ge=1, description="also redraw report.html every this many steps while training; empty = only at the end")
    peak_flops: float | None = Field(None, gt=0, description="one device's peak FLOP/s, which MFU divides by; empty = the data-sheet figure of a known CUDA device (dense bf16 when training in bf16, else fp32; train/peak.py lists them; an unknown device logs no MFU), the CPU's measured GEMM peak in the training dtype on the CPU (lmforge bench-gemm; measured once per machine and cached)")

    @field_validator("loggers")
    @classmethod
    def _jsonl_stays(cls, value: list[str]) -> list[str]:
        if "jsonl" not in value:
            raise ValueError("jsonl must stay: resume, reports and bake-offs read metrics.jsonl")
        return list(dict.fromkeys(value))

    def trackers(self) -> list[str]:
        """The loggers besides metrics.jsonl; tensorboard=false drops TensorBoard."""
        return [n for n in self.loggers if n != "jsonl" and (n != "tensorboard" or self.tensorboard)]


class EvalConfig(Section):
    """How `lmforge eval` scores the run by default; each field is also an eval option that overrides it."""
    batch_size: int = Field(32, ge=1, description="windows (task runs: examples) per forward pass")
    stride: int | None = Field(None, ge=1, description="sliding windows every this many tokens, each scoring only what the previous one did not; empty = non-overlapping windows")
    documents: bool = Field(False, description="score each document of --data on its own as lm-evaluation-harness scores a rolling task (wikitext): its first token from the end-of-document token, disjoint block_size windows, words = re.split(r'\\s+'), bytes = UTF-8 length; word and byte perplexity equal the harness's")
    metrics: bool = Field(False, description="also the predictive entropy, and generation metrics: continuations of prompts from the text scored against the true ones")
    samples: int = Field(16, ge=1, description="prompts for the generation metrics")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto (CUDA when available), cpu or cuda")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto (as the run trained here: train.dtype's choice on this device), float32 or bfloat16 (bf16 autocast: faster, a little less exact)")


class SampleConfig(Section):
    prompt: str = Field("", description="text that generated samples continue (empty = start of a document)")
    num_samples: int = Field(2, ge=0, description="samples written to samples.txt after training")
    max_new_tokens: int = Field(200, ge=1, description="tokens per sample")
    temperature: float = Field(0.8, ge=0, description="softmax temperature; 0 = greedy")
    top_k: int | None = Field(200, ge=1, description="sample from the k most likely tokens; empty = all")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling: the smallest set of tokens with this much probability")


def _split_commas(value: Any) -> Any:
    """`html,unicode` on the command line means the list [html, unicode]."""
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


CleanStep = Literal["html", "unicode", "whitespace", "lowercase", "punctuation", "numbers", "mask", "spelling",
                    "stopwords", "lemma", "stem"]


class CleanConfig(Section):
    """Text cleaning (text/clean.py, docs/cleaning.md): `lmforge clean`, or a recipe's stage before prepare."""

    preset: Literal["lm", "classic"] = Field("lm", description="lm: html, unicode, whitespace (keeps the text a language model learns from); classic: adds lowercase, punctuation, stop words and lemmas (bag of words)")
    steps: list[CleanStep] | None = Field(None, description="the steps to run, in this order, instead of the preset's: html, unicode, whitespace, lowercase, punctuation, numbers, mask, spelling, stopwords, lemma, stem")
    html_extract: Literal["text", "main"] = Field("text", description="html step: text = all the visible text of a page (selectolax); main = its main content only, boilerplate (navigation, header, footer, cookie banner, link lists) removed by trafilatura, 20 to 30 times slower per page; main applies to whole pages (a doctype, <html> or <body>), markup fragments get text")
    unicode_form: Literal["NFC", "NFKC"] = Field("NFC", description="unicode step: NFC keeps every character's meaning; NFKC also folds compatibility forms (ﬁ -> fi, full-width -> ASCII)")
    language: str = Field("en", description="ISO 639-1 code of the text, for stop words, lemmas and stems")
    stopwords: Literal["auto", "nltk", "iso"] = Field("auto", description="stop-word list: nltk (NLTK's English list, read from NLTK data), iso (stopwordsiso, many languages), auto = nltk for English when its data is found, else iso")
    stopwords_file: str | None = Field(None, description="a file of stop words, one per line, used instead of the stopwords list")
    numbers: Literal["token", "zero"] = Field("token", description="numbers step: replace each number by number_token, or each digit by 0 (keeps the shape: 1,984 -> 0,000)")
    number_token: str = Field("xxnum", description="what a number becomes (letters only, so lowercase and punctuation removal leave it intact)")
    url_token: str = Field("xxurl", description="what the mask step puts in place of a URL")
    email_token: str = Field("xxemail", description="what the mask step puts in place of an e-mail address")
    spelling_max_edit: int = Field(2, ge=1, le=3, description="spelling step: the largest edit distance of a correction")

    @field_validator("steps", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)


class QualityConfig(Section):
    """Document quality filters in the style of Gopher (Rae et al. 2021) and C4; empty = that filter is off."""

    min_words: int | None = Field(50, ge=1, description="fewest whitespace-separated words")
    max_words: int | None = Field(100_000, ge=1, description="most words")
    min_mean_word_length: float | None = Field(3.0, ge=0, description="shortest mean word length (characters)")
    max_mean_word_length: float | None = Field(10.0, ge=0, description="longest mean word length")
    max_symbol_word_ratio: float | None = Field(0.1, ge=0, description="most '#' and ellipses per word")
    max_bullet_lines: float | None = Field(0.9, ge=0, le=1, description="largest share of lines starting with a bullet")
    max_ellipsis_lines: float | None = Field(0.3, ge=0, le=1, description="largest share of lines ending with an ellipsis")
    min_alpha_words: float | None = Field(0.8, ge=0, le=1, description="smallest share of words holding a letter")
    min_stop_words: int | None = Field(2, ge=0, description="fewest occurrences of the, be, to, of, and, that, have, with (English text only)")
    max_duplicate_lines: float | None = Field(0.3, ge=0, le=1, description="largest share of lines that repeat an earlier line")
    max_duplicate_line_chars: float | None = Field(0.2, ge=0, le=1, description="largest share of characters in repeated lines")
    max_duplicate_paragraphs: float | None = Field(0.3, ge=0, le=1, description="largest share of paragraphs that repeat an earlier one")
    max_duplicate_paragraph_chars: float | None = Field(0.2, ge=0, le=1, description="largest share of characters in repeated paragraphs")
    max_top_ngram_chars: tuple[float, float, float] | None = Field((0.2, 0.18, 0.16), description="for 2-, 3- and 4-grams: largest share of characters in the most frequent repeated n-gram")
    max_duplicate_ngram_chars: tuple[float, float, float, float, float, float] | None = Field((0.15, 0.14, 0.13, 0.12, 0.11, 0.10), description="for 5- to 10-grams: largest share of characters in n-grams that occur more than once")
    min_terminal_punctuation_lines: float | None = Field(0.12, ge=0, le=1, description="smallest share of lines ending in . ! ? or a closing quote (C4)")


class CurateConfig(Section):
    """Corpus curation (text/curate.py, docs/cleaning.md): `lmforge curate`, or a recipe's stage before prepare."""

    exact_dedup: bool = Field(True, description="drop a document whose normalised text (lowercased, whitespace collapsed) was seen before")
    near_dedup: bool = Field(True, description="drop a document whose word shingles have Jaccard similarity near_threshold or more with an earlier kept document's")
    near_threshold: float = Field(0.8, gt=0, lt=1, description="exact Jaccard similarity of two documents' word-shingle sets from which they are near duplicates; MinHash LSH bands find the candidates (a pair at the threshold with probability 0.999), each verified on its shingle sets")
    shingle_size: int = Field(5, ge=1, description="words per shingle for MinHash")
    num_perm: int = Field(256, ge=16, description="MinHash permutations (more: a sharper threshold, more work)")
    languages: list[str] = Field(default_factory=list, description="keep only documents that py3langid identifies as one of these ISO 639-1 codes; empty = no language filter")
    min_language_score: float = Field(0.5, ge=0, le=1, description="a document whose language probability is below this has an unknown language")
    quality: QualityConfig | None = Field(default_factory=QualityConfig, description="quality filters; null = none")
    max_chars: int = Field(1 << 20, ge=1024, description="longer documents are dropped (curation holds one document at a time in memory)")
    label_field: str | None = Field(None, description="the field or column holding a document's label (for balancing)")
    balance: Literal["none", "down", "up"] = Field("none", description="resample labelled documents to label_weights: down = drop from frequent labels, up = repeat rare ones")
    label_weights: dict[str, float] | None = Field(None, description="target share of each label; empty = equal shares")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="share of documents written to the val split (by a hash of the document, so near duplicates share a split)")
    test_fraction: float = Field(0.0, ge=0, lt=1, description="share of documents written to the test split")
    seed: int = Field(0, description="seeds the split and the resampling")
    id_field: str = Field("id", description="the field holding a document's id: a copy made by lmforge augment (its augmented_from field names an earlier document's id) goes to its original's split, so no split holds a copy of another split's example")

    @field_validator("languages", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _consistent(self) -> "CurateConfig":
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave some documents for train")
        if self.balance != "none" and not self.label_field:
            raise ValueError("balance needs label_field")
        if self.label_weights is not None and (not self.label_weights or any(w <= 0 for w in self.label_weights.values())):
            raise ValueError("label_weights must give each label a positive share")
        return self


AugmentMethod = Literal["backtranslate", "summarize", "mask", "eda", "noise"]
EdaOp = Literal["synonym", "insert", "swap", "delete"]
NoiseOp = Literal["keyboard", "swap", "delete", "insert"]
_NEEDS_MODEL = {"backtranslate": "a source-to-pivot sequence-to-sequence model folder",
                "mask": "a masked-LM folder (Hugging Face) or an lmforge encoder run directory"}


class AugmentConfig(Section):
    """Data augmentation (augment/, docs/augmentation.md): `lmforge augment`, or a recipe's stage applied to the
    training data only (finetune.train_path, or data.path when data.val_path holds the validation data)."""

    method: AugmentMethod = Field("eda", description="backtranslate: source -> pivot -> source through two seq2seq models; summarize: extractive (textrank, lead) or abstractive; mask: masked-LM word replacement; eda: synonym replacement, random insertion, swap, deletion; noise: character typos")
    copies: int = Field(1, ge=1, le=64, description="augmented copies made of each chosen example (before dropping unchanged and duplicate ones)")
    fraction: float = Field(1.0, gt=0, le=1, description="share of the training examples that get copies (chosen by the seed)")
    keep_originals: bool = Field(True, description="write the original examples too (false: only the copies)")
    seed: int = Field(0, description="seeds which examples are chosen, every random edit and sampling, and the split")
    id_field: str = Field("id", description="the field holding an example's id; absent = its position in the input (0-based), written to that field")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="share of examples written, never augmented, to the val split, <output stem>.val.jsonl (by a hash of the text, so duplicates share a split)")
    test_fraction: float = Field(0.0, ge=0, lt=1, description="share of examples written, never augmented, to the test split, <output stem>.test.jsonl")
    max_chars: int = Field(100_000, ge=1000, description="longer documents are written as they are, not augmented (counted)")
    alpha: float = Field(0.1, gt=0, le=1, description="eda, noise, mask: share of a text's words changed (at least one)")
    eda_ops: list[EdaOp] = Field(["synonym", "insert", "swap", "delete"], min_length=1, description="eda: the operations a copy draws one of (synonym and insert need WordNet)")
    noise_ops: list[NoiseOp] = Field(["keyboard", "swap", "delete", "insert"], min_length=1, description="noise: the character edits a typo draws one of: a neighbouring key, two letters swapped, a letter dropped or doubled")
    summary: Literal["textrank", "lead", "abstractive"] = Field("textrank", description="summarize: rank sentences by TextRank, keep the first ones (lead-k), or generate with a seq2seq model")
    summary_ratio: float = Field(0.5, gt=0, lt=1, description="summarize (textrank, lead): share of a text's sentences kept, at least one")
    model: str | None = Field(None, description="backtranslate: the source-to-pivot seq2seq folder; summarize: the abstractive seq2seq folder; mask: a Hugging Face masked-LM folder or an lmforge encoder run directory")
    back_model: str | None = Field(None, description="backtranslate: the pivot-to-source seq2seq folder")
    prefix: str = Field("", description="text put before every input of `model` (a T5 task prefix such as 'summarize: ')")
    back_prefix: str = Field("", description="text put before every input of `back_model` (a T5 prefix, or a multilingual target tag such as '>>en<< ')")
    decoding: Literal["beam", "sample"] = Field("beam", description="seq2seq: beam search (the top beams are the copies) or sampling")
    num_beams: int = Field(4, ge=1, description="seq2seq beam search: beams (at least the number of copies)")
    temperature: float = Field(1.0, gt=0, description="seq2seq and mask sampling: softmax temperature")
    top_k: int = Field(10, ge=1, description="mask: sample each replacement from this many most likely words; seq2seq sampling: the top-k filter")
    top_p: float = Field(1.0, gt=0, le=1, description="seq2seq sampling: nucleus filter")
    max_new_tokens: int = Field(128, ge=1, description="seq2seq: the longest output, in tokens")
    long_texts: Literal["split", "truncate"] = Field("split", description="a text longer than the model's window: split it at sentence (then word) boundaries and process the parts, or keep only its first window")
    batch_size: int = Field(16, ge=1, description="texts per model call")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where models run; auto = CUDA when available")

    @field_validator("eda_ops", "noise_ops", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _consistent(self) -> "AugmentConfig":
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave some examples for train")
        needs = _NEEDS_MODEL.get(self.method) or ("a sequence-to-sequence model folder"
                                                 if self.method == "summarize" and self.summary == "abstractive" else None)
        if needs and not self.model:
            what = "summary=abstractive" if self.method == "summarize" else f"method={self.method}"
            raise ValueError(f"{what} needs model: {needs}")
        if self.method == "backtranslate" and not self.back_model:
            raise ValueError("method=backtranslate needs back_model: the pivot-to-source seq2seq folder")
        return self


class LoraOptions(Section):
    """LoRA adapters (Hu et al. 2021) through `peft`: the backbone's weights stay frozen, low-rank updates train."""

    r: int = Field(8, ge=1, description="rank of each low-rank update")
    alpha: float = Field(16.0, gt=0, description="scaling: the update is multiplied by alpha / r")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on the adapter's input")
    target_modules: list[str] | None = Field(None, description="names of the linear layers that get adapters; empty = query,value for HF BERT-like models (peft's defaults), c_attn for an lmforge GPT")

    @field_validator("target_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return _split_commas(value)


class FinetuneConfig(Section):
    """Fine-tuning a pretrained backbone on a task (finetune/, docs/finetuning.md): `lmforge finetune`."""

    task: Literal["classify", "tag", "qa", "lm"] = Field("classify", description="classify: a label per text; tag: a BIO tag per word (NER); qa: extractive question answering (SQuAD); lm: language-model fine-tuning on domain text (ULMFiT stage 2)")
    backbone: str = Field(..., description="an lmforge run directory (gpt, rnn, lstm, gru), a local Hugging Face model folder (AutoModel), or py:PACKAGE/FOLDER, a folder inside an installed Python package")
    backbone_checkpoint: str = Field("last", description="lmforge backbones: last, best or step-N")
    backbone_weights: Literal["pretrained", "random"] = Field("pretrained", description="pretrained: the backbone's trained weights; random: the same architecture and tokenizer freshly initialised (seeded by train.seed), the from-scratch baseline that shows what pretraining gives")
    train_path: str = Field(..., description="training data: .tsv/.csv/.jsonl (classify, lm), CoNLL columns (tag), SQuAD JSON (qa)")
    val_path: str | None = Field(None, description="validation data in the same format, evaluated after every epoch and by lmforge eval")
    format: Literal["auto", "tsv", "csv", "jsonl", "txt"] = Field("auto", description="classify and lm files: auto = from the extension (txt: one text per line, no labels: lm data or predict input)")
    text_column: str = Field("text", description="the column or JSON field holding the text (classify, lm)")
    label_column: str = Field("label", description="the column or JSON field holding the label (classify)")
    multi_label: bool = Field(False, description="classify: each text has any number of labels, separated by label_separator (sigmoid outputs)")
    label_separator: str = Field(",", min_length=1, description="multi_label: what separates a text's labels")
    max_length: int = Field(128, ge=8, description="tokens per sequence, special tokens included; longer texts are cut (qa: contexts are split)")
    doc_stride: int = Field(128, ge=0, description="qa: tokens shared by consecutive windows of a long context")
    max_query_length: int = Field(64, ge=1, description="qa: question tokens kept")
    max_answer_length: int = Field(30, ge=1, description="qa: longest answer span considered, in tokens")
    pooling: Literal["first", "last", "mean", "concat"] = Field("first", description="classify: the text's vector: the first token ([CLS]), the last real token, the mean, or ULMFiT's concat of last, max and mean")
    head_dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout on the features the head reads")
    epochs: int = Field(3, ge=1, description="passes over the training data")
    batch_size: int = Field(32, ge=1, description="sequences per optimizer step")
    max_train_examples: int | None = Field(None, ge=1, description="train on only the first this many training sequences (qa: context windows), for learning curves; empty = all")
    unfreeze: Literal["none", "epoch", "steps"] = Field("none", description="gradual unfreezing: none = everything trains from the start; epoch / steps = only the head at first, then one more layer group from the top down every epoch / unfreeze_steps steps")
    unfreeze_steps: int = Field(100, ge=1, description="unfreeze=steps: steps between unfreezing layer groups")
    discriminative_factor: float = Field(2.6, ge=1.0, description="layer group at depth d below the head trains at lr / factor^d (ULMFiT); 1 = one rate for all")
    lora: LoraOptions | None = Field(None, description="train LoRA adapters instead of the backbone's weights; merged into the weights when saved; null = full fine-tuning")
    keep_last: int = Field(1, ge=1, description="checkpoints to keep besides the best one")


class Config(Section):
    name: str = Field("default", description="run name: the run directory is runs/<name> unless --run-dir is given")
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=GPTConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    clean: CleanConfig | None = Field(None, description="clean the corpus before tokenizing (prepare); null = no cleaning stage")
    curate: CurateConfig | None = Field(None, description="curate the corpus (after cleaning) before tokenizing; null = no curation stage")
    finetune: FinetuneConfig | None = Field(None, description="fine-tune a backbone on a task (lmforge finetune); null = not a fine-tuning recipe")
    augment: AugmentConfig | None = Field(None, description="augment the training data only: finetune.train_path before fine-tuning, or the corpus before tokenizing (prepare, with data.val_path); null = no augmentation stage")

    @model_validator(mode="before")
    @classmethod
    def _gpt_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and "arch" not in data["model"]:
            data = {**data, "model": {"arch": "gpt", **data["model"]}}
        return data

    @model_validator(mode="after")
    def _batch_warmup_fits(self) -> "Config":
        if self.train.batch_warmup_steps and isinstance(self.model, RNNConfig):
            raise ValueError("train.batch_warmup_steps: a recurrent model carries its state per batch row, so its "
                             "batch size cannot change during training; use it with gpt or ffnn")
        if self.train.batch_warmup_start > self.train.micro_batch_size:
            raise ValueError(f"train.batch_warmup_start: {self.train.batch_warmup_start} is more than "
                             f"train.micro_batch_size ({self.train.micro_batch_size})")
        return self

    @model_validator(mode="after")
    def _mixture_fits(self) -> "Config":
        if self.data.sources is None:
            return self
        if isinstance(self.model, RNNConfig):
            raise ValueError(f"data.sources: a recurrent model ({self.model.arch}) reads its training split in order "
                             "(truncated BPTT), while a mixture draws random windows by weight; use gpt, ffnn or encoder")
        if self.augment is not None:
            raise ValueError("augment: prepare augments one training corpus with a separate data.val_path; augment "
                             "each source with lmforge augment first and mix the outputs")
        return self

    @model_validator(mode="after")
    def _encoder_needs_mask_token(self) -> "Config":
        if isinstance(self.model, EncoderConfig) and not self.tokenizer.mask_token:
            self.tokenizer.mask_token = True
        return self

    @model_validator(mode="after")
    def _resolve_optimizer(self) -> "Config":
        # Muon reaches a given loss in about half the steps of AdamW on a GPT (docs/BENCHMARKS.md, Tiny
        # Shakespeare speedrun); fine-tuning and the other families keep AdamW, which they were tuned with.
        if self.optimizer.name == "auto":
            self.optimizer.name = "muon" if isinstance(self.model, GPTConfig) and self.finetune is None else "adamw"
        return self

    def data_key(self) -> str:
        """Hash of everything that decides the prepared token shards (not the model or training)."""
        # mask_token only when on, so that recipes without it keep the keys (and shards) they had
        tokenizer = self.tokenizer.model_dump(exclude=set() if self.tokenizer.mask_token else {"mask_token"})
        # under its old name, so that the keys (and shards) of every recipe stay as they were
        tokenizer["train_max_bytes"] = tokenizer.pop("train_sample_bytes")
        # the dataset-split, hub and sources fields only when set, so that recipes without them keep their keys
        # (and shards)
        unset = {name for name in _DATASET_FIELDS if getattr(self.data, name) == DataConfig.model_fields[name].default}
        exclude = {"prepared_dir", "encode_batch_bytes", "encoder"} | unset | (set() if self.data.sources else {"sources"})
        payload = {"data": self.data.model_dump(exclude=exclude), "tokenizer": tokenizer}
        # only when set, so recipes without text stages keep the keys (and shards) they had
        payload.update({name: stage.model_dump() for name in ("clean", "curate", "augment")
                        if (stage := getattr(self, name)) is not None})
        if "clean" in payload and payload["clean"]["html_extract"] == "text":
            del payload["clean"]["html_extract"]  # the option's default: recipes keep their keys (and shards)
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _one_line(err: ValidationError, source: str, section: str | None = None) -> str:
    """`source: where: what; ...`, or `section.field: what` for the errors of one section."""
    parts = []
    for e in err.errors():
        loc = ([section] if section else []) + list(e["loc"])
        if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in ARCHITECTURES:
            del loc[1]  # pydantic names the union member; the user wrote model.<field>
        where = ".".join(str(p) for p in loc) or "config"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "union_tag_invalid":
            where, msg = "model.arch", f"unknown architecture {e['input'].get('arch')!r} (known: {', '.join(ARCHITECTURES)})"
        parts.append(f"{where}: {msg}")
    return ("" if section else f"{source}: ") + "; ".join(parts)


def validate_section(cls: type[SectionT], values: dict, section: str) -> SectionT:
    """One section from plain values (a run's saved settings with a command's options on top); a bad value is
    one line naming `section.field`."""
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        raise ConfigError(_one_line(e, section, section)) from None


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    """`["model.n_layer=6", "data.path=a.txt"]` -> nested dict; values are parsed as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        set_dotted(tree, key.strip(), value)
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (or the defaults), apply `key.sub=value` overrides, validate."""
    tree: dict = {}
    source = "defaults"
    if recipe is not None:
        path = Path(recipe)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: recipe not found")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a YAML recipe (byte {e.start} is not UTF-8)") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} invalid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections")
        tree.setdefault("name", path.stem)
    if overrides:
        tree = _merge(tree, parse_overrides(overrides))
        source += " + overrides"
    return validate_config(tree, source)


def validate_config(tree: dict, source: str) -> Config:
    """A whole config from a tree of plain values; a bad value is one line `source: section.field: what`."""
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_one_line(e, source)) from None


def describe(config: BaseModel, indent: int = 0) -> str:
    """YAML of the resolved config with each field's description as a comment."""
    lines = []
    pad = "  " * indent
    for name, info in type(config).model_fields.items():
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.append(describe(value, indent + 1))
            continue
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, list) and any(isinstance(v, BaseModel) for v in value):
            value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        rendered = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
        rendered = rendered.removesuffix("\n...").removesuffix("...").strip()
        comment = f"  # {info.description}" if info.description else ""
        lines.append(f"{pad}{name}: {rendered}{comment}")
    return "\n".join(lines)


def save_config(config: Config, path: Path) -> None:
    from lmforge.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"model": {"n_layer": 4}} -> {"model.n_layer": 4}: a config dump's keys as overrides name them."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out
