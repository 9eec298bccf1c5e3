"""Sampling from any lmforge model: greedy, temperature, top-k and nucleus (top-p).

Models share one interface, `forward(tokens[B, T], state=None) -> (logits[B, T, V], state)`. A model that
returns a state (an RNN) is fed only the newly sampled token with that state; a model that returns None
(a GPT) is fed the last `block_size` tokens again at each step. Either reads the last `block_size` prompt
tokens in its first call, since that is what it was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from lmforge.config import SampleConfig

if TYPE_CHECKING:
    from lmforge.tokenizer import Tokenizer


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the top k and outside the nucleus of probability top_p (1-D logits)."""
    if top_k is not None and top_k < logits.size(-1):
        kth_largest = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Keep a token if the tokens ranked above it hold less than top_p: the smallest set whose total
        # reaches top_p. The first token always passes (0 < top_p), so something is always left to sample.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = drop_sorted.scatter(0, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    block_size: int,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
) -> list[int]:
    """Continue `prompt` by up to `max_new_tokens` ids and return only the new ones.

    temperature 0 is greedy decoding (top_k and top_p then change nothing). Sampling draws from `generator`
    (on its device) when given, so a seeded generator gives the same text. Generation stops after `stop_id`
    is produced; it is included in the result, so a caller can tell a stop from running out of tokens.
    """
    if not prompt:
        raise ValueError("generate: the prompt is empty; give at least one token id to start from")
    if max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"generate: temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"generate: top_k must be >= 1 or None, got {top_k}")
    if not 0 < top_p <= 1:
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p}")
    if block_size < 1:
        raise ValueError(f"generate: block_size must be >= 1, got {block_size}")

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        ids = list(prompt)
        new: list[int] = []
        inputs = torch.tensor([ids[-block_size:]], dtype=torch.long, device=device)
        state = None
        for _ in range(max_new_tokens):
            logits, state = model(inputs, state)
            logits = logits[0, -1].float()
            if temperature == 0:
                next_id = int(logits.argmax())
            else:
                logits = filter_logits(logits / temperature, top_k, top_p)
                probs = logits.softmax(dim=-1)
                if generator is not None:
                    probs = probs.to(generator.device)
                next_id = int(torch.multinomial(probs, 1, generator=generator))
            ids.append(next_id)
            new.append(next_id)
            if next_id == stop_id:
                break
            # a recurrent model has the past in its state; a GPT sees the (cropped) context again
            context = [next_id] if state is not None else ids[-block_size:]
            inputs = torch.tensor([context], dtype=torch.long, device=device)
        return new
    finally:
        model.train(was_training)


def sample_texts(model: nn.Module, tokenizer: Tokenizer, cfg: SampleConfig, block_size: int,
                 device: torch.device | str, seed: int) -> list[str]:
    """`cfg.num_samples` texts, each the prompt and its continuation, for samples.txt and `lmforge generate`.

    An empty prompt starts a new document: the end-of-document token when the tokenizer has one, else a
    newline (nanoGPT's start for char models), else token 0. A sample ends early at end-of-document.
    Draws come from a generator on `device` (the model's) seeded with `seed`, so a run's samples repeat.
    """
    prompt = tokenizer.encode(cfg.prompt)
    # The text shown is decoded from prompt and continuation together, so that word tokenizers space them
    # and byte-level BPE joins a character split across the boundary; a start token made up here is not shown.
    shown = list(prompt)
    if not prompt:
        prompt = [tokenizer.eod_id] if tokenizer.eod_id is not None else (tokenizer.encode("\n") or [0])
    generator = torch.Generator(device=device).manual_seed(seed)
    texts = []
    for _ in range(cfg.num_samples):
        new = generate(model, prompt, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                       top_p=cfg.top_p, block_size=block_size, generator=generator, stop_id=tokenizer.eod_id)
        texts.append(tokenizer.decode(shown + new))
    return texts
