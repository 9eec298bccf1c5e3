"""The `lmforge` command line: each verb parses its options, calls the Python API and prints.

Errors from bad input (`LmforgeError`) are printed as one line and exit with status 2, and so are the
command line's own (an option that is not an integer, an unknown option, a missing argument), which click
would print as a usage box.
"""

from __future__ import annotations

import errno
import functools
import json
import os
from pathlib import Path
from typing import Callable, List, Optional

import typer

from lmforge.config import AugmentConfig, EvalConfig, SampleConfig, TrainConfig
from lmforge.errors import LmforgeError
from lmforge.io import DISK_ERRNOS

class OneLineUsageErrors(typer.core.TyperGroup):
    """click's usage errors as one line (`error: lmforge plan: Invalid value for '--devices': ...`), exit status
    2, where click and typer print a usage box; a verb given no arguments still prints its help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import sys

        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        except typer.TyperException as e:  # click's errors (typer vendors click: its classes are typer's)
            if type(e).__name__ == "NoArgsIsHelpError":  # parsing only, nothing ran: typer shows the help
                return super().main(args, prog_name, complete_var, standalone_mode=True, **extra)
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            typer.echo(f"error: {where}{e.format_message()}", err=True)
            sys.exit(getattr(e, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineUsageErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
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
        except OSError as e:  # a file no reader or atomic writer wrapped (a tracker's files, a scratch file)
            if e.errno not in DISK_ERRNOS | {errno.EACCES, errno.EPERM}:
                raise
            typer.echo(f"error: {e.filename or 'writing an output'}: {os.strerror(e.errno)}", err=True)
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


def _resume_config(run_dir: Path, recipe: str | None, overrides: list[str] | None):
    """The config a run directory saved, with key=value overrides (a recipe is not allowed)."""
    from lmforge.run import RunDir

    recipe, extra = _split_recipe(recipe, overrides)
    if recipe is not None:
        raise LmforgeError("--resume takes its config from the run directory; give only key=value overrides")
    return RunDir(run_dir).resume_config(extra)


def field_option(section: type, name: str, flag: str, run_key: str | None = None, **kwargs):
    """An option for the config field `section.name`, its help the field's description, so that the CLI cannot
    contradict the config. Left out it is None: the run's own `<run_key>.<name>` for a verb that takes a run,
    else the field's default."""
    spec = section.model_fields[name]
    if run_key:
        default = f"the run's {run_key}.{name}"
    else:
        default = "empty" if spec.default is None else str(spec.default).lower() if isinstance(spec.default, bool) else spec.default
    return typer.Option(None, flag, show_default=False, **kwargs, help=f"{spec.description} (default: {default})")


@config_app.command("show")
@one_line_errors
def config_show(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg) -> None:
    """Print the resolved config, each field with its description."""
    from lmforge.config import describe

    typer.echo(describe(_config(recipe, overrides)))


@app.command()
@one_line_errors
def prepare(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg,
            partition: Optional[str] = typer.Option(None, "--partition", metavar="I/N", help="encode only part I (from 0) of N of the corpus's files, for N machines at once; a plain prepare then merges the N parts"),
            no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Train the tokenizer and encode the corpus into token shards."""
    from lmforge.data.shards import load_prepared
    from lmforge.prepare import Partition, ensure_prepared, prepare as prepare_part

    cfg = _config(recipe, overrides)
    if partition is not None:
        part = Partition.parse(partition)
        out = prepare_part(cfg, progress=not no_progress, partition=part)
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
        typer.echo(f"prepared part {part.index} of {part.count} in {out}: {meta['total_tokens']:,} tokens of "
                   f"{len(meta['sources'])} files; once all {part.count} parts are there, lmforge prepare with the same "
                   f"recipe merges them")
        return
    data = load_prepared(ensure_prepared(cfg, progress=not no_progress))
    meta = data.meta
    splits = ", ".join(f"{sum(end - start for _, start, end in ranges):,} {name}" for name, ranges in meta["splits"].items())
    typer.echo(f"prepared {data.path}: {meta['total_tokens']:,} tokens ({splits}), "
               f"vocabulary {meta['vocab_size']:,}, {meta['documents']:,} documents")
    for name, weight in data.mixture.items():  # a mixture of data.sources: each source's own splits
        own = ", ".join(f"{sum(map(len, data.source_split(name, split))):,} {split}" for split in ("train", "val"))
        typer.echo(f"  source {name}: weight {weight:g}, {own} tokens")


@app.command()
@one_line_errors
def train(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg,
          run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="where the run goes (default runs/<name>)"),
          resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run directory from its last checkpoint"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run in the run directory"),
          report_every: Optional[int] = field_option(TrainConfig, "report_every", "--report-every"),
          no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Train a model; print validation loss and samples at the end (and write RUN/report.html)."""
    from lmforge.train.trainer import train as run_training

    if report_every is not None:
        overrides = [*(overrides or []), f"train.report_every={report_every}"]
    if resume is not None:
        result = run_training(_resume_config(resume, recipe, overrides), resume, resume=True,
                              progress=not no_progress)
    else:
        result = run_training(_config(recipe, overrides), run_dir, overwrite=overwrite, progress=not no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    best = f" (best {result.best_val_loss:.4f})" if result.best_val_loss is not None else ""
    typer.echo(f"\n{result.run_dir}: step {result.step}, val loss {result.val_loss:.4f}{best}, "
               f"{result.tokens_per_s:,.0f} tokens/s, {result.elapsed_s:.0f} s")
    for i, sample in enumerate(result.samples, 1):
        typer.echo(f"\n--- sample {i} ---\n{sample}")


@app.command()
@one_line_errors
def bakeoff(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg,
            models: Optional[str] = typer.Option(None, "--models", help="comma-separated families (default: every one that can train on the recipe: ffnn,rnn,lstm,gru,gpt, or for data.sources ffnn,gpt)", show_default=False),
            budget: str = typer.Option("10m", "--budget", help="per model: time (90s, 10m, 1h) or tokens (2Mtok)"),
            out: Optional[Path] = typer.Option(None, "--out", help="output directory (default runs/<name>-bakeoff)"),
            resume: bool = typer.Option(False, "--resume", help="keep models that finished in an earlier bake-off into --out with the same recipe and budget"),
            no_progress: bool = typer.Option(False, "--no-progress", help="no progress bars")) -> None:
    """Train several architectures on the same data under the same budget and compare them."""
    from lmforge.bakeoff import Budget, bakeoff as run_bakeoff, default_families

    cfg = _config(recipe, overrides)
    out_dir = out or Path("runs") / f"{cfg.name}-bakeoff"
    families = [m.strip() for m in models.split(",") if m.strip()] if models is not None else default_families(cfg)
    run_bakeoff(cfg, families, Budget.parse(budget), out_dir, progress=not no_progress, resume=resume)
    typer.echo((out_dir / "bakeoff.md").read_text())


@app.command("eval")
@one_line_errors
def eval_(run_dir: Path = typer.Argument(..., help="a run directory"),
          data: Optional[Path] = typer.Option(None, "--data", help="a text file to evaluate on (default: the validation split)"),
          split: str = typer.Option("val", "--split", help="the split of the run's prepared data: val, test (when data.test_path is set) or train"),
          checkpoint: str = typer.Option("last", "--checkpoint", help="last, best or step-N"),
          batch_size: Optional[int] = field_option(EvalConfig, "batch_size", "--batch-size", "eval"),
          stride: Optional[int] = field_option(EvalConfig, "stride", "--stride", "eval"),
          documents: Optional[bool] = field_option(EvalConfig, "documents", "--documents/--no-documents", "eval"),
          metrics: Optional[bool] = field_option(EvalConfig, "metrics", "--metrics/--no-metrics", "eval"),
          samples: Optional[int] = field_option(EvalConfig, "samples", "--samples", "eval"),
          device: Optional[str] = field_option(EvalConfig, "device", "--device", "eval"),
          dtype: Optional[str] = field_option(EvalConfig, "dtype", "--dtype", "eval"),
          harness: Optional[str] = typer.Option(None, "--harness", help="comma-separated lm-evaluation-harness tasks to run instead (pip install 'lmforge[harness]')", show_default=False),
          include_path: Optional[Path] = typer.Option(None, "--include-path", help="--harness: a folder of your own task YAMLs", show_default=False),
          limit: Optional[int] = typer.Option(None, "--limit", help="--harness: at most this many documents per task", show_default=False),
          as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Loss, perplexity per token and per word, bits per byte and per character of a trained run; on a
    fine-tuned run (lmforge finetune), its task metrics on --data or the recipe's val_path; with --harness,
    lm-evaluation-harness tasks."""
    from lmforge.eval.lm import format_lm
    from lmforge.eval.recipe import evaluate

    if harness is not None:
        from lmforge.eval.harness import run_harness

        tasks = [t.strip() for t in harness.split(",") if t.strip()]
        out = run_harness(run_dir, tasks, checkpoint=checkpoint, include_path=str(include_path) if include_path else None,
                          limit=limit, device=device if device not in (None, "auto") else None)
        if as_json:
            typer.echo(json.dumps(out["results"], indent=2, default=str))
        else:
            from lm_eval.utils import make_table

            typer.echo(make_table(out))
        return
    result = evaluate(run_dir, data, split=split, checkpoint=checkpoint, batch_size=batch_size, stride=stride,
                      documents=documents, metrics=metrics, samples=samples, device=device, dtype=dtype)
    if "task" in result:
        _print_task_result(result, as_json)
        return
    for warning in result.get("generation", {}).get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(format_lm(result))
    if "generation" in result:
        from lmforge.eval.generation import format_generation

        typer.echo(format_generation(result["generation"]))


@app.command("plan")
@one_line_errors
def plan_(recipe: Optional[str] = RecipeArg, overrides: Optional[List[str]] = OverridesArg,
          devices: str = typer.Option("1", "--devices", metavar="N", help="devices (GPUs, or processes) to plan for: ddp and fsdp from 2"),
          device_memory: str = typer.Option("80GB", "--device-memory", help="memory of one device, e.g. 80GB, 80GiB, 24G, 512MB: GB, MB and TB are powers of 1000 (80GB = 80 x 10^9 bytes); GiB, MiB, TiB and a bare G, M or T powers of 1024 (24G = 24GiB = 24 x 2^30 bytes)"),
          as_json: bool = typer.Option(False, "--json", help="print JSON (sizes in bytes)")) -> None:
    """Memory per device of training the recipe (parameters, gradients, optimizer state, activations with and
    without checkpointing, the peak) under single, ddp and fsdp; the largest micro-batch that fits; which
    strategy to pick (docs/planning.md). Plan for GPUs with train.device=cuda on a machine without one."""
    from lmforge.plan import parse_devices, parse_size, plan as make_plan

    # --devices is read as text, so that `--devices two` is told what a device count is
    result = make_plan(_config(recipe, overrides), parse_devices(devices), parse_size(device_memory, "--device-memory"))
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.format())


@app.command("bench-gemm")
@one_line_errors
def bench_gemm(dtype: str = typer.Option("float32", "--dtype", help="float32 or bfloat16"),
               threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's own choice, as training with train.num_threads empty)", show_default=False),
               refresh: bool = typer.Option(False, "--refresh", help="measure again instead of reading the cache")) -> None:
    """This CPU's measured GEMM peak FLOP/s, which training's MFU divides by (cached per machine)."""
    import torch

    from lmforge.errors import ConfigError
    from lmforge.train.peak import cache_path, cpu_peak_flops

    if dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"--dtype {dtype!r}: expected float32 or bfloat16")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: expected 1 or more")
        torch.set_num_threads(threads)
    flops = cpu_peak_flops(getattr(torch, dtype), refresh=refresh)
    typer.echo(f"{flops / 1e9:,.1f} GFLOP/s ({dtype}, {torch.get_num_threads()} threads; cached in {cache_path()})")


@app.command()
@one_line_errors
def report(run_dir: Path = typer.Argument(..., help="a run directory: training, fine-tuning or a bake-off's --out"),
           out: Optional[Path] = typer.Option(None, "--out", help="where the HTML goes (default RUN_DIR/report.html)")) -> None:
    """One self-contained HTML page of a run: curves, results, samples, checkpoints and config (offline)."""
    from lmforge.report import write_report

    typer.echo(write_report(run_dir, out))


@app.command()
@one_line_errors
def compare(run_dirs: List[Path] = typer.Argument(..., help="run directories", show_default=False),
            metric: str = typer.Option("val_loss", "--metric", help="the logged metric to overlay (loss, val_loss, lr, grad_norm, tokens_per_s, ...)"),
            x: str = typer.Option("step", "--x", help="x axis: step, time (the run's wall time) or tokens"),
            out: Path = typer.Option(Path("compare.html"), "--out", help="where the HTML goes")) -> None:
    """Overlay several runs' curves; a table of their final figures and of the config keys on which they differ."""
    from lmforge.report import write_compare

    typer.echo(write_compare(run_dirs, out, metric, x))


def _print_task_result(result: dict, as_json: bool) -> None:
    from lmforge.eval.tasks import format_entity_f1
    from lmforge.finetune.task import headline

    for warning in result["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['task']} on {result['data']}: {headline(result)}")
    if result["task"] == "tag":
        typer.echo(format_entity_f1(result))


@app.command()
@one_line_errors
def finetune(recipe: Optional[str] = typer.Argument(None, help="a YAML recipe with a finetune section (configs/sst2-minilm.yaml)", show_default=False),
             overrides: Optional[List[str]] = OverridesArg,
             run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="where the run goes (default runs/<name>)"),
             resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run directory from its last checkpoint (the end of an epoch)"),
             overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run in the run directory"),
             no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Fine-tune a backbone (an lmforge run or a local HF model) on a task: classify, tag, qa or lm."""
    from lmforge.finetune.task import headline
    from lmforge.finetune.train import finetune as run_finetune

    if resume is not None:
        result = run_finetune(_resume_config(resume, recipe, overrides), resume, resume=True,
                              progress=not no_progress)
    else:
        result = run_finetune(_config(recipe, overrides), run_dir, overwrite=overwrite, progress=not no_progress)
    scores = f", {headline(result.metrics)}" if result.metrics else ""
    typer.echo(f"\n{result.run_dir}: step {result.step}{scores}, {result.elapsed_s:.0f} s")


@app.command()
@one_line_errors
def predict(run_dir: Path = typer.Argument(..., help="a fine-tuned run directory"),
            input_path: Path = typer.Option(..., "--input", help="texts (.tsv/.csv/.jsonl/.txt), CoNLL tokens or SQuAD JSON"),
            output: Optional[Path] = typer.Option(None, "--output", help="where the predictions go (default: printed)"),
            checkpoint: str = typer.Option("last", "--checkpoint", help="last, best or step-N"),
            batch_size: int = typer.Option(32, "--batch-size", min=1, help="sequences per forward pass")) -> None:
    """Predict with a fine-tuned run, in the input's format: the table with its label column filled in, CoNLL
    token/tag columns, or SQuAD predictions {question id: answer}."""
    from lmforge.finetune.predict import predict_file

    text = predict_file(run_dir, input_path, output, checkpoint, batch_size)
    if output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}", err=True)


@app.command()
@one_line_errors
def generate(run_dir: Path = typer.Argument(..., help="a run directory"),
             prompt: Optional[str] = field_option(SampleConfig, "prompt", "--prompt", "sample"),
             max_new_tokens: Optional[int] = field_option(SampleConfig, "max_new_tokens", "--max-new-tokens", "sample"),
             temperature: Optional[float] = field_option(SampleConfig, "temperature", "--temperature", "sample"),
             top_k: Optional[int] = field_option(SampleConfig, "top_k", "--top-k", "sample"),
             top_p: Optional[float] = field_option(SampleConfig, "top_p", "--top-p", "sample"),
             num_samples: Optional[int] = field_option(SampleConfig, "num_samples", "--num-samples", "sample"),
             seed: Optional[int] = typer.Option(None, "--seed", show_default=False, help="seeds the sampling (default: the run's train.seed)"),
             device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda"),
             checkpoint: str = typer.Option("last", "--checkpoint", help="last, best or step-N")) -> None:
    """Sample text from a trained run, with the run's own sampling settings unless a flag changes one; samples
    are separated by a line `---`, as in samples.txt."""
    from lmforge.config import validate_section
    from lmforge.generate import sample_texts
    from lmforge.run import load_run

    from lmforge.eval.recipe import resolve_device

    device = resolve_device(device)
    run = load_run(run_dir, checkpoint, device)
    if run.model.objective == "masked":
        raise LmforgeError(f"{run_dir}: a masked-LM encoder does not generate text (it fills in <mask> tokens: "
                           f"lmforge augment --method mask --model {run_dir})")
    given = {"prompt": prompt, "max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k,
             "top_p": top_p, "num_samples": num_samples}
    sample_cfg = validate_section(SampleConfig, {**run.config.sample.model_dump(),
                                                 **{k: v for k, v in given.items() if v is not None}}, "sample")
    texts = sample_texts(run.model, run.tokenizer, sample_cfg, run.config.model.block_size, device,
                         seed=run.config.train.seed if seed is None else seed)
    typer.echo("\n\n---\n\n".join(texts))


@app.command()
@one_line_errors
def export(run_dir: Path = typer.Argument(..., help="a run directory"),
           out: Path = typer.Argument(..., help="the folder to write"),
           fmt: str = typer.Option("hf", "--format", help="hf: a transformers GPT2LMHeadModel folder with its tokenizer"),
           checkpoint: str = typer.Option("last", "--checkpoint", help="last, best or step-N"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists")) -> None:
    """Write a run as a model folder that transformers loads (AutoModelForCausalLM.from_pretrained)."""
    from lmforge.export import export_run
    from lmforge.run import load_run

    run = load_run(run_dir, checkpoint)
    path = export_run(run, out, fmt, overwrite)
    typer.echo(f"exported {run_dir} ({run.checkpoint.name}) to {path}")


score_app = typer.Typer(no_args_is_help=True, help="Score system outputs in files against references.")
app.add_typer(score_app, name="score")
HypLinesArg = typer.Argument(..., help="the system's output, one segment per line", show_default=False)
RefLinesArg = typer.Argument(..., help="the references, one per line, paired with the hypotheses by line number",
                             show_default=False)
SentencesOpt = typer.Option(False, "--sentences", help="also print each segment's score")
JsonOpt = typer.Option(False, "--json", help="print JSON")


def _print_score(score, as_json: bool) -> None:
    if score.warning:
        typer.echo(f"warning: {score.warning}", err=True)
    typer.echo(json.dumps(score.as_dict(), indent=2) if as_json else score.format())


@score_app.command("bleu")
@one_line_errors
def score_bleu(hyp: Path = HypLinesArg, ref: Path = RefLinesArg, sentences: bool = SentencesOpt,
               as_json: bool = JsonOpt) -> None:
    """Corpus BLEU, sacrebleu's defaults (13a tokenizer, exponential smoothing, case-sensitive)."""
    from lmforge.data.taskfiles import read_aligned_lines
    from lmforge.eval.text import sacrebleu_score

    _print_score(sacrebleu_score("bleu", *read_aligned_lines(hyp, ref), sentences), as_json)


@score_app.command("chrf")
@one_line_errors
def score_chrf(hyp: Path = HypLinesArg, ref: Path = RefLinesArg,
               plus: bool = typer.Option(False, "--plus", help="chrF++: word unigrams and bigrams too (word order 2)"),
               sentences: bool = SentencesOpt, as_json: bool = JsonOpt) -> None:
    """Corpus chrF (character 6-grams, beta 2), sacrebleu's defaults; chrF++ with --plus."""
    from lmforge.data.taskfiles import read_aligned_lines
    from lmforge.eval.text import sacrebleu_score

    _print_score(sacrebleu_score("chrf++" if plus else "chrf", *read_aligned_lines(hyp, ref), sentences), as_json)


@score_app.command("meteor")
@one_line_errors
def score_meteor(hyp: Path = HypLinesArg, ref: Path = RefLinesArg, sentences: bool = SentencesOpt,
                 as_json: bool = JsonOpt) -> None:
    """Mean sentence METEOR (NLTK, 0-1) with WordNet synonyms when installed (NLTK_DATA)."""
    from lmforge.data.taskfiles import read_aligned_lines
    from lmforge.eval.text import meteor

    _print_score(meteor(*read_aligned_lines(hyp, ref), sentences), as_json)


@score_app.command("entity-f1")
@one_line_errors
def score_entity_f1(hyp: Path = typer.Argument(..., help="predicted tags: CoNLL columns, token first and BIO tag last, a blank line between sentences", show_default=False),
                    ref: Path = typer.Argument(..., help="gold tags, same layout, same sentences and tokens", show_default=False),
                    as_json: bool = JsonOpt) -> None:
    """Entity-level precision, recall and F1: exact span and type (conlleval)."""
    from lmforge.data.taskfiles import read_tagged_pair
    from lmforge.eval.tasks import entity_f1, format_entity_f1

    result = entity_f1(*read_tagged_pair(hyp, ref))
    typer.echo(json.dumps(result, indent=2) if as_json else format_entity_f1(result))


@score_app.command("squad")
@one_line_errors
def score_squad(hyp: Path = typer.Argument(..., help="predictions JSON: {question id: answer text}", show_default=False),
                ref: Path = typer.Argument(..., help="the SQuAD v1.1 dataset JSON (e.g. dev-v1.1.json)", show_default=False),
                as_json: bool = JsonOpt) -> None:
    """SQuAD v1.1 exact match and F1 with the official answer normalisation."""
    from lmforge.data.taskfiles import read_squad
    from lmforge.eval.tasks import squad_scores

    result = squad_scores(*read_squad(hyp, ref))
    typer.echo(json.dumps(result, indent=2) if as_json else
               f"exact match {result['exact_match']:.2f}, F1 {result['f1']:.2f} ({result['questions']:,} questions, "
               f"{result['unanswered']:,} without a prediction)")


SourceArg = typer.Argument(..., help="the corpus: a file, folder or glob (.txt/.jsonl/.csv/.tsv/.parquet, optionally .gz)")
OutputArg = typer.Argument(..., help="where it goes: .jsonl (the text and the record's other fields) or .txt "
                           "(documents separated by a blank line); the report goes beside it")
StageOverridesArg = typer.Argument(None, show_default=False, help="overrides of the stage's section (numbers=zero, "
                                   "quality.min_words=20) or of data (data.field=review, data.txt_documents=line)")
WorkersOpt = typer.Option(None, "--workers", min=1, help="processes (default: all cores)")
PartitionsOpt = typer.Option(1, "--num-partitions", min=1, help="split the input into this many contiguous slices")
PartitionOpt = typer.Option(0, "--partition", min=0, help="process only this slice (0-based); outputs concatenate")


def _stage_config(section: str, overrides: list[str] | None, first: list[str]):
    """The Config from stage overrides; a key that names no top-level section belongs to `section`."""
    from lmforge.config import Config, load_config

    def scoped(item: str) -> str:
        return item if item.split(".", 1)[0] in Config.model_fields else f"{section}.{item}"

    return load_config(None, [*first, *map(scoped, overrides or [])])


@app.command("clean")
@one_line_errors
def clean_(source: str = SourceArg, output: Path = OutputArg, overrides: Optional[List[str]] = StageOverridesArg,
           preset: Optional[str] = typer.Option(None, "--preset", help="lm (html, unicode, whitespace) or classic (adds lowercase, stop words, punctuation, lemmas)"),
           steps: Optional[str] = typer.Option(None, "--steps", help="comma-separated steps, in order, instead of the preset's"),
           workers: Optional[int] = WorkersOpt, num_partitions: int = PartitionsOpt, partition: int = PartitionOpt,
           no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Clean a corpus step by step (see docs/cleaning.md); writes a JSON and markdown report beside the output."""
    from lmforge.config import CleanConfig
    from lmforge.text.pipeline import clean as run_clean

    first = ["clean.preset=" + preset] if preset else []
    first += ["clean.steps=" + steps] if steps else []
    cfg = _stage_config("clean", overrides, first)
    report = run_clean(source, output, cfg.clean or CleanConfig(), cfg.data, workers=workers,
                       partition=(partition, num_partitions), progress=not no_progress)
    typer.echo(report.summary())


@app.command("curate")
@one_line_errors
def curate_(source: str = SourceArg, output: Path = OutputArg, overrides: Optional[List[str]] = StageOverridesArg,
            clean_preset: Optional[str] = typer.Option(None, "--clean", help="clean with this preset (lm or classic) first, in the same pass"),
            workers: Optional[int] = WorkersOpt, num_partitions: int = PartitionsOpt, partition: int = PartitionOpt,
            no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Filter (language, quality), deduplicate (exact, MinHash), balance and split a corpus; writes a report."""
    from lmforge.config import CurateConfig
    from lmforge.text.pipeline import curate as run_curate

    cfg = _stage_config("curate", overrides, ["clean.preset=" + clean_preset] if clean_preset else [])
    report = run_curate(source, output, cfg.curate or CurateConfig(), cfg.data, clean=cfg.clean, workers=workers,
                        partition=(partition, num_partitions), progress=not no_progress)
    typer.echo(report.summary())


@app.command("augment")
@one_line_errors
def augment_(source: str = SourceArg,
             output: Path = typer.Argument(..., help="where it goes (.jsonl): each original (with an id) and its copies, "
                                           "which carry the original's fields, augmented_from and augment_method; the report goes beside it"),
             overrides: Optional[List[str]] = typer.Argument(None, show_default=False, help="overrides of the augment section "
                                                             "(alpha=0.2, summary=lead, top_k=5) or of data (data.field=sentence)"),
             method: Optional[str] = field_option(AugmentConfig, "method", "--method"),
             model: Optional[str] = field_option(AugmentConfig, "model", "--model"),
             back_model: Optional[str] = field_option(AugmentConfig, "back_model", "--back-model"),
             copies: Optional[int] = field_option(AugmentConfig, "copies", "--copies"),
             fraction: Optional[float] = field_option(AugmentConfig, "fraction", "--fraction"),
             seed: Optional[int] = field_option(AugmentConfig, "seed", "--seed"),
             val_fraction: Optional[float] = field_option(AugmentConfig, "val_fraction", "--val-fraction"),
             test_fraction: Optional[float] = field_option(AugmentConfig, "test_fraction", "--test-fraction"),
             no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar")) -> None:
    """Augment a corpus with synthetic copies of its examples (see docs/augmentation.md); writes a report."""
    from lmforge.augment import augment as run_augment

    options = {"method": method, "model": model, "back_model": back_model, "copies": copies, "fraction": fraction,
               "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    first = ["augment.method=eda"] + [f"augment.{k}={v}" for k, v in options.items() if v is not None]
    cfg = _stage_config("augment", overrides, first)
    report = run_augment(source, output, cfg.augment or AugmentConfig(), cfg.data, progress=not no_progress)
    for warning in report.extra["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    extra = report.extra
    typer.echo(f"{report.summary()}\n{extra['examples_augmented']:,} of {extra['examples_eligible']:,} training "
               f"examples augmented, {extra['copies_written']:,} copies written of {extra['copies_requested']:,} "
               f"requested ({report.steps[report.settings['augment']['method']].removed:,} dropped as unchanged, "
               f"duplicate or empty)")
