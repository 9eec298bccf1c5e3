"""Local sequence-to-sequence models (any transformers encoder-decoder: Marian, BART, T5, ...) and batched
generation for back-translation and abstractive summaries.

transformers 5 has no translation or summarization pipelines, so this calls `model.generate()` itself. The
folder is checked before anything runs: a model that is not an encoder-decoder (BERT, GPT-2) is a one-line
error naming it. A text longer than the model's window is split at sentence, then word, boundaries and its
parts generated separately (`long_texts=split`), or cut to the window (`truncate`); both are counted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from lmforge.augment.words import split_to_fit
from lmforge.config import AugmentConfig
from lmforge.errors import CheckpointError
from lmforge.quiet import quiet_transformers

_NO_LIMIT = 10**6  # tokenizers without a model_max_length report about 1e30


def device_of(cfg: AugmentConfig) -> torch.device:
    return torch.device("cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
                        else "cpu")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def hf_folder(path: str | Path, field: str) -> tuple[Path, object]:
    """The folder and its transformers config, or a one-line error saying what the folder is not."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"augment.{field}: {folder}: model folder not found")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"augment.{field}: {folder}: not a Hugging Face model folder (no config.json)")
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"augment.{field}: {folder}: cannot read config.json ({_first_line(e)})") from None
    return folder, config


def hf_tokenizer(folder: Path, field: str):
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"augment.{field}: {folder}: no usable tokenizer ({_first_line(e)})") from None


def load_weights_checked(auto_class, folder: Path, field: str, what: str):
    """`auto_class.from_pretrained(folder)`, refusing a folder whose weights lack what `what` needs (a head
    that from_pretrained would otherwise fill with random numbers)."""
    try:
        with quiet_transformers():
            model, info = auto_class.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"augment.{field}: {folder}: cannot load the model ({_first_line(e)})") from None
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(f"augment.{field}: {folder}: the weights lack {len(missing)} tensors of a {what} "
                              f"(e.g. {sorted(missing)[0]}); was it saved without its head?")
    return model.eval()


def model_window(tokenizer, config) -> int:
    """The longest input in tokens: the tokenizer's model_max_length or the position table, whichever is set
    and smaller; 512 when neither says."""
    limits = [n for n in (getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None))
              if isinstance(n, int) and 0 < n < _NO_LIMIT]
    return min(limits) if limits else 512


class Seq2Seq:
    """One encoder-decoder folder: text in, `n` generated texts out per input."""

    def __init__(self, path: str | Path, field: str, prefix: str, cfg: AugmentConfig):
        folder, config = hf_folder(path, field)
        if not getattr(config, "is_encoder_decoder", False):
            raise CheckpointError(f"augment.{field}: {folder}: not a sequence-to-sequence model (model_type "
                                  f"{getattr(config, 'model_type', '?')}); it takes an encoder-decoder such as "
                                  f"Marian, BART or T5")
        from transformers import AutoModelForSeq2SeqLM

        self.folder, self.field, self.prefix, self.cfg = folder, field, prefix, cfg
        self.tokenizer = hf_tokenizer(folder, field)
        self.device = device_of(cfg)
        self.model = load_weights_checked(AutoModelForSeq2SeqLM, folder, field, "sequence-to-sequence model").to(self.device)
        self.window = model_window(self.tokenizer, config)

    def size(self, text: str) -> int:
        return len(self.tokenizer(self.prefix + text)["input_ids"])

    def parts(self, text: str, counts: Counter) -> list[str]:
        """The pieces of `text` that each fit the window (see the module doc), counted when it had to be cut."""
        if self.size(text) <= self.window:
            return [text]
        if self.cfg.long_texts == "truncate":
            counts[f"{self.field}_truncated"] += 1
            return [text]  # the tokenizer cuts it to the window
        parts, still_long = split_to_fit(text, self.size, self.window)
        counts[f"{self.field}_split"] += 1
        if still_long:
            counts[f"{self.field}_truncated"] += 1
        return parts

    @torch.no_grad()
    def generate(self, texts: list[str], n: int, seed: int, sample: bool) -> list[list[str]]:
        """`n` outputs for each text, in batches; sampling draws from a generator seeded with `seed`."""
        cfg = self.cfg
        out: list[list[str]] = []
        for start in range(0, len(texts), cfg.batch_size):
            batch = [self.prefix + t for t in texts[start:start + cfg.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=self.window)
            enc.pop("token_type_ids", None)  # BERT-style tokenizers add them; encoder-decoders do not take them
            enc = {k: v.to(self.device) for k, v in enc.items()}
            options = dict(max_new_tokens=cfg.max_new_tokens, num_return_sequences=n)
            if sample:
                options.update(do_sample=True, top_k=cfg.top_k, top_p=cfg.top_p, temperature=cfg.temperature,
                               num_beams=1)
            else:
                options.update(do_sample=False, num_beams=max(cfg.num_beams, n))
            # generate() draws from torch's global generator: seed it here, and leave the caller's untouched
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(seed + start)
                with quiet_transformers():
                    ids = self.model.generate(**enc, **options)
            decoded = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            out.extend([d.strip() for d in decoded[i * n:(i + 1) * n]] for i in range(len(batch)))
        return out

    def transform(self, texts: list[str], n: int, seed: int, sample: bool, counts: Counter) -> list[list[str]]:
        """`n` outputs per text, long texts split into parts generated separately and joined again."""
        pieces: list[str] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            parts = self.parts(text, counts)
            pieces.extend(parts)
            owners.extend([i] * len(parts))
        generated = self.generate(pieces, n, seed, sample)
        out: list[list[list[str]]] = [[[] for _ in range(n)] for _ in texts]
        for owner, outputs in zip(owners, generated):
            for k, text in enumerate(outputs):
                out[owner][k].append(text)
        return [[" ".join(p for p in parts if p) for parts in per_text] for per_text in out]


class BackTranslate:
    """source -> pivot -> source: `n` pivots per text (the top beams, or samples), each translated back once
    (its best beam, or a sample). The paraphrase keeps the meaning (and so the label) and changes the words."""

    name = "backtranslate"

    def __init__(self, cfg: AugmentConfig):
        assert cfg.model and cfg.back_model
        self.forward = Seq2Seq(cfg.model, "model", cfg.prefix, cfg)
        self.backward = Seq2Seq(cfg.back_model, "back_model", cfg.back_prefix, cfg)
        self.sample = cfg.decoding == "sample"
        self.warnings: list[str] = []
        self.settings = {"model": str(self.forward.folder), "back_model": str(self.backward.folder),
                         "decoding": cfg.decoding, "window": [self.forward.window, self.backward.window]}

    def __call__(self, texts: list[str], seeds: list[int], copies: int, counts: Counter) -> list[list[str]]:
        seed = seeds[0] if seeds else 0
        pivots = self.forward.transform(texts, copies, seed, self.sample, counts)
        flat = [p for per_text in pivots for p in per_text]
        back = self.backward.transform(flat, 1, seed + 1, self.sample, counts)
        return [[back[i * copies + k][0] for k in range(copies)] for i in range(len(texts))]

