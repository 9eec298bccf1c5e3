"""The command line end to end, and every bad input as a one-line error with exit status 2."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.errors import ConfigError
from lmforge.train.distributed import fast_bf16_matmul

CONFIGS = Path(__file__).parents[1] / "configs"
TINY = ["tokenizer.kind=char", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
        "train.micro_batch_size=4", "train.max_steps=6", "train.eval_interval=3", "train.tensorboard=false",
        "schedule.warmup_steps=1", "sample.num_samples=1", "sample.max_new_tokens=10"]


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def data_args(corpus, tmp_path):
    return [f"data.path={corpus}", f"data.prepared_dir={tmp_path / 'prepared'}", *TINY]


@pytest.fixture
def trained(tiny_corpus, tmp_path):
    code, out, err = run("train", *data_args(tiny_corpus, tmp_path), "--run-dir", tmp_path / "run", "--no-progress")
    assert code == 0, err
    return tmp_path / "run"


def test_train_eval_generate(trained, tiny_corpus, tmp_path):
    code, out, _ = run("eval", trained, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["data"] == "validation split" and result["checkpoint"] == "step-6"
    assert result["perplexity"] > 1 and 0 < result["bits_per_byte"] < 8
    assert_one_line_error(*run("eval", trained, "--split", "test")[::2], "no split 'test'")
    assert_one_line_error(*run("eval", trained, "--dtype", "fp16")[::2], "--dtype 'fp16': expected")
    if not torch.cuda.is_available():
        # as the run trained: a GPT with train.dtype auto computes in bf16 where the CPU multiplies bf16
        trained_in = "bfloat16" if fast_bf16_matmul(torch.device("cpu")) else "float32"
        assert (result["device"], result["dtype"]) == ("cpu", trained_in)
        assert_one_line_error(*run("eval", trained, "--device", "cuda")[::2], "--device cuda: no CUDA device")
    code, out, _ = run("eval", trained, "--data", tiny_corpus)
    assert code == 0 and "perplexity" in out and "bits/byte" in out
    code, out, _ = run("generate", trained, "--prompt", "the cat", "--max-new-tokens", 15, "--seed", 1)
    assert code == 0 and out.startswith("the cat")
    assert run("generate", trained, "--prompt", "the cat", "--max-new-tokens", 15, "--seed", 1)[1] == out



def test_eval_of_a_run_whose_prepared_data_is_gone(trained, tmp_path):
    shutil.rmtree(tmp_path / "prepared")
    assert_one_line_error(*run("eval", trained)[::2], f"{tmp_path / 'prepared'}: the run's prepared data is missing")
    assert not (tmp_path / "prepared").exists()
    code, _, err = run("prepare", trained / "config.yaml", "--no-progress")  # what the error says to do
    assert code == 0, err
    assert run("eval", trained)[0] == 0

def test_resume_from_the_cli(trained):
    code, out, err = run("train", "--resume", trained, "train.max_steps=9", "--no-progress")
    assert code == 0, err
    assert (trained / "checkpoints" / "step-9").is_dir()


def test_config_show_and_prepare(tiny_corpus, tmp_path):
    code, out, _ = run("config", "show", CONFIGS / "shakespeare-char-baby.yaml", "model.n_layer=6")
    assert code == 0 and "n_layer: 6  # transformer blocks" in out
    code, out, _ = run("prepare", *data_args(tiny_corpus, tmp_path), "--no-progress")
    assert code == 0 and "tokens" in out and (tmp_path / "prepared" / "meta.json").is_file()


def assert_one_line_error(code, err, needle):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_bad_config_key_and_type(tiny_corpus, tmp_path):
    assert_one_line_error(*run("train", "model.n_layr=2")[::2], "model.n_layr: unknown key")
    assert_one_line_error(*run("train", "train.max_steps=lots")[::2], "train.max_steps")


def test_missing_and_empty_corpus_write_nothing(tmp_path):
    base = [f"data.prepared_dir={tmp_path / 'prepared'}", *TINY, "--run-dir", tmp_path / "run"]
    assert_one_line_error(*run("train", f"data.path={tmp_path / 'nope.txt'}", *base)[::2], "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_one_line_error(*run("train", f"data.path={empty}", *base)[::2], "empty")
    assert not (tmp_path / "run").exists() and not (tmp_path / "prepared").exists()


def test_corpus_shorter_than_a_block(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abcdefghij" * 5)
    code, _, err = run("train", f"data.path={short}", f"data.prepared_dir={tmp_path / 'p'}", *TINY,
                       "model.block_size=64", "--run-dir", tmp_path / "run")
    assert_one_line_error(code, err, "block_size=64")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_undecodable_bytes_are_replaced_not_fatal(tmp_path, tiny_corpus):
    dirty = tmp_path / "dirty.txt"
    dirty.write_bytes(tiny_corpus.read_bytes() + b"\nbad \xff\xfe bytes\n")
    code, _, err = run("train", f"data.path={dirty}", f"data.prepared_dir={tmp_path / 'p'}", *TINY,
                       "--run-dir", tmp_path / "run", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "p" / "meta.json").read_text())["replaced_chars"] >= 1


def test_not_a_run_directory(tmp_path):
    assert_one_line_error(*run("eval", tmp_path)[::2], "not a run directory")
    assert_one_line_error(*run("generate", tmp_path / "missing")[::2], "not a run directory")
    assert_one_line_error(*run("train", "--resume", tmp_path)[::2], "not a run directory")


def test_truncated_and_foreign_checkpoints(trained, tiny_corpus, tmp_path):
    weights = trained / "checkpoints" / "step-6" / "model.safetensors"
    other = tmp_path / "other"
    code, _, err = run("train", *data_args(tiny_corpus, tmp_path), "model.n_embd=32", "--run-dir", other,
                       "--no-progress")
    assert code == 0, err
    foreign = (other / "checkpoints" / "step-6" / "model.safetensors").read_bytes()
    weights.write_bytes(foreign)
    assert_one_line_error(*run("eval", trained)[::2], "model.safetensors")
    weights.write_bytes(foreign[: len(foreign) // 2])
    assert_one_line_error(*run("eval", trained)[::2], "truncated or foreign checkpoint")
    assert_one_line_error(*run("eval", trained, "--checkpoint", "step-99")[::2], "no checkpoint 'step-99'")


def test_real_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lmforge", "train", f"data.path={tmp_path / 'missing.txt'}"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_generate_takes_the_runs_sampling_settings_unless_a_flag_changes_one(trained):
    from lmforge.config import load_config

    saved = load_config(trained / "config.yaml").sample.num_samples
    code, out, _ = run("generate", trained, "--prompt", "the", "--max-new-tokens", 5)
    assert code == 0 and out.count("\n---\n") == saved - 1  # as many samples as the run's sample section says
    code, out, _ = run("generate", trained, "--prompt", "the", "--max-new-tokens", 5, "--num-samples", saved + 2)
    assert code == 0 and out.count("\n---\n") == saved + 1
    assert_one_line_error(*run("generate", trained, "--top-k", 0)[::2], "sample.top_k")
    assert_one_line_error(*run("generate", trained, "--temperature", -1)[::2], "sample.temperature")


def test_the_python_twin_of_eval_gives_what_eval_prints(trained):
    from lmforge.eval import evaluate

    code, out, _ = run("eval", trained, "--json", "--stride", 4)
    drop = {"seconds", "tokens_per_s"}
    twin = evaluate(trained, stride=4)
    assert code == 0 and {k: v for k, v in twin.items() if k not in drop} == \
        {k: v for k, v in json.loads(out).items() if k not in drop}
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        evaluate(trained, device="tpu")


def test_eval_takes_the_runs_eval_settings_unless_an_option_changes_one(trained):
    from lmforge.eval import evaluate

    drop = {"seconds", "tokens_per_s"}
    strided = {k: v for k, v in evaluate(trained, stride=4).items() if k not in drop}
    saved = yaml.safe_load((trained / "config.yaml").read_text())
    saved["eval"].update(stride=4, metrics=True)
    (trained / "config.yaml").write_text(yaml.safe_dump(saved))
    code, out, _ = run("eval", trained, "--json", "--no-metrics")
    assert code == 0 and {k: v for k, v in json.loads(out).items() if k not in drop} == strided
    assert "generation" in json.loads(run("eval", trained, "--json", "--samples", 2)[1])
    assert_one_line_error(*run("eval", trained, "--samples", 0)[::2], "eval.samples")
    with pytest.raises(ConfigError, match="eval.batch_size"):
        evaluate(trained, batch_size=0)


def test_every_option_made_from_a_config_field_has_its_description_as_help():
    from typer.main import get_command

    from lmforge.config import AugmentConfig, EvalConfig, SampleConfig

    commands = get_command(app).commands
    checked = 0
    for verb, section in [("eval", EvalConfig), ("generate", SampleConfig), ("augment", AugmentConfig)]:
        for param in commands[verb].params:
            if param.name in section.model_fields:
                assert param.help.startswith(section.model_fields[param.name].description + " (default: "), (verb, param.name)
                assert param.default is None, (verb, param.name)  # left out = the run's or the section's value
                checked += 1
    assert checked == 7 + 6 + 8
