"""Every bad task file (badtasks.py) where each verb reads one: as finetune's training data and its validation
data, as eval --data and as predict --input of a fine-tuned run. Exit status 2, one line naming the file, no
traceback, and nothing written that looks finished: no run directory, no predictions, no new evals.jsonl line.

A label or tag that training never saw is not an error in evaluation data (docs/finetuning.md): it is counted,
named in a warning and scored as wrong. Predict reads no labels, so damage to labels only is no damage there."""

import shutil
from pathlib import Path

import pytest

from badtasks import GOOD, BadTask, task_files, write
from cli_checks import assert_one_line_error, invoke, leftovers
from finetune.ft_data import save_tiny_bert

FAST = ["train.num_threads=1", "train.tensorboard=false", "schedule.name=constant", "schedule.warmup_steps=0",
        "finetune.epochs=1", "finetune.batch_size=8", "finetune.text_column=sentence", "finetune.max_length=48"]
TASK_OPTIONS = {"classify": [], "tag": ["finetune.task=tag"], "qa": ["finetune.task=qa", "finetune.doc_stride=8"]}
GOOD_FILE = {"classify": "tsv", "tag": "conll", "qa": "json"}
PLACES = ["train", "val", "eval", "predict"]


def applies(bad: BadTask, place: str) -> bool:
    if place == "predict":
        return not bad.labels
    return not (place == "train" and bad.unseen)  # a new label in training data is just one more class


CASES = [(place, bad) for bad in task_files() for place in PLACES if applies(bad, place)]


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


def good_file(task: str, folder: Path) -> Path:
    fmt = GOOD_FILE[task]
    path = folder / f"good.{fmt}"
    path.write_bytes(GOOD[fmt]())
    return path


def finetune_argv(bert: Path, task: str, train: Path, val: Path | None, run: Path) -> list:
    return ["finetune", f"finetune.backbone={bert}", f"finetune.train_path={train}", *FAST, *TASK_OPTIONS[task],
            *([f"finetune.val_path={val}"] if val else []), "--run-dir", run, "--no-progress"]


@pytest.fixture(scope="module")
def task_runs(bert, tmp_path_factory) -> dict[str, Path]:
    """One fine-tuned run per task, trained on its good file."""
    root = tmp_path_factory.mktemp("tasks")
    runs = {}
    for task in TASK_OPTIONS:
        code, _, err = invoke(*finetune_argv(bert, task, good_file(task, root), None, root / task))
        assert code == 0, err
        runs[task] = root / task
    return runs


def read_bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


@pytest.mark.parametrize("place,bad", CASES, ids=[f"{place}:{bad.id}" for place, bad in CASES])
def test_a_bad_task_file_is_one_line_and_writes_nothing(place, bad, bert, task_runs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    path = write(bad, src)
    run, predictions = tmp_path / "run", tmp_path / "predictions.out"
    if place in ("eval", "predict"):
        run = Path(shutil.copytree(task_runs[bad.task], run))
    evals = read_bytes(run / "evals.jsonl")
    if place == "train":
        argv = finetune_argv(bert, bad.task, path, None, run)
    elif place == "val":
        argv = finetune_argv(bert, bad.task, good_file(bad.task, src), path, run)
    elif place == "eval":
        argv = ["eval", run, "--data", path]
    else:
        argv = ["predict", run, "--input", path, "--output", predictions]
    code, out, err = invoke(*argv)
    if bad.unseen:  # in evaluation data: counted, warned about (in the run's log, on eval's stderr), scored wrong
        assert code == 0, err
        assert f"warning: {path}: " in out + err and bad.needle in out + err, out + err
        return
    assert_one_line_error(code, err, str(path))
    assert any(n in err for n in ((bad.needle,) if isinstance(bad.needle, str) else bad.needle)), err
    if place in ("train", "val"):
        assert not run.exists(), sorted(p.name for p in run.iterdir())
    assert read_bytes(run / "evals.jsonl") == evals and not predictions.exists() and leftovers(tmp_path) == []
