"""`lmforge export RUN_DIR OUT --format hf`: a run as a folder that transformers loads on its own.

A GPT run whose architecture GPT-2 has (learned positions, LayerNorm, GELU MLP) becomes a
`GPT2LMHeadModel` (config.json + model.safetensors, weights mapped by models/hf.py) with the run's
tokenizer as a `PreTrainedTokenizerFast`, so `AutoModelForCausalLM.from_pretrained(OUT)` and
`AutoTokenizer.from_pretrained(OUT)` work without lmforge. The folder is built under a temporary name and
renamed when complete.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import ConfigError, LmforgeError
from lmforge.io import atomic_dir
from lmforge.quiet import quiet_transformers
from lmforge.models.hf import check_gpt2_compatible, gpt2_config, gpt_state_dict_to_hf
from lmforge.tokenizer import EOD, UNK
from lmforge.run import Run

FORMATS = ("hf",)


def export_run(run: Run, out: str | Path, format: str = "hf", overwrite: bool = False) -> Path:
    """Write `run` to the folder `out` in `format`; returns the folder."""
    out = Path(out)
    if format not in FORMATS:
        raise LmforgeError(f"--format {format!r}: unknown (known: {', '.join(FORMATS)})")
    try:
        check_gpt2_compatible(run.config.model)
    except ConfigError as e:
        raise ConfigError(f"{run.run_dir}: {e}") from None
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not overwrite):
        raise LmforgeError(f"{out}: already exists; choose a new folder or pass --overwrite to replace it")
    try:
        from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
    except ImportError:
        raise LmforgeError("--format hf needs the transformers package: pip install transformers") from None

    cfg = run.config.model
    model = GPT2LMHeadModel(gpt2_config(cfg, run.tokenizer.eod_id))
    model.load_state_dict(gpt_state_dict_to_hf(run.model.state_dict(), cfg), strict=True)
    vocab = run.tokenizer.backend.get_vocab(with_added_tokens=True)
    specials = {"unk_token": UNK} if UNK in vocab else {}
    if run.tokenizer.eod_id is not None:
        specials.update(bos_token=EOD, eos_token=EOD)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=run.tokenizer.backend, model_max_length=cfg.block_size,
                                        **specials)
    with quiet_transformers(), atomic_dir(out) as tmp:  # a bar for writing one small file is noise
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out
