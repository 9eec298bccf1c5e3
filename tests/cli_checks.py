"""What every bad-input and fault test checks of the CLI: exit status 2, one line naming the culprit, nothing
left that looks finished."""

import re
from pathlib import Path

from typer.testing import CliRunner

from lmforge.cli import app

# a char GPT that trains 4 steps in a second, checkpointing at steps 2 and 4
TINY = ["tokenizer.kind=char", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
        "train.micro_batch_size=4", "train.max_steps=4", "train.eval_interval=2", "train.tensorboard=false",
        "schedule.warmup_steps=1", "sample.num_samples=1", "sample.max_new_tokens=8", "train.num_threads=1"]


def invoke(*args) -> tuple[int, str, str]:
    """`lmforge ARGS` in this process: (exit status, stdout, stderr). An exception that escaped the CLI (a bug,
    the traceback a user would see) is re-raised, so that the test fails with it."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err


TEMPORARY = re.compile(r"^\..+\.(tmp|old)-\d+$|^\.lmforge-")


def leftovers(root: Path) -> list[Path]:
    """Temporaries of atomic writes and scratch folders anywhere under root."""
    return sorted(p for p in Path(root).rglob("*") if TEMPORARY.match(p.name))


def live_processes() -> list[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, name) of every live process, from /proc; zombies are dead (nothing reaps
    them in some containers) and left out."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        fields = text[text.rindex(")") + 2:].split()
        if fields[0] != "Z":
            found.append((int(stat.parent.name), int(fields[1]), int(fields[2]),
                          text[text.index("(") + 1:text.rindex(")")]))
    return found
