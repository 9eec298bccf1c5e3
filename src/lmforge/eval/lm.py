r"""Language-model metrics: loss, perplexity per token and per word, bits per byte and per character,
predictive entropy; over non-overlapping windows or strided sliding windows.

Every metric is the same total cross-entropy divided by a different count. Per token depends on the
tokenizer; per word (whitespace-separated words of the evaluated text), per byte (UTF-8) and per
character do not, so models with different tokenizers compare on the same text.

Sliding windows follow the method Hugging Face documents for fixed-length models ("Perplexity of
fixed-length models"): windows of block_size tokens start every `stride` tokens and each scores only the
targets the previous window did not, so every target but the first window's sees at least
block_size - stride tokens of context. stride = block_size is the non-overlapping evaluation itself.

Documents (`documents=True`, `lmforge eval --data FILE --documents`) are scored one by one as
lm-evaluation-harness scores a `loglikelihood_rolling` task such as wikitext, so the figures are the
harness's word_perplexity, byte_perplexity and bits_per_byte: a document's first token is predicted from
the end-of-document token, a fixed-context model reads it in disjoint windows of block_size tokens whose
last one reads a whole block of context, a recurrent model reads it in one pass from a fresh state; its
words are `re.split(r"\s+", document)` and its bytes its UTF-8 length, summed over the documents.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmforge.config import DataConfig
from lmforge.data.loader import eval_batches, stream_eval_batches
from lmforge.errors import ConfigError, DataError
from lmforge.data.masking import IGNORE, MaskedLM

# (inputs, targets, scored[, reset]): the loss counts only the last `scored` positions of every row; a
# recurrent model's state carries over from the previous batch unless reset is True (the default)
ScoredBatch = tuple


@dataclass
class LMTotals:
    """Sums over the scored tokens: cross-entropy and (optionally) predictive entropy, in nats; for a
    forward/backward pair (BiLM), each direction's cross-entropy over its own token pairs."""

    loss_sum: float
    tokens: int
    entropy_sum: float | None = None
    direction_sums: dict[str, float] | None = None
    direction_tokens: int = 0


@torch.no_grad()  # not inference_mode: the trainer calls this on its DDP-wrapped or compiled model
def score_batches(model: nn.Module, batches: Iterable[ScoredBatch], device: torch.device,
                  autocast: contextlib.AbstractContextManager | None = None, entropy: bool = False) -> LMTotals:
    """Sum the cross-entropy (and the entropy of the predicted distributions) over the scored positions."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=device)
    ent = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    inner = getattr(model, "module", model)  # DDP keeps the model's own attributes on .module
    directions: dict[str, float] | None = None
    pairs = 0
    state = None
    for x, y, scored, *reset in batches:
        # counted before the copy to the device, so that no step waits on it; a masked LM's labels are -100
        # where nothing is predicted
        count += int((y[:, -scored:] != IGNORE).sum())
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if not reset or reset[0]:
            state = None
        with autocast or contextlib.nullcontext():
            logits, state = model(x, state)
        # any module scores (tests score hand-made ones); a BiLM also reports both directions, over B * (T - 1) pairs
        if getattr(inner, "last_losses", None) is not None:
            n = x.size(0) * (x.size(1) - 1)
            directions = {k: (directions or {}).get(k, 0.0) + v.item() * n for k, v in inner.last_losses.items()}
            pairs += n
        logits, y = logits[:, -scored:].float(), y[:, -scored:]
        loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").double()
        if entropy:
            logp = logits.log_softmax(dim=-1)
            ent -= (logp.exp() * logp).sum().double()
    model.train(was_training)
    return LMTotals(loss.item(), count, ent.item() if entropy else None, directions, pairs)


def sum_totals(parts: Iterable[LMTotals]) -> LMTotals:
    """The totals of several texts scored apart, as one (a forward/backward pair's direction sums too)."""
    parts = list(parts)
    entropies = [p.entropy_sum for p in parts if p.entropy_sum is not None]
    directions: dict[str, float] = {}
    for p in parts:
        for k, v in (p.direction_sums or {}).items():
            directions[k] = directions.get(k, 0.0) + v
    return LMTotals(sum(p.loss_sum for p in parts), sum(p.tokens for p in parts),
                    sum(entropies) if entropies else None, directions or None, sum(p.direction_tokens for p in parts))


def window_batches(segments: list[np.ndarray], block_size: int, batch_size: int, recurrent: bool = False,
                   max_windows: int | None = None, rank: int = 0, world_size: int = 1) -> Iterator[ScoredBatch]:
    """Non-overlapping windows scoring every target once. A recurrent model reads the text as
    `batch_size` parallel streams with its state carried from window to window (as it was trained);
    under DDP rank 0 does that alone (a stream cannot be split), the others score nothing."""
    if recurrent:
        if rank == 0:
            for n, (x, y, reset) in enumerate(stream_eval_batches(segments, block_size, batch_size)):
                if max_windows is not None and n * batch_size >= max_windows:
                    break
                yield x, y, y.size(1), reset
        return
    for x, y in eval_batches(segments, block_size, batch_size, max_windows, rank, world_size):
        yield x, y, y.size(1)


def sum_loss(model: nn.Module, segments: list[np.ndarray], block_size: int, batch_size: int,
             device: torch.device, autocast: contextlib.AbstractContextManager | None = None,
             max_windows: int | None = None, rank: int = 0, world_size: int = 1,
             recurrent: bool = False, masker=None) -> tuple[float, int]:
    """Total cross-entropy (nats) and number of predicted tokens over non-overlapping windows; with a
    `masker` (data/masking.py), of a masked LM's predictions of the tokens it masks in each window."""
    windows = window_batches(segments, block_size, batch_size, recurrent, max_windows, rank, world_size)
    if masker is not None:
        windows = ((*masker.rows(x), scored) for x, _, scored in windows)
    totals = score_batches(model, windows, device, autocast)
    return totals.loss_sum, totals.tokens


def sliding_window_batches(segments: list[np.ndarray], block_size: int, stride: int,
                           batch_size: int, full_last: bool = False) -> Iterator[ScoredBatch]:
    """Windows of block_size tokens every `stride` tokens; each scores the targets its predecessor did not.

    Full-length windows that score the same number of targets are batched together, in order; a segment's
    last, shorter window comes alone. With stride = block_size these are exactly `eval_batches`' windows in
    `eval_batches`' order, so the sums agree to the bit. With `full_last`, a segment's last window ends at
    its end but starts a block before it (the harness's rolling windows), so it reads a whole block of context.
    """
    if not 1 <= stride <= block_size:
        raise ConfigError(f"stride {stride}: must be between 1 and the model's block_size ({block_size})")
    full: dict[int, list[tuple[np.ndarray, int]]] = {}
    short: list[tuple[np.ndarray, int, int, int]] = []
    for seg in segments:
        last = len(seg) - 1  # index of the last target; token 0 is never a target
        scored_to = 0
        for start in range(0, last, stride):
            end = min(start + block_size, last)  # this window's targets are start+1 .. end
            if full_last and end == last:
                start = max(0, end - block_size)
            if end - start == block_size:
                full.setdefault(end - scored_to, []).append((seg, start))
            else:
                short.append((seg, start, end - start, end - scored_to))
            scored_to = end
            if end == last:
                break
    for scored, windows in full.items():
        for i in range(0, len(windows), batch_size):
            rows = [seg[s:s + block_size + 1] for seg, s in windows[i:i + batch_size]]
            batch = torch.from_numpy(np.stack(rows).astype(np.int64))
            yield batch[:, :-1], batch[:, 1:], scored
    for seg, start, length, scored in short:
        batch = torch.from_numpy(seg[start:start + length + 1].astype(np.int64))[None]
        yield batch[:, :-1], batch[:, 1:], scored


_WORD = re.compile(r"\S+")


@dataclass
class TextCounts:
    """UTF-8 bytes, characters and whitespace-separated words of a text that arrives in pieces."""

    bytes: int = 0
    chars: int = 0
    words: int = 0
    # whether the text so far ends inside a word, which the next piece may continue
    _in_word: bool = field(default=False, repr=False)

    def add(self, text: str) -> None:
        if not text:
            return
        self.bytes += len(text.encode("utf-8"))
        self.chars += len(text)
        self.words += len(_WORD.findall(text)) - (self._in_word and not text[0].isspace())
        self._in_word = not text[-1].isspace()

    def end_document(self) -> None:
        """Documents are separate texts: a word never runs across their boundary."""
        self._in_word = False


def predicted_text_counts(tokenizer, segments: list[np.ndarray], chunk: int = 1 << 20) -> TextCounts:
    """Counts of the text whose tokens are predicted (every token of a segment but its first).

    Decoded in chunks; the end-of-document token separates documents (decoding drops it, which would
    otherwise glue the last word of one document to the first of the next)."""
    counts = TextCounts()
    eod = tokenizer.eod_id
    for seg in segments:
        counts.end_document()
        for i in range(1, len(seg), chunk):
            part = np.asarray(seg[i:i + chunk])
            cuts = np.flatnonzero(part == eod) if eod is not None else []
            for k, piece in enumerate(np.split(part, cuts)):
                if k:
                    counts.end_document()
                counts.add(tokenizer.decode(piece))
    return counts


def file_text_counts(path: str, data_cfg: DataConfig) -> TextCounts:
    """Counts of a text file as the corpus readers see it (with the run's format settings)."""
    from lmforge.corpora import iter_pieces

    counts = TextCounts()
    for piece, ends_document in iter_pieces(data_cfg.model_copy(update={"path": str(path)})):
        counts.add(piece)
        if ends_document:
            counts.end_document()
    return counts


def read_documents(path: str, data_cfg: DataConfig) -> Iterator[str]:
    """The documents of a file, whole, as the corpus readers see them (with the run's format settings)."""
    from lmforge.corpora import iter_pieces

    parts: list[str] = []
    for piece, ends_document in iter_pieces(data_cfg.model_copy(update={"path": str(path)})):
        parts.append(piece)
        if ends_document:
            yield "".join(parts)
            parts = []
    if parts:
        yield "".join(parts)


_HARNESS_WORDS = re.compile(r"\s+")


def document_segments(tokenizer, path: str, data_cfg: DataConfig,
                      batch_docs: int = 256) -> tuple[list[np.ndarray], TextCounts]:
    r"""Each document of a file as its own segment, [end-of-document] + its tokens, and the counts the harness
    makes of a rolling task's documents: words = re.split(r"\s+", document), so that a document beginning or
    ending with whitespace counts one empty word there as the harness does; bytes = its UTF-8 length."""
    eod = tokenizer.eod_id
    if eod is None:
        raise ConfigError("--documents: the run's tokenizer has no end-of-document token to predict a "
                          "document's first token from (tokenizer.eod)")
    segments: list[np.ndarray] = []
    counts = TextCounts()

    def encode(docs: list[str]) -> None:
        for doc, ids in zip(docs, tokenizer.encode_batch(docs)):
            segments.append(np.asarray([eod, *ids], dtype=np.int64))
            counts.bytes += len(doc.encode("utf-8"))
            counts.chars += len(doc)
            counts.words += len(_HARNESS_WORDS.split(doc))

    batch: list[str] = []
    for doc in read_documents(path, data_cfg):
        batch.append(doc)
        if len(batch) == batch_docs:
            encode(batch)
            batch = []
    encode(batch)
    if not segments:
        raise DataError(f"{path}: no documents to evaluate")
    return segments, counts


def document_stream_batches(segments: list[np.ndarray], block_size: int) -> Iterator[ScoredBatch]:
    """A recurrent model reads each document in one pass from a fresh state, block_size tokens at a time."""
    for seg in segments:
        row = torch.from_numpy(seg)[None]
        for start in range(0, len(seg) - 1, block_size):
            end = min(start + block_size, len(seg) - 1)
            yield row[:, start:end], row[:, start + 1:end + 1], end - start, start == 0


def _exp(x: float) -> float:
    return math.exp(min(x, 700.0))  # a diverged model's perplexity is huge, not an OverflowError


def metrics(loss_sum: float, tokens: int, n_bytes: int | None = None, n_chars: int | None = None,
            n_words: int | None = None) -> dict:
    """Loss (nats per token), perplexity and bits per token; per byte, character and word when counted."""
    loss = loss_sum / max(tokens, 1)
    bits = loss_sum / math.log(2)
    out = {"loss": loss, "perplexity": _exp(loss), "bits_per_token": loss / math.log(2), "tokens": tokens}
    if n_bytes:
        out.update(bits_per_byte=bits / n_bytes, byte_perplexity=_exp(loss_sum / n_bytes), bytes=n_bytes)
    if n_chars:
        out.update(bits_per_char=bits / n_chars, chars=n_chars)
    if n_words:
        out.update(word_perplexity=_exp(loss_sum / n_words), words=n_words)
    return out


def eval_tokens(run, data_file: str | None = None,
                split: str = "val") -> tuple[list[np.ndarray], str, dict[str, list[np.ndarray]]]:
    """The token segments a run is evaluated on, their name, and of a mixture of data.sources each source's own
    segments of the split (empty otherwise): a text file, or a split of its prepared data, which must be
    current: evaluation never prepares."""
    from lmforge.data.shards import encode_file, load_current

    if data_file is not None:
        tokens, _ = encode_file(run.tokenizer, data_file, run.config.data)
        if len(tokens) < 2:
            raise DataError(f"{data_file}: fewer than 2 tokens to evaluate")
        return [tokens], str(data_file), {}
    data = load_current(run.config, str(run.run_dir / "config.yaml"))
    if data.tokenizer.sha256 != run.tokenizer.sha256:
        raise DataError(f"{run.run_dir}: the prepared data was encoded with another tokenizer than this run's")
    # a mixture's train and val splits are its sources' in order; a separate test corpus belongs to none
    sources = {name: data.source_split(name, split) for name in data.mixture} if split in ("train", "val") else {}
    return data.split(split), "validation split" if split == "val" else f"{split} split", sources


def evaluate_run(run, data_file: str | None = None, batch_size: int = 32, device: str | torch.device = "cpu",
                 split: str = "val", stride: int | None = None, entropy: bool = False,
                 dtype: str = "float32", documents: bool = False) -> dict:
    """LM metrics of a loaded run (`run.load_run`) on a split of its data (default validation) or on
    a text file: non-overlapping windows, or sliding windows every `stride` tokens, or (`documents`) each
    document of the file on its own as lm-evaluation-harness scores it; with `entropy`, the mean entropy
    (nats) of the model's predicted distributions too. `dtype` bfloat16 runs the model under bf16 autocast
    (the losses are still summed in float64): faster, and a little less exact."""
    block_size = run.config.model.block_size
    device = torch.device(device)
    run.model.to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16" else None
    started = time.perf_counter()
    recurrent = run.model.recurrent
    if documents:
        if data_file is None:
            raise ConfigError("--documents scores the documents of a file: give --data FILE (a prepared split is "
                              "one token stream)")
        if stride is not None or run.model.objective == "masked":
            raise ConfigError("--documents: documents are scored left to right in the harness's rolling windows "
                              "of block_size tokens; " + ("not with --stride" if stride is not None
                                                          else "a masked-LM encoder does not score that way"))
        segments, counts = document_segments(run.tokenizer, data_file, run.config.data)
        source, by_source = f"{data_file}, {len(segments):,} documents", {}
        windows: Iterable[ScoredBatch] = (
            document_stream_batches(segments, block_size) if recurrent
            else sliding_window_batches(segments, block_size, block_size, batch_size, full_last=True))
    else:
        segments, source, by_source = eval_tokens(run, data_file, split)
        if run.model.objective == "masked":
            return _evaluate_masked(run, segments, source, batch_size, device, stride, started, autocast)
        if stride is not None and recurrent:
            raise ConfigError("--stride: sliding windows are for fixed-context models; a recurrent model carries "
                              "its state through the whole text instead")

        def windows_of(segs: list[np.ndarray]) -> Iterator[ScoredBatch]:
            return (window_batches(segs, block_size, batch_size, recurrent) if stride is None
                    else sliding_window_batches(segs, block_size, stride, batch_size))
        windows = windows_of(segments)
        counts = None
    if by_source:
        # each source scored on its own, as training's val_loss/<source>; the whole split is their sum
        per_source = {name: score_batches(run.model, windows_of(segs), device, autocast, entropy=entropy)
                      for name, segs in by_source.items()}
        totals = sum_totals(per_source.values())
    else:
        per_source = {}
        totals = score_batches(run.model, windows, device, autocast, entropy=entropy)
    # A file is counted as read (its first token, which nothing predicts, included); a split as decoded, a
    # mixture's source by source (the split is their segments in order, so its counts are their sums)
    source_counts = {name: predicted_text_counts(run.tokenizer, segs) for name, segs in by_source.items()}
    if counts is None and data_file is not None:
        counts = file_text_counts(data_file, run.config.data)
    elif counts is None and source_counts:
        counts = TextCounts(*(sum(getattr(c, k) for c in source_counts.values()) for k in ("bytes", "chars", "words")))
    elif counts is None:
        counts = predicted_text_counts(run.tokenizer, segments)
    seconds = time.perf_counter() - started
    result = {"run": str(run.run_dir), "checkpoint": run.checkpoint.name, "data": source,
              "block_size": block_size, "stride": stride, "documents": len(segments) if documents else None,
              "device": device.type, "dtype": dtype,
              **metrics(totals.loss_sum, totals.tokens, counts.bytes, counts.chars, counts.words)}
    if totals.entropy_sum is not None:
        result["entropy"] = totals.entropy_sum / max(totals.tokens, 1)
    if totals.direction_sums:  # a forward/backward pair reports each direction's perplexity
        for name, total in totals.direction_sums.items():
            result[f"{name}_perplexity"] = _exp(total / totals.direction_tokens)
    if per_source:
        result["sources"] = {}
        for name, part in per_source.items():
            c = source_counts[name]
            result["sources"][name] = metrics(part.loss_sum, part.tokens, c.bytes, c.chars, c.words)
            if part.entropy_sum is not None:
                result["sources"][name]["entropy"] = part.entropy_sum / max(part.tokens, 1)
    result.update(seconds=seconds, tokens_per_s=totals.tokens / seconds if seconds > 0 else None)
    return result


def _evaluate_masked(run, segments: list[np.ndarray], source: str, batch_size: int, device: torch.device,
                     stride: int | None, started: float, autocast) -> dict:
    """A masked-LM encoder's loss and perplexity on the tokens it masks in each window, masked as in training's
    evaluations (the same seed, window by window), so the figures agree and repeat. Per-byte and per-word figures would divide a loss over
    a sample of the tokens by the whole text, so there are none."""
    if stride is not None:
        raise ConfigError("--stride: a masked-LM encoder sees whole windows in both directions; sliding windows "
                          "are for left-to-right models")
    cfg = run.config
    eod = [run.tokenizer.eod_id] if run.tokenizer.eod_id is not None else []
    masker = MaskedLM(cfg.model, run.tokenizer.mask_id, cfg.model.vocab_size, eod, cfg.train.seed + 3)
    windows = ((*masker.rows(x), scored) for x, _, scored in window_batches(segments, cfg.model.block_size, batch_size))
    totals = score_batches(run.model, windows, device, autocast)
    seconds = time.perf_counter() - started
    return {"run": str(run.run_dir), "checkpoint": run.checkpoint.name, "data": f"{source}, masked tokens",
            "block_size": cfg.model.block_size, "stride": None, **metrics(totals.loss_sum, totals.tokens),
            "seconds": seconds, "tokens_per_s": totals.tokens / seconds if seconds > 0 else None}


def format_lm(result: dict) -> str:
    """One line of the headline figures of `evaluate_run`'s result."""
    parts = [f"loss {result['loss']:.4f}", f"perplexity {result['perplexity']:.2f}"]
    if "word_perplexity" in result:
        parts.append(f"word perplexity {result['word_perplexity']:.2f}")
    if "bits_per_byte" in result:
        parts.append(f"{result['bits_per_byte']:.4f} bits/byte")
    if "bits_per_char" in result:
        parts.append(f"{result['bits_per_char']:.4f} bits/char")
    if "entropy" in result:
        parts.append(f"entropy {result['entropy']:.4f} nats")
    for name in ("forward", "backward"):
        if f"{name}_perplexity" in result:
            parts.append(f"{name} LM perplexity {result[f'{name}_perplexity']:.2f}")
    stride = (", each document on its own" if result.get("documents")
              else f", sliding windows every {result['stride']}" if result.get("stride") else "")
    line = f"{result['data']} ({result['tokens']:,} tokens, {result['checkpoint']}{stride}): " + ", ".join(parts)
    for name, m in result.get("sources", {}).items():  # a mixture of data.sources: each source's own figures
        line += (f"\n  {name} ({m['tokens']:,} tokens): loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}"
                 + (f", {m['bits_per_byte']:.4f} bits/byte" if "bits_per_byte" in m else ""))
    return line
