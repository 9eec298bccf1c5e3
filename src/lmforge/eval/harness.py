"""EleutherAI's lm-evaluation-harness on any lmforge LM run: `LmforgeLM`, registered as the model `lmforge`.

    lmforge eval RUN --harness hellaswag,lambada_openai          # the short form
    lmforge-lm-eval --model lmforge --model_args run=RUN,checkpoint=best --tasks wikitext
    python: import lmforge.eval.harness; lm_eval.simple_evaluate(model="lmforge", model_args="run=RUN", ...)

(`lmforge-lm-eval` is lm-eval's own command with this module imported first: lm-eval 0.4 finds models only in
its own registry, so the stock `lm_eval` command cannot see a model that a package registers.)

Scoring follows the harness's HFLM, so that a run scores the same as its `lmforge export` through HFLM:
context and continuation are encoded together and split where the context's tokens end, an empty context is
the end-of-document token, and fixed-context families (GPT, FFNN) score a long text in the harness's rolling
windows: disjoint windows of `max_length` tokens, each token given the tokens before it in its window. Recurrent families (RNN/LSTM/GRU, the BiLM's forward direction) read a text in
one pass with their state carried, as they were trained to. A masked-LM encoder does not score text left to
right and is refused. lm-eval is an optional extra: pip install 'lmforge[harness]'.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lmforge.errors import LmforgeError
from lmforge.generate import generate
from lmforge.run import RunDir, load_run

try:
    import lm_eval.models  # noqa: F401  the harness's own models first: it fills its registry lazily only when empty
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ModuleNotFoundError as e:  # the extra is missing: one line that says what to install
    raise LmforgeError(f"the harness adapter needs lm-eval ({e}): pip install 'lmforge[harness]'") from None


@register_model("lmforge")
class LmforgeLM(TemplateLM):
    def __init__(self, run: str | None = None, checkpoint: str = "last", device: str | None = None,
                 batch_size: int | str | None = 1, max_length: int | None = None, **_) -> None:
        super().__init__()
        if run is None:
            raise LmforgeError("--model_args: give run=RUN_DIR (an lmforge LM run directory)")
        kind = RunDir(run).kind
        if kind != "lm":
            what = {"task": "a fine-tuned task run", "bakeoff": "a bake-off"}.get(kind, "not a run directory")
            raise LmforgeError(f"{run}: the harness scores an LM run; this is {what}")
        if device is None or (device.startswith("cuda") and not torch.cuda.is_available()):
            device = "cuda" if torch.cuda.is_available() else "cpu"  # lm-eval's command asks for cuda by default
        self.device_ = torch.device(device)
        self.run = load_run(Path(run), checkpoint, self.device_)
        self.model = self.run.model
        if self.model.objective == "masked":
            raise LmforgeError(f"{run}: a masked-LM encoder does not score text left to right; the harness needs a "
                               "causal family (gpt, ffnn, rnn, lstm, gru)")
        self.tokenizer_ = self.run.tokenizer
        self.recurrent = self.model.recurrent
        self.block_size = self.run.config.model.block_size
        self._max_length = max_length or self.block_size

    # -- what TemplateLM asks --------------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        eod = self.tokenizer_.eod_id
        if eod is None:
            raise LmforgeError(f"{self.run.run_dir}: the tokenizer has no end-of-document token to start a text from")
        return eod

    @property
    def max_length(self) -> int:
        return self._max_length

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer_.encode(string)

    def tok_decode(self, tokens: list[int], **kwargs) -> str:
        return self.tokenizer_.decode(tokens)

    # -- scoring ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def _logprobs(self, tokens: list[int]) -> torch.Tensor:
        """Log-probabilities (len-1, V) of tokens[1:] given what precedes each; a recurrent model reads in
        block_size chunks with its state carried, so it sees the whole text."""
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device_)
        if not self.recurrent:
            logits, _ = self.model(ids[:, :-1])
            return F.log_softmax(logits[0].float(), dim=-1)
        out, state = [], None
        for start in range(0, ids.size(1) - 1, self.block_size):
            logits, state = self.model(ids[:, start:min(start + self.block_size, ids.size(1) - 1)], state)
            out.append(logits[0])
        return F.log_softmax(torch.cat(out).float(), dim=-1)

    def _score(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        whole = context + continuation
        if not self.recurrent:
            whole = whole[-(self.max_length + 1):]
        logprobs = self._logprobs(whole)[-len(continuation):]
        target = torch.tensor(continuation, device=logprobs.device)
        picked = logprobs.gather(1, target[:, None])[:, 0]
        return float(picked.sum()), bool((logprobs.argmax(-1) == target).all())

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        results = []
        for key, context, continuation in requests:
            result = self._score(context, continuation)
            self.cache_hook.add_partial("loglikelihood", key, result)
            results.append(result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each whole text: the first token given the end-of-document token, every
        other given the text before it (a fixed-context model: up to max_length tokens of it)."""
        results = []
        for request in requests:
            (text,) = request.args
            tokens = self.tok_encode(text)
            if self.recurrent:
                total = self._score([self.eot_token_id], tokens)[0] if tokens else 0.0
            else:
                windows = map(make_disjoint_window, get_rolling_token_windows(
                    tokens, self.eot_token_id, self.max_length, context_len=1))
                total = sum(self._score(ctx, pred)[0] for ctx, pred in windows)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            results.append(total)
        return results

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled, with temperature > 0 and do_sample) continuations, cut at the first stop string."""
        results = []
        generator = torch.Generator(device=self.device_).manual_seed(self.run.config.train.seed)
        for request in requests:
            context, kwargs = request.args
            kwargs = dict(kwargs or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.get("max_gen_toks", 256))
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample", False) else 0.0
            prompt = self.tok_encode(context) or [self.eot_token_id]
            if not self.recurrent:
                prompt = prompt[-self.max_length:]
            new = generate(self.model, prompt, max_new, temperature=temperature, block_size=self.block_size,
                           generator=generator, stop_id=self.eot_token_id)
            text = self.tok_decode(new)
            for stop in until:
                if stop and stop in text:
                    text = text[:text.index(stop)]
            self.cache_hook.add_partial("generate_until", (context, kwargs), text)
            results.append(text)
        return results


def run_harness(run_dir: str | Path, tasks: list[str], *, checkpoint: str = "last", include_path: str | None = None,
                limit: int | None = None, device: str | None = None) -> dict:
    """`lmforge eval RUN --harness TASKS`: lm-eval's results (its `simple_evaluate` dict) for the run."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_path)
    unknown = [t for t in tasks if not manager.match_tasks([t])]
    if unknown:
        raise LmforgeError(f"--harness: unknown task {', '.join(unknown)} (lm-eval's tasks, or those in --include-path)")
    lm = LmforgeLM(run=str(run_dir), checkpoint=checkpoint, device=device)
    return simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, log_samples=False)


def cli() -> None:
    """`lmforge-lm-eval`: lm-eval's command line with the `lmforge` model registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
