"""Architectures side by side: every family trained on the same data and tokenizer under the same budget.

Each model trains in its own process (so its peak memory is its own), from the recipe with `model`
replaced by that family's defaults (the recipe's own model is used for its family). A wall-clock budget is
turned into a step count by timing a short probe run, so every learning-rate schedule still completes;
the budget is also a hard stop. Results: bakeoff.md, bakeoff.json, bakeoff.png (validation loss against
wall time) and report.html (lmforge report: the table and every family's curves) in the output directory.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lmforge.config import Config, save_config, validate_config
from lmforge.errors import ConfigError, LmforgeError
from lmforge.io import atomic_path, atomic_write_json, atomic_write_text
from lmforge.report import write_report
from lmforge.models import family_section

FAMILIES = ("ffnn", "rnn", "lstm", "gru", "gpt")
PROBE_STEPS = 20
# --resume keeps a finished row only if it was trained the way this version trains: bump this when a change
# alters that (2: each schedule spans the model's own steps)
ROW_VERSION = 2


@dataclass(frozen=True)
class Budget:
    seconds: float | None = None
    tokens: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Budget":
        """`90s`, `10m`, `1.5h` (wall clock) or `500k`, `2M`, `1G` followed by `tok` (tokens)."""
        m = re.fullmatch(r"\s*([\d.]+)\s*(s|m|min|h|k?tok|Mtok|Gtok|tok)\s*", text)
        if not m:
            raise ConfigError(f"--budget {text!r}: expected a time (90s, 10m, 1h) or tokens (500ktok, 2Mtok)")
        value, unit = float(m.group(1)), m.group(2)
        if unit.endswith("tok"):
            scale = {"tok": 1, "ktok": 1e3, "Mtok": 1e6, "Gtok": 1e9}[unit]
            return cls(tokens=int(value * scale))
        return cls(seconds=value * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit])


def family_config(cfg: Config, family: str) -> Config:
    """The recipe with its model replaced by `family`'s defaults (or kept, when it is that family)."""
    if family not in FAMILIES:
        raise ConfigError(f"--models: unknown architecture {family!r} (known: {', '.join(FAMILIES)})")
    tree = cfg.model_dump(mode="json")
    tree["name"] = f"{cfg.name}-{family}"
    tree["model"] = {**family_section(family, cfg.model), "vocab_size": None}
    return validate_config(tree, f"--models {family}")


def default_families(cfg: Config) -> list[str]:
    """The families that can train on this recipe: all of them, but for a mixture of data.sources only those
    that draw random windows (a recurrent model reads its split in order). When none can, all of them, so that
    the first one's error says why."""
    fits = []
    for family in FAMILIES:
        try:
            family_config(cfg, family)
        except ConfigError:
            continue
        fits.append(family)
    return fits or list(FAMILIES)


def _dies_with(parent: int):
    """On Linux, what makes a child process get SIGKILL when `parent` dies: a training orphaned by a killed
    bake-off would go on writing (and holding the lock of) the run directory that `--resume` trains again."""
    if sys.platform != "linux":
        return None

    def arm() -> None:  # in the child, between fork and exec
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
    return arm


def _train_process(recipe: Path, run_dir: Path, overrides: list[str], progress: bool) -> None:
    cmd = [sys.executable, "-m", "lmforge", "train", str(recipe), *overrides, "--run-dir", str(run_dir),
           "--overwrite", *([] if progress else ["--no-progress"])]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=None if progress else subprocess.PIPE, text=True,
                          preexec_fn=_dies_with(os.getpid()))
    if proc.returncode:
        detail = (proc.stderr or "").strip().splitlines()[-1:] or ["see the output above"]
        raise LmforgeError(f"bakeoff: training {run_dir.name} failed: {detail[0]}")


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _steps_for(cfg: Config, budget: Budget, recipe: Path, run_dir: Path, progress: bool) -> int:
    tc = cfg.train
    tokens_per_step = tc.micro_batch_size * tc.grad_accum_steps * cfg.model.block_size
    if budget.tokens is not None:
        return max(budget.tokens // tokens_per_step, 1)
    probe = run_dir.with_name(run_dir.name + "-probe")
    _train_process(recipe, probe, [f"train.max_steps={PROBE_STEPS}", f"train.eval_interval={PROBE_STEPS}",
                                   "train.log_interval=1", "train.eval_max_windows=1", "sample.num_samples=0",
                                   "train.tensorboard=false", "train.loggers=[jsonl]", "train.report=false"],
                   progress)  # a timing probe is no run for the trackers
    rates = [r["tokens_per_s"] for r in _records(probe) if "tokens_per_s" in r][PROBE_STEPS // 4:]
    # leave a little of the budget for evaluations and start-up
    return max(int(0.9 * budget.seconds * statistics.median(rates) / tokens_per_step), 1)


def _same_run(saved: dict | None, key: dict) -> bool:
    """Whether a finished row was trained with this recipe and budget by this version of the bake-off. Options
    that a later lmforge added at their defaults (which keep the old behaviour) do not count as a change; any
    set value does."""
    if not saved or saved.get("version", 1) != key["version"] or saved.get("budget") != key["budget"]:
        return False
    try:
        before = Config.model_validate(saved["recipe"])
    except ValueError:  # an option since removed or renamed
        return False
    return before.model_dump(mode="json", exclude_defaults=True) == \
        Config.model_validate(key["recipe"]).model_dump(mode="json", exclude_defaults=True)


def bakeoff(cfg: Config, families: list[str], budget: Budget, out_dir: str | Path, progress: bool = True,
            resume: bool = False) -> list[dict]:
    """Train each family in `families` under `budget`; write and return the comparison table.

    With `resume`, a family whose run finished in an earlier bake-off with the same recipe and budget is not
    trained again: an interrupted bake-off loses only the model it was training."""
    from lmforge.prepare import ensure_prepared

    out_dir = Path(out_dir)
    configs = [family_config(cfg, f) for f in families]  # validates every name before any training
    prepared = ensure_prepared(cfg, progress=progress)  # once: every family shares the shards and tokenizer
    has_test = "test" in json.loads((prepared / "meta.json").read_text())["splits"]
    rows = []
    for family, fcfg in zip(families, configs):
        run_dir = out_dir / family
        key = {"version": ROW_VERSION, "recipe": fcfg.model_dump(mode="json"), "budget": [budget.seconds, budget.tokens]}
        finished = run_dir / "bakeoff_row.json"
        saved = json.loads(finished.read_text()) if resume and finished.is_file() else None
        if saved and _same_run(saved.get("key"), key):
            rows.append(saved["row"])
            continue
        recipe = out_dir / "recipes" / f"{family}.yaml"
        save_config(fcfg, recipe)
        steps = _steps_for(fcfg, budget, recipe, run_dir, progress)
        # the rate schedule spans the steps the budget allows, whatever the recipe's own length
        overrides = [f"train.max_steps={steps}", f"schedule.decay_steps={steps}", "sample.num_samples=0"]
        if budget.seconds is not None:
            overrides.append(f"train.time_budget_s={budget.seconds}")
        started = time.perf_counter()
        _train_process(recipe, run_dir, overrides, progress)
        row = run_row(family, run_dir, time.perf_counter() - started, has_test)
        atomic_write_json(finished, {"key": key, "row": row})
        rows.append(row)
    _write_reports(rows, cfg, budget, out_dir)
    write_report(out_dir)
    return rows


def run_row(family: str, run_dir: Path, wall: float, has_test: bool) -> dict:
    """One family's line of the table, from its finished run directory."""
    from lmforge.eval.lm import evaluate_run
    from lmforge.run import load_run

    records = _records(run_dir)
    run = load_run(run_dir, "best")
    val = evaluate_run(run)
    row = {"model": family, "parameters": sum(p.numel() for p in run.model.parameters()),
           "steps": max(r["step"] for r in records),
           "tokens_per_s": statistics.median([r["tokens_per_s"] for r in records if "tokens_per_s" in r]),
           "peak_memory_mib": next(r["peak_memory_mib"] for r in records if "peak_memory_mib" in r),
           "val_loss": val["loss"], "val_perplexity": val["perplexity"],
           "val_bits_per_byte": val.get("bits_per_byte"), "wall_s": wall,
           "curve": [(r["elapsed_s"], r["val_loss"]) for r in records if "val_loss" in r]}
    if val.get("sources"):  # a mixture of data.sources: each source's own validation perplexity
        row["source_val_perplexity"] = {name: m["perplexity"] for name, m in val["sources"].items()}
    if has_test:
        test = evaluate_run(run, split="test")
        row.update(test_perplexity=test["perplexity"], test_bits_per_byte=test.get("bits_per_byte"))
    return row


def _write_reports(rows: list[dict], cfg: Config, budget: Budget, out_dir: Path) -> None:
    what = f"{budget.seconds:.0f} s" if budget.seconds is not None else f"{budget.tokens:,} tokens"
    sources = list(next((r["source_val_perplexity"] for r in rows if "source_val_perplexity" in r), {}))
    header = ["model", "parameters", "steps", "tokens/s", "peak MiB", "val ppl", *(f"{n} val ppl" for n in sources),
              "val bits/byte", "test ppl", "wall s"]
    lines = [f"# Bake-off: {cfg.name}, {what} per model", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for r in rows:
        test = f"{r['test_perplexity']:.2f}" if "test_perplexity" in r else "–"
        bpb = f"{r['val_bits_per_byte']:.4f}" if r.get("val_bits_per_byte") else "–"
        per_source = "".join(f"{r.get('source_val_perplexity', {}).get(n, float('nan')):.2f} | " for n in sources)
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['steps']:,} | {r['tokens_per_s']:,.0f} | "
                     f"{r['peak_memory_mib']:.0f} | {r['val_perplexity']:.2f} | {per_source}{bpb} | {test} | "
                     f"{r['wall_s']:.0f} |")
    atomic_write_text(out_dir / "bakeoff.md", "\n".join(lines) + "\n")
    atomic_write_json(out_dir / "bakeoff.json", {"recipe": cfg.name, "budget": what, "models": rows})

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(xs, ys, marker="o", markersize=3, label=r["model"])
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(f"{cfg.name}: validation loss against time")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_dir / "bakeoff.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
