"""The `lmforge` command line: each verb parses its options, calls the Python API and prints.

Errors from bad input (`LmforgeError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Callable, List, Optional

import typer

from lmforge.errors import LmforgeError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Raw text to a trained, evaluated language model.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect configurations.")
app.add_typer(config_app, name="config")

RecipeArg = typer.Argument(None, help="a YAML recipe (configs/*.yaml); omit for the built-in default job",
                           show_default=False)
OverridesArg = typer.Argument(None, help="key.sub=value overrides, e.g. model.n_layer=6", show_default=False)


def one_line_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LmforgeError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
    return wrapper


def _split_recipe(recipe: str | None, overrides: list[str] | None) -> tuple[str | None, list[str]]:
    """`lmforge train model.n_layer=2` has no recipe: the first word is an override."""
    overrides = list(overrides or [])
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        return None, [recipe, *overrides]
    return recipe, overrides


def _config(recipe: str | None, overrides: list[str] | None):
    from lmforge.config import load_config

    return load_config(*_split_recipe(recipe, overrides))


@config_app.command("show")
@one_line_errors
def config_show(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg) -> None:
    """Print the resolved config, each field with its description."""
    from lmforge.config import describe

    typer.echo(describe(_config(recipe, overrides)))


@app.command()
@one_line_errors
def prepare(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg,
            no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Train the tokenizer and encode the corpus into token shards."""
    from lmforge.data.shards import ensure_prepared, load_prepared

    data = load_prepared(ensure_prepared(_config(recipe, overrides), progress=not no_progress))
    meta = data.meta
    splits = {name: sum(end - start for _, start, end in ranges) for name, ranges in meta["splits"].items()}
    typer.echo(f"prepared {data.path}: {meta['total_tokens']:,} tokens ({splits['train']:,} train, "
               f"{splits['val']:,} val), vocabulary {meta['vocab_size']:,}, {meta['documents']:,} documents")


@app.command()
@one_line_errors
def train(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg,
          run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="where the run goes (default runs/<name>)"),
          resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run directory from its last checkpoint"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run in the run directory"),
          no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Train a model; print validation loss and samples at the end."""
    from lmforge.config import load_config
    from lmforge.train.trainer import train as run_training

    if resume is not None:
        recipe, extra = _split_recipe(recipe, overrides)
        if recipe is not None:
            raise LmforgeError("--resume takes its config from the run directory; give only key=value overrides")
        if not (resume / "config.yaml").is_file():
            raise LmforgeError(f"{resume}: not a run directory (no config.yaml)")
        cfg = load_config(resume / "config.yaml", extra)
        result = run_training(cfg, resume, resume=True, progress=not no_progress)
    else:
        cfg = _config(recipe, overrides)
        result = run_training(cfg, run_dir, overwrite=overwrite, progress=not no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    best = f" (best {result.best_val_loss:.4f})" if result.best_val_loss is not None else ""
    typer.echo(f"\n{result.run_dir}: step {result.step}, val loss {result.val_loss:.4f}{best}, "
               f"{result.tokens_per_s:,.0f} tokens/s, {result.elapsed_s:.0f} s")
    for i, sample in enumerate(result.samples, 1):
        typer.echo(f"\n--- sample {i} ---\n{sample}")


@app.command("eval")
@one_line_errors
def eval_(run_dir: Path = typer.Argument(..., help="a run directory"),
          data: Optional[Path] = typer.Option(None, "--data", help="a text file to evaluate on (default: the validation split)"),
          checkpoint: str = typer.Option("last", "--checkpoint", help="last, best or step-N"),
          batch_size: Optional[int] = typer.Option(None, "--batch-size", help="windows per forward pass"),
          as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Loss, perplexity and bits per byte of a trained run."""
    from lmforge.eval.lm import evaluate_run
    from lmforge.train.checkpoint import load_run

    run = load_run(run_dir, checkpoint)
    result = evaluate_run(run, str(data) if data else None, batch_size or run.config.eval.batch_size)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    bpb = f", {result['bits_per_byte']:.4f} bits/byte" if "bits_per_byte" in result else ""
    typer.echo(f"{result['data']} ({result['tokens']:,} tokens, {run.checkpoint.name}): loss {result['loss']:.4f}, "
               f"perplexity {result['perplexity']:.2f}{bpb}")


@app.command()
@one_line_errors
def generate(run_dir: Path = typer.Argument(..., help="a run directory"),
             prompt: str = typer.Option("", "--prompt", help="text to continue (empty = start of a document)"),
             max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1),
             temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="0 = greedy"),
             top_k: Optional[int] = typer.Option(None, "--top-k", min=1),
             top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
             num_samples: int = typer.Option(1, "--num-samples", min=1),
             seed: int = typer.Option(1337, "--seed"),
             checkpoint: str = typer.Option("last", "--checkpoint", help="last, best or step-N")) -> None:
    """Sample text from a trained run."""
    from lmforge.config import SampleConfig
    from lmforge.generate import sample_texts
    from lmforge.train.checkpoint import load_run

    run = load_run(run_dir, checkpoint)
    sample_cfg = SampleConfig(prompt=prompt, num_samples=num_samples, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_k=top_k, top_p=top_p)
    for i, text in enumerate(sample_texts(run.model, run.tokenizer, sample_cfg, run.config.model.block_size,
                                          "cpu", seed=seed)):
        if num_samples > 1:
            typer.echo(f"--- sample {i + 1} ---")
        typer.echo(text)
