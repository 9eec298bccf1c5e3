"""`lmforge export --format hf`: transformers loads the folder on its own and computes what lmforge computes."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import RNNConfig
from lmforge.data.loader import eval_batches
from lmforge.errors import ConfigError
from lmforge.eval.lm import eval_tokens, evaluate_run
from lmforge.generate import generate
from lmforge.models.hf import check_gpt2_compatible
from lmforge.run import load_run


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def trained(tiny_overrides, tmp_path):
    def train(*extra: str):
        run_dir = tmp_path / "run"
        code, _, err = run("train", *tiny_overrides, "train.max_steps=10", *extra, "--run-dir", run_dir,
                           "--no-progress", "--overwrite")
        assert code == 0, err
        return run_dir
    return train


@pytest.mark.parametrize("extra", [[], ["model.bias=true", "model.tie_embeddings=false"]])
def test_exported_gpt_computes_the_same_in_transformers(trained, tmp_path, extra):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, out = trained(*extra), tmp_path / "hf"
    code, stdout, err = run("export", run_dir, out, "--format", "hf")
    assert code == 0 and "exported" in stdout, err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json", "model.safetensors",
                                                     "tokenizer.json", "tokenizer_config.json"]
    ours = load_run(run_dir)
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(hf).__name__ == "GPT2LMHeadModel"
    assert hf.config.eos_token_id == hf.config.bos_token_id == ours.tokenizer.eod_id == tokenizer.eos_token_id

    text = "the cat sat on a mat"
    ids = tokenizer(text)["input_ids"]
    assert ids == ours.tokenizer.encode(text) and tokenizer.decode(ids) == text
    tokens = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ours.model(tokens)[0], rtol=0, atol=1e-5)

    # perplexity over the validation split, the same windows scored by transformers' model
    segments, _, _ = eval_tokens(ours)
    loss_sum = count = 0
    with torch.no_grad():
        for x, y in eval_batches(segments, ours.config.model.block_size, 16):
            loss_sum += F.cross_entropy(hf(x).logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    assert math.exp(loss_sum / count) == pytest.approx(evaluate_run(ours)["perplexity"], rel=1e-5)

    prompt = ours.tokenizer.encode("the dog")
    greedy = hf.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=None)
    assert greedy[0, len(prompt):].tolist() == generate(ours.model, prompt, 10, temperature=0,
                                                        block_size=ours.config.model.block_size)


def test_options_gpt2_lacks_block_the_export_in_one_line(trained, tmp_path):
    run_dir = trained("model.pos=rotary", "model.mlp=swiglu", "model.logit_softcap=30", "train.max_steps=2")
    code, _, err = run("export", run_dir, tmp_path / "hf")
    assert code == 2 and err.strip() == (
        f"error: {run_dir}: cannot export as GPT-2: model.pos=rotary, model.mlp=swiglu, model.logit_softcap=30.0 "
        "(GPT-2 needs arch gpt, pos learned, norm layernorm, mlp gelu, no qk_norm, no logit_softcap)")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(ConfigError, match=r"^cannot export as GPT-2: model.arch=lstm \(GPT-2 needs arch gpt\)$"):
        check_gpt2_compatible(RNNConfig())


def test_export_never_overwrites_by_accident(trained, tmp_path):
    run_dir, out = trained(), tmp_path / "hf"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = run("export", run_dir, out)
    assert code == 2 and "already exists; choose a new folder or pass --overwrite" in err
    assert (out / "mine.txt").read_text() == "keep me"
    assert run("export", run_dir, out, "--overwrite")[0] == 0
    assert json.loads((out / "config.json").read_text())["architectures"] == ["GPT2LMHeadModel"]
    assert not (out / "mine.txt").exists() and not list(tmp_path.glob(".hf.tmp-*"))
    code, _, err = run("export", run_dir, tmp_path / "x", "--format", "onnx")
    assert code == 2 and "--format 'onnx': unknown (known: hf)" in err
