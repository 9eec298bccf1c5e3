"""Every file of a run directory and of its prepared data, damaged every way (missing, empty, truncated, a
flipped bit, garbage, the same file of another run), through every verb that reads it: refused in one line
naming the file, exit status 2, no traceback. A resume may instead rebuild what it can (prepared data whose
meta.json or shard size is wrong is prepared again, a metrics line it cannot read is dropped), but then it
must end with exactly the weights of a resume of the undamaged run."""

import random
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from cli_checks import TINY, assert_one_line_error, invoke

FILES = {  # name -> where, relative to the run's parent folder (run/ and prepared/ side by side)
    "config.yaml": "run/config.yaml",
    "tokenizer.json": "run/tokenizer.json",
    "model.safetensors": "run/checkpoints/step-4/model.safetensors",
    "optimizer.pt": "run/checkpoints/step-4/optimizer.pt",
    "state.json": "run/checkpoints/step-4/state.json",
    "metrics.jsonl": "run/metrics.jsonl",
    "meta.json": "prepared/meta.json",
    "shard": "prepared/tokens-00000.bin",
    "prepared tokenizer.json": "prepared/tokenizer.json",
}
READS = {  # verb -> the files it reads
    "eval": ["config.yaml", "tokenizer.json", "model.safetensors", "state.json", "meta.json", "shard",
             "prepared tokenizer.json"],
    "generate": ["config.yaml", "tokenizer.json", "model.safetensors", "state.json"],
    "export": ["config.yaml", "tokenizer.json", "model.safetensors", "state.json"],
    "resume": ["config.yaml", "model.safetensors", "optimizer.pt", "state.json", "metrics.jsonl", "meta.json",
               "shard", "prepared tokenizer.json"],
    "report": ["config.yaml", "metrics.jsonl"],
}
TEXT = {"config.yaml", "tokenizer.json", "state.json", "metrics.jsonl", "meta.json", "prepared tokenizer.json"}


def damage(path: Path, how: str, foreign: Path) -> None:
    data = path.read_bytes()
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flip":  # in the second half: past a safetensors header, inside the tensors
        at = random.Random(len(data)).randrange(len(data) // 2, len(data))
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:])
    elif how == "garbage":
        path.write_bytes(random.Random(1).randbytes(max(len(data), 64)))
    elif how == "foreign":
        path.write_bytes(foreign.read_bytes())


DAMAGE = ["missing", "empty", "truncated", "bit-flip", "garbage", "foreign"]
# a flipped bit in a text file may leave it valid (a digit in a comment); only hashed files must notice
CASES = [(verb, name, how) for verb, names in READS.items() for name in names for how in DAMAGE
         if not (how == "bit-flip" and name in TEXT) and not (how == "foreign" and name == "metrics.jsonl")]


@pytest.fixture(scope="module")
def other_run(tmp_path_factory, tiny_corpus) -> Path:
    """Another 4-step run, 32 wide, on the corpus upper-cased and its lines reversed: every file of it is foreign to
    trained_run."""
    root = tmp_path_factory.mktemp("other")
    corpus = root / "upper.txt"
    corpus.write_text("\n".join(reversed(tiny_corpus.read_text().upper().splitlines())))
    code, _, err = invoke("train", f"data.path={corpus}", f"data.prepared_dir={root / 'prepared'}", *TINY,
                          "model.n_embd=32", "--run-dir", root / "run", "--no-progress")
    assert code == 0, err
    return root


def copy_of(trained_run: Path, into: Path) -> Path:
    """The run and its prepared data copied into `into`, the copy's config pointing at its own prepared data."""
    shutil.copytree(trained_run, into / "run")
    shutil.copytree(trained_run.parent / "prepared", into / "prepared")
    config = yaml.safe_load((into / "run" / "config.yaml").read_text())
    config["data"]["prepared_dir"] = str(into / "prepared")
    (into / "run" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return into / "run"


def argv(verb: str, run: Path, out: Path) -> list:
    return {"eval": ["eval", run], "generate": ["generate", run, "--prompt", "the", "--max-new-tokens", "5"],
            "export": ["export", run, out / "exported"],
            "resume": ["train", "--resume", run, "train.max_steps=6", "--no-progress"],
            "report": ["report", run, "--out", out / "report.html"]}[verb]


@pytest.fixture(scope="module")
def resumed_weights(trained_run, tmp_path_factory):
    """The weights a resume of the undamaged run to step 6 ends with."""
    run = copy_of(trained_run, tmp_path_factory.mktemp("clean-resume"))
    code, _, err = invoke(*argv("resume", run, run.parent))
    assert code == 0, err
    return load_file(str(run / "checkpoints" / "step-6" / "model.safetensors"))


@pytest.mark.parametrize("verb,name,how", CASES, ids=[f"{v}:{n}/{h}" for v, n, h in CASES])
def test_a_damaged_run_file_is_refused_in_one_line(verb, name, how, trained_run, other_run, resumed_weights,
                                                    tmp_path):
    run = copy_of(trained_run, tmp_path / "copy")
    path = tmp_path / "copy" / FILES[name]
    damage(path, how, other_run / FILES[name])
    code, _, err = invoke(*argv(verb, run, tmp_path))
    if code == 0 and verb == "resume" and name in ("meta.json", "shard", "metrics.jsonl"):
        weights = load_file(str(run / "checkpoints" / "step-6" / "model.safetensors"))
        assert weights.keys() == resumed_weights.keys()
        assert all((weights[k] == resumed_weights[k]).all() for k in weights), "recovered, but not to the same run"
        return
    if verb == "report" and name == "metrics.jsonl":  # a report draws what it can read and names the rest
        assert code == 0, err
        assert ("left out" in (tmp_path / "report.html").read_text()) == (how in ("truncated", "garbage"))
        return
    # a file of the prepared data is named, or the folder with what to run (it is prepared again, not mended)
    # a checkpoint's files are checked against its state.json: which of them is wrong cannot be told apart
    if path.parent.name == "prepared":
        shown: tuple[str, ...] = (name, str(path.parent))
    elif path.parent.name.startswith("step-"):
        shown = (str(path.parent),)
    else:
        shown = (str(path.parent) if how == "missing" else str(path),)
    assert_one_line_error(code, err, "error: ")
    assert any(s in err for s in shown), err
    assert not (tmp_path / "exported").exists() and not (tmp_path / "report.html").exists()
