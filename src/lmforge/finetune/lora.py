"""LoRA adapters through `peft` (Hu et al. 2021): low-rank updates beside frozen linear layers.

`add_lora` injects adapters into the backbone (any nn.Module: an HF encoder or an lmforge GPT) and returns
the adapter parameters, the only backbone parameters that train. `merged_copy` is what gets saved: a copy of
the model with each update folded into its weight (W + B A * alpha / r) and the adapter modules gone, so a
fine-tuned run loads and predicts without peft and runs as fast as the plain model.
"""

from __future__ import annotations

import copy

from torch import nn

from lmforge.config import LoraOptions
from lmforge.errors import ConfigError
from lmforge.finetune.backbones import Backbone, HFBackbone


def default_targets(backbone: Backbone) -> list[str]:
    if isinstance(backbone, HFBackbone):
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(backbone.hf_config.model_type)
        if targets is None:
            raise ConfigError(f"finetune.lora.target_modules: peft knows no default layers for model type "
                              f"{backbone.hf_config.model_type!r}; name them")
        return list(targets)
    if backbone.lm.lora_targets:
        return list(backbone.lm.lora_targets)
    raise ConfigError(f"finetune.lora: peft has no LoRA for {backbone.kind} layers; fine-tune the {backbone.kind} "
                      f"backbone fully (lora: null)")


def add_lora(backbone: Backbone, opts: LoraOptions) -> list[nn.Parameter]:
    from peft import LoraConfig, inject_adapter_in_model

    targets = opts.target_modules or default_targets(backbone)
    config = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets)
    try:
        inject_adapter_in_model(config, backbone)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"finetune.lora.target_modules: {str(e).splitlines()[0]}") from None
    return [p for name, p in backbone.named_parameters() if "lora_" in name]


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with every LoRA layer merged into its base layer and replaced by it."""
    from peft.tuners.lora import LoraLayer

    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = merged.get_submodule(parent_name) if parent_name else merged
            setattr(parent, child, module.get_base_layer())
    return merged
