"""Generation metrics of a trained run: continue prompts cut from held-out text and score the continuations.

Prompts start at evenly spaced places of the evaluation tokens (deterministic, and spread over the whole
text); each is followed by its true continuation of the same length the model is asked to generate.
The model samples with the run's own sampling settings (`sample.*`) from a generator seeded with the
run's seed, so the figures repeat. The generated continuations are scored against the true ones with
BLEU, chrF, chrF++ and METEOR, and their diversity is measured on their own.
"""

from __future__ import annotations

import numpy as np
import torch

from lmforge.errors import DataError
from lmforge.eval.text import diversity, meteor, sacrebleu_score
from lmforge.generate import generate


def prompt_windows(segments: list[np.ndarray], count: int, prompt_tokens: int,
                   new_tokens: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to `count` (prompt, true continuation) token pairs at evenly spaced starts, each within a segment."""
    need = prompt_tokens + new_tokens
    usable = [s for s in segments if len(s) >= need]
    if not usable:
        raise DataError(f"generation metrics need {need} consecutive tokens ({prompt_tokens} of prompt, "
                        f"{new_tokens} to continue); the text is shorter")
    starts_per_segment = np.array([len(s) - need + 1 for s in usable])
    ends = np.cumsum(starts_per_segment)
    picks = np.unique(np.linspace(0, ends[-1] - 1, count).round().astype(np.int64))
    pairs = []
    for p in picks:
        which = int(np.searchsorted(ends, p, side="right"))
        start = int(p - (ends[which] - starts_per_segment[which]))
        window = np.asarray(usable[which][start:start + need])
        pairs.append((window[:prompt_tokens], window[prompt_tokens:]))
    return pairs


def generation_metrics(run, segments: list[np.ndarray], samples: int = 16, prompt_tokens: int | None = None,
                       new_tokens: int | None = None, device: str | torch.device = "cpu") -> dict:
    """Continue `samples` prompts from `segments`; score the continuations against the true ones.

    Prompt and continuation default to half the model's context each."""
    block_size = run.config.model.block_size
    prompt_tokens = prompt_tokens or max(block_size // 2, 1)
    new_tokens = new_tokens or max(block_size // 2, 1)
    sample_cfg, tokenizer = run.config.sample, run.tokenizer
    generator = torch.Generator(device=device).manual_seed(run.config.train.seed)
    hypotheses, references = [], []
    for prompt, truth in prompt_windows(segments, samples, prompt_tokens, new_tokens):
        new = generate(run.model, prompt.tolist(), new_tokens, temperature=sample_cfg.temperature,
                       top_k=sample_cfg.top_k, top_p=sample_cfg.top_p, block_size=block_size,
                       generator=generator, stop_id=tokenizer.eod_id)
        hypotheses.append(tokenizer.decode(new))
        references.append(tokenizer.decode(truth))
    scores = [sacrebleu_score(name, hypotheses, references) for name in ("bleu", "chrf", "chrf++")]
    scores.append(meteor(hypotheses, references))
    return {"samples": len(hypotheses), "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
            "sampling": {"temperature": sample_cfg.temperature, "top_k": sample_cfg.top_k, "top_p": sample_cfg.top_p},
            "scores": {s.metric: s.score for s in scores},
            "signatures": {s.metric: s.signature for s in scores},
            "warnings": [s.warning for s in scores if s.warning],
            "diversity": diversity(hypotheses), "reference_diversity": diversity(references),
            "examples": [{"generated": h, "true": r} for h, r in zip(hypotheses[:3], references[:3])]}


def format_generation(result: dict) -> str:
    scores = ", ".join(f"{name} {value:.4f}" if name == "METEOR" else f"{name} {value:.2f}"
                       for name, value in result["scores"].items())
    div, ref = result["diversity"], result["reference_diversity"]

    def show(d: dict) -> str:
        self_bleu = "–" if d["self_bleu"] is None else f"{d['self_bleu']:.2f}"
        return (f"distinct-1 {d['distinct_1']:.3f}, distinct-2 {d['distinct_2']:.3f}, unigram entropy "
                f"{d['unigram_entropy']:.2f} bits, bigram entropy {d['bigram_entropy']:.2f} bits, self-BLEU "
                f"{self_bleu}, repetition {d['repetition_rate']:.3f}")

    lines = [f"generation ({result['samples']} prompts of {result['prompt_tokens']} tokens, "
             f"{result['new_tokens']} tokens generated): {scores}",
             f"  generated: {show(div)}",
             f"  true text: {show(ref)}"]
    lines += [f"  signature {name}: {sig}" for name, sig in result["signatures"].items()]
    return "\n".join(lines)
