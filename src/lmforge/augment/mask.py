"""Masked-LM word replacement (contextual augmentation, Kobayashi 2018): n = max(1, round(alpha * words))
words of a text are masked together, and each is replaced by a word drawn from the masked LM's top-k
predictions at its position, never the original word. The model is a local Hugging Face masked-LM folder
(BERT, RoBERTa, ...) or an lmforge encoder run (`lmforge train` with model.arch=encoder), so the method works
without any downloaded model.

A replacement is a single token that spells a whole word: special tokens, word pieces that continue a word
(##ing) and, for byte-level BPE and SentencePiece vocabularies, tokens that do not start a word are never
drawn. A text longer than the model's window is cut into windows of whole words (`long_texts=split`), or only
its first window gets replacements (`truncate`); both are counted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from lmforge.augment.seq2seq import device_of, hf_folder, hf_tokenizer, load_weights_checked, model_window
from lmforge.augment.words import Words, is_alpha_word, match_case, rng_of
from lmforge.config import AugmentConfig
from lmforge.errors import CheckpointError

_WORD_START_MARKS = ("Ġ", "▁")  # byte-level BPE and SentencePiece mark a word's first token


def candidate_mask(token_strings: list[str], texts: list[str], special: set[int]) -> torch.Tensor:
    """Which ids may replace a word: a whole word when decoded, not special, not a word continuation."""
    marked = {m: sum(t.startswith(m) for t in token_strings) for m in _WORD_START_MARKS}
    mark = max(marked, key=marked.get)
    needs_mark = marked[mark] > len(token_strings) // 5  # a vocabulary that marks word starts
    allowed = [i not in special and is_alpha_word(text) and not token.startswith("##")
               and (not needs_mark or token.startswith(mark))
               for i, (token, text) in enumerate(zip(token_strings, texts))]
    return torch.tensor(allowed, dtype=torch.bool)


class HFMaskedLM:
    """A Hugging Face masked-LM folder."""

    def __init__(self, path: str | Path, cfg: AugmentConfig):
        folder, config = hf_folder(path, "model")
        if getattr(config, "is_encoder_decoder", False):
            raise CheckpointError(f"augment.model: {folder}: a sequence-to-sequence model ({config.model_type}); "
                                  f"method=mask takes a masked LM such as BERT or RoBERTa")
        from transformers import MODEL_FOR_MASKED_LM_MAPPING, AutoModelForMaskedLM

        if type(config) not in MODEL_FOR_MASKED_LM_MAPPING:
            raise CheckpointError(f"augment.model: {folder}: not a masked-LM model (model_type {config.model_type}); "
                                  f"method=mask takes a masked LM such as BERT or RoBERTa, or an lmforge encoder run")
        self.tokenizer = hf_tokenizer(folder, "model")
        if self.tokenizer.mask_token_id is None:
            raise CheckpointError(f"augment.model: {folder}: the tokenizer has no mask token")
        self.device = device_of(cfg)
        self.model = load_weights_checked(AutoModelForMaskedLM, folder, "model", "masked-LM head").to(self.device)
        self.folder, self.mask_token, self.mask_id = folder, self.tokenizer.mask_token, self.tokenizer.mask_token_id
        self.window = model_window(self.tokenizer, config)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        vocab = len(self.tokenizer)
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(vocab)))
        texts = [self.tokenizer.decode([i]).strip() for i in range(vocab)]
        self.texts = texts
        self.candidates = candidate_mask([t or "" for t in tokens], texts, set(self.tokenizer.all_special_ids))

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=True)["input_ids"]

    def word_tokens(self, words: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(words, add_special_tokens=False)["input_ids"]]

    @torch.no_grad()
    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float().cpu()


class LmforgeMaskedLM:
    """An lmforge encoder run (models/encoder.py) with the <mask> token in its tokenizer."""

    def __init__(self, path: str | Path, cfg: AugmentConfig):
        from lmforge.config import load_config
        from lmforge.models import model_class
        from lmforge.tokenizer import MASK
        from lmforge.run import load_run

        model_cfg = load_config(Path(path) / "config.yaml").model
        arch = model_cfg.arch
        if model_class(model_cfg).objective != "masked":  # refused before any weights load
            raise CheckpointError(f"augment.model: {path}: an lmforge {arch} run, not a masked-LM encoder (train one "
                                  f"with model.arch=encoder)")
        self.device = device_of(cfg)
        run = load_run(path, "last", self.device)
        if run.tokenizer.mask_id is None:
            raise CheckpointError(f"augment.model: {path}: the run's tokenizer has no {MASK} token")
        self.folder, self.model, self.tokenizer = Path(path), run.model, run.tokenizer
        self.mask_token, self.mask_id, self.pad_id = MASK, run.tokenizer.mask_id, 0
        self.window = run.config.model.block_size
        vocab = run.config.model.vocab_size
        backend = run.tokenizer.backend
        tokens = [backend.id_to_token(i) or "" for i in range(vocab)]
        texts = [run.tokenizer.decode([i]).strip() for i in range(vocab)]
        self.texts = texts
        special = {i for i in (run.tokenizer.eod_id, run.tokenizer.mask_id, backend.token_to_id("<unk>")) if i is not None}
        self.candidates = candidate_mask(tokens, texts, special)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer.encode_batch(texts)

    def word_tokens(self, words: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer.encode_batch(words)]

    @torch.no_grad()
    def logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(ids.to(self.device), mask=mask.to(self.device))[0].float().cpu()


def load_masked_lm(path: str | Path, cfg: AugmentConfig) -> HFMaskedLM | LmforgeMaskedLM:
    folder = Path(path)
    if (folder / "config.yaml").is_file() and (folder / "checkpoints").is_dir():
        return LmforgeMaskedLM(folder, cfg)
    return HFMaskedLM(folder, cfg)


class MaskReplace:
    name = "mask"

    def __init__(self, cfg: AugmentConfig):
        assert cfg.model
        self.cfg = cfg
        self.lm = load_masked_lm(cfg.model, cfg)
        self.warnings: list[str] = []
        if int(self.lm.candidates.sum()) == 0:
            raise CheckpointError(f"augment.model: {self.lm.folder}: no token of its vocabulary is a whole word that "
                                  f"could replace one")
        lengths = [len(t) for t, ok in zip(self.lm.texts, self.lm.candidates.tolist()) if ok]
        if max(lengths) == 1:
            self.warnings.append(f"{self.lm.folder}: the model's vocabulary is characters, so masked words are "
                                 f"replaced by single letters; train the encoder with a word or subword tokenizer")
        self.by_text: dict[str, list[int]] = {}
        for i, (text, ok) in enumerate(zip(self.lm.texts, self.lm.candidates.tolist())):
            if ok:
                self.by_text.setdefault(text.lower(), []).append(i)
        self.settings = {"model": str(self.lm.folder), "kind": type(self.lm).__name__, "window": self.lm.window,
                         "alpha": cfg.alpha, "top_k": cfg.top_k, "temperature": cfg.temperature,
                         "candidate_tokens": int(self.lm.candidates.sum())}

    def _windows(self, w: Words, counts: Counter) -> list[range]:
        """Consecutive ranges of word indices whose text fits the model's window (with room for specials)."""
        if len(self.lm.encode([w.text()])[0]) <= self.lm.window:
            return [range(len(w.words))]
        counts["split" if self.cfg.long_texts == "split" else "truncated"] += 1
        # words are measured alone, and may take a token more in context: a quarter of the window is slack
        room = max(1, (self.lm.window - 2) * 3 // 4)
        spans, start, used = [], 0, 0
        for j, size in enumerate(self.lm.word_tokens(w.words)):
            if used and used + size > room:
                spans.append(range(start, j))
                start, used = j, 0
            used += size
        spans.append(range(start, len(w.words)))
        return spans if self.cfg.long_texts == "split" else spans[:1]

    def __call__(self, texts: list[str], seeds: list[int], copies: int, counts: Counter) -> list[list[str]]:
        # each query: a window of one copy's words with some masked, and where its answers go
        queries: list[tuple[str, list[int], Words, int]] = []
        copies_of: list[list[Words]] = []
        for text, seed in zip(texts, seeds):
            words = Words(text)
            spans = self._windows(words, counts)
            variants = []
            for k in range(copies):
                rng = rng_of(seed, k)
                w = Words(text)
                for span in spans:
                    eligible = [j for j in span if is_alpha_word(w.words[j])]
                    if not eligible:
                        continue
                    chosen = sorted(rng.sample(eligible, min(len(eligible), max(1, round(self.cfg.alpha * len(eligible))))))
                    shown = list(w.words[span.start:span.stop])
                    for j in chosen:
                        shown[j - span.start] = self.lm.mask_token
                    queries.append((" ".join(shown), chosen, w, rng.getrandbits(63)))
                variants.append(w)
            copies_of.append(variants)
        self._fill(queries, counts)
        return [[w.text() for w in variants] for variants in copies_of]

    def _fill(self, queries: list[tuple[str, list[int], Words, int]], counts: Counter) -> None:
        cfg, lm = self.cfg, self.lm
        for start in range(0, len(queries), cfg.batch_size):
            batch = queries[start:start + cfg.batch_size]
            encoded = [ids[:lm.window] for ids in lm.encode([q[0] for q in batch])]
            width = max(len(ids) for ids in encoded)
            ids = torch.full((len(batch), width), lm.pad_id, dtype=torch.long)
            attend = torch.zeros((len(batch), width), dtype=torch.long)
            for r, row in enumerate(encoded):
                ids[r, :len(row)] = torch.tensor(row, dtype=torch.long)
                attend[r, :len(row)] = 1
            logits = lm.logits(ids, attend)
            for r, (_, chosen, w, seed) in enumerate(batch):
                positions = (ids[r] == lm.mask_id).nonzero().flatten().tolist()
                if len(positions) < len(chosen):
                    counts["masks_cut_off"] += len(chosen) - len(positions)
                generator = torch.Generator().manual_seed(seed)
                for j, pos in zip(chosen, positions):
                    new = self._draw(logits[r, pos], w.words[j], generator)
                    if new is None:
                        counts["no_candidate"] += 1
                        continue
                    w.words[j] = match_case(new, w.words[j])
                    counts["words_replaced"] += 1

    def _draw(self, logits: torch.Tensor, original: str, generator: torch.Generator) -> str | None:
        """A word drawn from the top-k allowed predictions, the original word's own tokens excluded."""
        allowed = self.lm.candidates.clone()
        for i in self.by_text.get(original.lower(), ()):
            allowed[i] = False
        if not allowed.any():
            return None
        scores = (logits / self.cfg.temperature).masked_fill(~allowed, float("-inf"))
        k = min(self.cfg.top_k, int(allowed.sum()))
        top = scores.topk(k)
        pick = torch.multinomial(top.values.softmax(-1), 1, generator=generator).item()
        return self.lm.texts[top.indices[pick].item()]

