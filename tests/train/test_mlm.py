"""`lmforge train` with model.arch=encoder: the masked-LM objective learns, resumes bit for bit, and the run is
evaluated on masked tokens; it neither generates nor exports as a GPT."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import load_config
from lmforge.eval.lm import evaluate_run
from lmforge.run import load_run
from lmforge.train.trainer import train

ENCODER = ["model.arch=encoder", "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=32",
           "model.dropout=0.1", "tokenizer.kind=word", "tokenizer.vocab_size=64", "tokenizer.min_frequency=1",
           "train.num_threads=1", "optimizer.lr=3e-3"]


def test_masked_lm_training_learns_and_is_scored_on_masked_tokens(tiny_config, tmp_path):
    result = train(tiny_config(*ENCODER, "train.max_steps=40", "train.eval_interval=20"), tmp_path / "run",
                   progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in lines if "val_loss" in r]
    vocab = load_run(tmp_path / "run").tokenizer.vocab_size
    # from guessing uniformly (log of the vocabulary) towards the word frequencies of the random-word corpus
    assert val[1] < val[0] < 0.95 * math.log(vocab) and result.samples == []
    run = load_run(tmp_path / "run")
    assert run.tokenizer.mask_id is not None and run.config.tokenizer.mask_token
    # lmforge eval masks window by window with the training evaluations' seed: the same figure
    scored = evaluate_run(run, batch_size=3)
    assert scored["loss"] == pytest.approx(result.val_loss, rel=1e-5) and scored["data"].endswith("masked tokens")
    runner = CliRunner()
    for args, message in ((["generate", tmp_path / "run"], "does not generate text"),
                          (["export", tmp_path / "run", tmp_path / "hf"], "GPT-2 needs arch gpt"),
                          (["eval", tmp_path / "run", "--metrics"], "does not generate")):
        out = runner.invoke(app, [str(a) for a in args])
        assert out.exit_code == 2 and message in out.stderr, out.stderr


def test_masked_lm_training_resumes_bit_for_bit(tiny_config, tmp_path):
    common = [*ENCODER, "schedule.decay_steps=8", "train.eval_interval=4", "sample.num_samples=0"]
    whole = train(tiny_config(*common, "train.max_steps=8"), tmp_path / "whole", progress=False)
    train(tiny_config(*common, "train.max_steps=4"), tmp_path / "half", progress=False)
    cfg = load_config(tmp_path / "half" / "config.yaml", ["train.max_steps=8"])
    resumed = train(cfg, tmp_path / "half", resume=True, progress=False)
    a = load_file(whole.run_dir / "checkpoints/step-8/model.safetensors")
    b = load_file(resumed.run_dir / "checkpoints/step-8/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.val_loss == resumed.val_loss


def test_an_encoder_run_is_a_bidirectional_fine_tuning_backbone(tiny_config, tmp_path):
    from lmforge.errors import ConfigError
    from lmforge.finetune.backbones import load_backbone
    from lmforge.finetune.train import finetune

    train(tiny_config(*ENCODER, "train.max_steps=2", "train.eval_interval=2", "sample.num_samples=0"),
          tmp_path / "encoder", progress=False)
    backbone = load_backbone(tmp_path / "encoder", "classify")
    assert backbone.kind == "encoder" and not backbone.causal and len(backbone.layer_groups()) == 3
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"the cat sat {i}\t{'a' if i % 2 else 'b'}\n" for i in range(8)))
    cfg = load_config(None, ["finetune.task=classify", f"finetune.backbone={tmp_path / 'encoder'}",
                             f"finetune.train_path={data}", f"finetune.val_path={data}", "finetune.text_column=sentence",
                             "finetune.pooling=first", "finetune.max_length=16", "finetune.epochs=1",
                             "train.tensorboard=false", "train.num_threads=1"])
    result = finetune(cfg, tmp_path / "classifier", progress=False)
    assert {"accuracy", "loss"} <= set(result.metrics) and result.step == 1
    with pytest.raises(ConfigError, match="not a left-to-right LM"):
        load_backbone(tmp_path / "encoder", "lm")
