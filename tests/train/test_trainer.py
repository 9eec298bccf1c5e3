"""The training loop: learning, exact gradient accumulation, bit-for-bit resume, run-directory contents."""

import json

import pytest
import torch
from safetensors.torch import load_file

from lmforge.config import load_config
from lmforge.errors import CheckpointError, ConfigError
from lmforge.train.optim import penalty
from lmforge.train.trainer import train


def test_training_learns_and_fills_the_run_directory(tiny_config, tmp_path):
    cfg = tiny_config("train.max_steps=60", "train.eval_interval=30", "train.tensorboard=true",
               "optimizer.lr=3e-3")
    result = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    assert [r["step"] for r in lines if "val_loss" in r] == [30, 60]
    assert {"lr", "tokens_per_s", "grad_norm"} <= set(lines[0])
    assert result.step == 60 and result.val_loss == pytest.approx([r for r in lines if "val_loss" in r][-1]["val_loss"])
    assert lines[-1]["peak_memory_mib"] > 0
    for name in ["config.yaml", "tokenizer.json", "samples.txt"]:
        assert (run / name).is_file()
    assert any((run / "tensorboard").iterdir())
    ckpt = run / "checkpoints" / "step-60"
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}
    assert load_config(run / "config.yaml").model.vocab_size is not None  # resolved from the tokenizer
    assert len(result.samples) == 1 and result.samples[0]


def test_gradient_accumulation_equals_a_larger_batch(tiny_config, tmp_path):
    big = train(tiny_config("train.micro_batch_size=8", "train.max_steps=3", "sample.num_samples=0"),
                tmp_path / "big", progress=False)
    acc = train(tiny_config("train.micro_batch_size=2", "train.grad_accum_steps=4", "train.max_steps=3",
                     "sample.num_samples=0"), tmp_path / "acc", progress=False)
    a = load_file(big.run_dir / "checkpoints/step-3/model.safetensors")
    b = load_file(acc.run_dir / "checkpoints/step-3/model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    assert big.val_loss == pytest.approx(acc.val_loss, rel=1e-5)


def test_resume_continues_bit_for_bit(tiny_config, tmp_path):
    common = ["model.dropout=0.1", "schedule.decay_steps=20", "sample.num_samples=0"]
    whole = train(tiny_config(*common), tmp_path / "whole", progress=False)
    train(tiny_config(*common, "train.max_steps=10"), tmp_path / "half", progress=False)
    cfg = load_config(tmp_path / "half" / "config.yaml", ["train.max_steps=20"])
    resumed = train(cfg, tmp_path / "half", resume=True, progress=False)
    a = load_file(whole.run_dir / "checkpoints/step-20/model.safetensors")
    b = load_file(resumed.run_dir / "checkpoints/step-20/model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.val_loss == resumed.val_loss


def test_resume_drops_what_a_stopped_run_logged_after_its_checkpoint(tiny_config, tmp_path):
    train(tiny_config("sample.num_samples=0", "train.max_steps=10"), tmp_path / "run", progress=False)
    with (tmp_path / "run" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 13, "loss": 9.0}\n{"step": 1')  # logged after step 10's checkpoint, then cut off
    train(load_config(tmp_path / "run" / "config.yaml", ["train.max_steps=12"]), tmp_path / "run", resume=True,
          progress=False)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert 13 not in steps and max(steps) == 12 and steps == sorted(steps)


def test_batch_warmup_trains_on_fewer_rows_first_and_resumes_exactly(tiny_config, tmp_path):
    common = ["train.micro_batch_size=8", "train.batch_warmup_start=2", "train.batch_warmup_steps=16",
              "schedule.decay_steps=20", "sample.num_samples=0", "train.log_interval=1"]
    whole = train(tiny_config(*common), tmp_path / "whole", progress=False)
    train(tiny_config(*common, "train.max_steps=10"), tmp_path / "half", progress=False)
    resumed = train(load_config(tmp_path / "half" / "config.yaml", ["train.max_steps=20"]), tmp_path / "half",
                    resume=True, progress=False)
    a = load_file(whole.run_dir / "checkpoints/step-20/model.safetensors")
    b = load_file(resumed.run_dir / "checkpoints/step-20/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = train(tiny_config(*common[:1], *common[3:]), tmp_path / "plain", progress=False)
    c = load_file(plain.run_dir / "checkpoints/step-20/model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the warm-up changed the updates


def test_batch_warmup_is_refused_for_recurrent_models():
    with pytest.raises(ConfigError, match="train.batch_warmup_steps: a recurrent model"):
        load_config(None, ["model.arch=lstm", "train.batch_warmup_steps=10"])
    with pytest.raises(ConfigError, match="train.batch_warmup_start: 9 is more than"):
        load_config(None, ["train.micro_batch_size=8", "train.batch_warmup_start=9"])


def test_keeps_last_k_and_best_checkpoints(tiny_config, tmp_path):
    train(tiny_config("train.max_steps=40", "train.eval_interval=5", "train.keep_last=2",
               "sample.num_samples=0"), tmp_path / "run", progress=False)
    names = sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir())
    assert "step-40" in names and "step-35" in names and len(names) <= 3
    assert not [p for p in (tmp_path / "run/checkpoints").iterdir() if p.name.startswith(".")]


def test_early_stopping_and_time_budget(tiny_config, tmp_path):
    # no step can beat the best loss by a whole nat, so patience 2 stops at the third evaluation
    stopped = train(tiny_config("train.max_steps=100", "train.eval_interval=2", "train.early_stopping_patience=2",
                                "train.early_stopping_min_delta=1.0", "sample.num_samples=0"),
                    tmp_path / "early", progress=False)
    assert stopped.step == 6
    budget = train(tiny_config("train.max_steps=100000", "train.time_budget_s=2", "sample.num_samples=0"),
                   tmp_path / "budget", progress=False)
    assert budget.step < 100000 and budget.val_loss is not None
    assert (tmp_path / "budget/checkpoints" / f"step-{budget.step}").is_dir()


def test_existing_run_is_not_overwritten_silently(tiny_config, tmp_path):
    cfg = tiny_config("train.max_steps=2", "sample.num_samples=0")
    train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="--resume to continue it or --overwrite"):
        train(cfg, tmp_path / "run", progress=False)
    assert train(cfg, tmp_path / "run", overwrite=True, progress=False).step == 2
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(cfg, tmp_path / "empty", resume=True, progress=False)


def test_penalty_gradient_is_l1_sign_plus_l2_weight_and_skips_gains():
    from lmforge.config import OptimizerConfig

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    penalty(model, OptimizerConfig(l1=0.1, l2=0.01)).backward()
    w = model[0].weight
    torch.testing.assert_close(w.grad, 0.1 * w.sign() + 0.01 * w)
    assert model[0].bias.grad is None and model[1].weight.grad is None
    assert penalty(model, OptimizerConfig()) is None


def test_bfloat16_autocast_trains(tiny_config, tmp_path):
    # on CPU this exercises the same autocast path the trainer uses by default on CUDA
    result = train(tiny_config("train.dtype=bfloat16", "train.max_steps=4", "sample.num_samples=0"),
                   tmp_path / "bf16", progress=False)
    assert result.step == 4 and result.val_loss < 10


@pytest.mark.slow
def test_compiled_model_trains_like_eager(tiny_config, tmp_path):
    eager = train(tiny_config("train.max_steps=10", "sample.num_samples=0"), tmp_path / "eager", progress=False)
    compiled = train(tiny_config("train.max_steps=10", "sample.num_samples=0", "train.compile=true"),
                     tmp_path / "compiled", progress=False)
    assert compiled.val_loss == pytest.approx(eager.val_loss, rel=1e-3)


@pytest.mark.parametrize("family", [[], ["model.arch=encoder"],
                                    ["model.arch=lstm", "model.hidden_size=16", "model.weight_drop=0.2",
                                     "model.dropout_between=0.2"],
                                    ["model.arch=gru", "model.hidden_size=16", "model.direction=both"]],
                         ids=["gpt", "encoder", "lstm", "bigru"])
def test_activation_checkpointing_trains_to_the_same_weights(family, tiny_overrides, tmp_path):
    # recomputed blocks restore the RNG, so even with dropout (and DropConnect) the run is the same run
    base = [o for o in tiny_overrides if not ("model.hidden_size=16" in family and o.startswith("model.n_head"))]
    common = [*base, *family, "model.dropout=0.1", "train.max_steps=4", "sample.num_samples=0"]
    plain = train(load_config(None, common), tmp_path / "plain", progress=False)
    recomputed = train(load_config(None, [*common, "train.activation_checkpointing=true"]), tmp_path / "ckpt",
                       progress=False)
    a = load_file(plain.run_dir / "checkpoints/step-4/model.safetensors")
    b = load_file(recomputed.run_dir / "checkpoints/step-4/model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert recomputed.val_loss == pytest.approx(plain.val_loss, rel=1e-5)


def test_activation_checkpointing_keeps_less_for_the_backward_pass():
    from torch.autograd.graph import saved_tensors_hooks

    from lmforge.models import build_model

    def saved_bytes(checkpointing: bool) -> int:
        torch.manual_seed(0)
        model = build_model(load_config(None, ["model.n_layer=4", "model.n_embd=64", "model.n_head=4",
                                               "model.block_size=64", "model.vocab_size=96"]).model)
        model.activation_checkpointing = checkpointing
        total = 0

        def keep(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with saved_tensors_hooks(keep, lambda t: t):
            logits, _ = model(torch.randint(0, 96, (4, 64)))
        logits.sum().backward()
        return total

    assert saved_bytes(True) < 0.5 * saved_bytes(False)


def test_activation_checkpointing_needs_blocks(tiny_corpus, tmp_path):
    from cli_checks import assert_one_line_error, invoke

    code, _, err = invoke("train", f"data.path={tiny_corpus}", f"data.prepared_dir={tmp_path / 'prepared'}",
                          "tokenizer.kind=char", "model.arch=ffnn", "model.n_embd=16",
                          "model.hidden_size=16", "train.activation_checkpointing=true", "--run-dir", tmp_path / "r")
    assert_one_line_error(code, err, "train.activation_checkpointing: the ffnn model has no blocks to recompute")
    assert not (tmp_path / "r").exists()


def mixture_overrides(tiny_corpus, tmp_path) -> list[str]:
    """The tiny corpus mixed 3 : 1 with a second source of other words, in a jsonl field."""
    other = tmp_path / "other.jsonl"
    words = "a quick brown fox jumps over lazy dogs while birds sing".split()
    other.write_text("".join(json.dumps({"body": " ".join(words[(i + j) % len(words)] for j in range(12))}) + "\n"
                             for i in range(300)))
    return [f"data.sources=[{{path: {tiny_corpus}, weight: 3}}, {{path: {other}, weight: 1, field: body, name: fox}}]",
            "data.path=null"]


def test_mixture_logs_each_source_and_resumes_bit_for_bit(tiny_config, tiny_corpus, tmp_path):
    common = [*mixture_overrides(tiny_corpus, tmp_path), "model.dropout=0.1", "schedule.decay_steps=20",
              "sample.num_samples=0"]
    whole = train(tiny_config(*common), tmp_path / "whole", progress=False)
    lines = [json.loads(line) for line in (whole.run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in lines if "val_loss" in r]
    assert [r["step"] for r in evals] == [10, 20]
    for r in evals:  # the overall loss is the mean over both sources' validation targets: between the two
        assert min(r["val_loss/tiny"], r["val_loss/fox"]) < r["val_loss"] < max(r["val_loss/tiny"], r["val_loss/fox"])
    last = [r for r in lines if "epochs/tiny" in r][-1]
    state = json.loads((whole.run_dir / "checkpoints/step-20/state.json").read_text())
    drawn = state["loader"][0]["drawn"]
    assert drawn == {"tiny": 120, "fox": 40}  # 20 steps x 8 windows, 3 : 1
    assert last["epochs/tiny"] > last["epochs/fox"] > 0

    train(tiny_config(*common, "train.max_steps=10"), tmp_path / "half", progress=False)
    cfg = load_config(tmp_path / "half" / "config.yaml", ["train.max_steps=20"])
    resumed = train(cfg, tmp_path / "half", resume=True, progress=False)
    a = load_file(whole.run_dir / "checkpoints/step-20/model.safetensors")
    b = load_file(resumed.run_dir / "checkpoints/step-20/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.val_loss == resumed.val_loss
    again = [json.loads(line) for line in (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_loss/fox"] for r in again if "val_loss" in r] == [r["val_loss/fox"] for r in evals]
