"""Every model family through the one trainer: state carried across windows, exact resume, evaluation
with carried state, generation, and the bake-off."""

import json

import pytest
import torch
from safetensors.torch import load_file

from lmforge.bakeoff import FAMILIES, Budget, bakeoff, default_families, family_config
from lmforge.config import load_config
from lmforge.data.loader import stream_eval_batches
from lmforge.data.shards import load_prepared
from lmforge.errors import ConfigError
from lmforge.eval.lm import evaluate_run, sum_loss
from lmforge.prepare import ensure_prepared
from lmforge.run import load_run
from lmforge.train.trainer import train

SMALL = {
    "lstm": ["model.arch=lstm", "model.n_layer=2", "model.n_embd=32", "model.hidden_size=48", "model.block_size=16"],
    "gru": ["model.arch=gru", "model.n_layer=1", "model.n_embd=32", "model.hidden_size=32", "model.block_size=16"],
    "rnn": ["model.arch=rnn", "model.n_layer=1", "model.n_embd=32", "model.hidden_size=32", "model.block_size=16"],
    "ffnn": ["model.arch=ffnn", "model.context=4", "model.n_embd=16", "model.hidden_size=64", "model.block_size=16"],
}


@pytest.fixture
def family_config_of(tiny_overrides):
    base = [o for o in tiny_overrides if not o.startswith("model.")]
    return lambda family, *extra: load_config(None, [*base, *SMALL[family], *extra])


@pytest.mark.parametrize("family", sorted(SMALL))
def test_every_family_learns_and_generates(family_config_of, family, tmp_path):
    result = train(family_config_of(family, "train.max_steps=40", "train.eval_interval=20", "optimizer.lr=1e-2",
                                    "train.log_interval=1"),
                   tmp_path / family, progress=False)
    lines = [json.loads(line) for line in (tmp_path / family / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert losses[-1] < 0.85 * losses[0]  # from about ln(vocab) at step 1
    assert len(result.samples) == 1 and len(result.samples[0]) > 5


def test_lstm_resumes_bit_for_bit_with_carried_state(family_config_of, tmp_path):
    common = ["model.dropout=0.2", "model.weight_drop=0.2", "schedule.decay_steps=20", "sample.num_samples=0"]
    whole = train(family_config_of("lstm", *common), tmp_path / "whole", progress=False)
    train(family_config_of("lstm", *common, "train.max_steps=10"), tmp_path / "half", progress=False)
    assert (tmp_path / "half/checkpoints/step-10/carried_state.pt").is_file()
    resumed = train(load_config(tmp_path / "half/config.yaml", ["train.max_steps=20"]), tmp_path / "half",
                    resume=True, progress=False)
    a = load_file(whole.run_dir / "checkpoints/step-20/model.safetensors")
    b = load_file(resumed.run_dir / "checkpoints/step-20/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_recurrent_evaluation_carries_state_through_streams(family_config_of, tmp_path):
    cfg = family_config_of("lstm", "train.max_steps=30", "sample.num_samples=0")
    train(cfg, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    val = load_prepared(ensure_prepared(run.config, progress=False)).split("val")
    carried, n = sum_loss(run.model, val, 16, 4, torch.device("cpu"), recurrent=True)
    # the same streams by hand: state kept between windows, dropped where a new set of streams starts
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y, reset in stream_eval_batches(val, 16, 4):
            logits, state = run.model(x, None if reset else state)
            total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    assert n == count == sum(len(s) for s in val) - 1
    assert carried == pytest.approx(total, rel=1e-9)
    fresh, _ = sum_loss(run.model, val, 16, 4, torch.device("cpu"), recurrent=False)
    assert fresh != pytest.approx(carried, rel=1e-6)  # windows from a zero state score differently
    with pytest.raises(ConfigError, match="--stride"):
        evaluate_run(run, stride=8)


def test_bilm_reports_both_directions(family_config_of, tmp_path):
    train(family_config_of("lstm", "model.direction=both", "train.max_steps=20", "sample.num_samples=0"),
          tmp_path / "bilm", progress=False)
    result = evaluate_run(load_run(tmp_path / "bilm"))
    assert result["forward_perplexity"] > 1 and result["backward_perplexity"] > 1


def test_bakeoff_writes_table_json_and_plot_and_resumes(tiny_config, tmp_path):
    cfg = tiny_config("train.eval_interval=5")
    rows = bakeoff(cfg, ["ffnn", "lstm", "gpt"], Budget.parse("4ktok"), tmp_path / "out", progress=False)
    assert [r["model"] for r in rows] == ["ffnn", "lstm", "gpt"]
    for r in rows:
        assert r["parameters"] > 0 and r["val_perplexity"] > 1 and r["tokens_per_s"] > 0 and r["curve"]
    table = (tmp_path / "out/bakeoff.md").read_text()
    assert "| lstm |" in table and json.loads((tmp_path / "out/bakeoff.json").read_text())["models"]
    assert (tmp_path / "out/bakeoff.png").read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "out/report.html").read_text()  # the bake-off's page: table and overlaid curves
    assert "Bake-off:" in report and all(f'href="{f}/report.html"' in report for f in ("ffnn", "lstm", "gpt"))
    assert all((tmp_path / "out" / f / "report.html").is_file() for f in ("ffnn", "lstm", "gpt"))
    data = json.loads(report.split('id="lmforge-data">', 1)[1].split("</script>", 1)[0])
    assert [line["name"] for line in data["charts"][0]["lines"]] == ["ffnn", "lstm", "gpt"]
    for family in ("ffnn", "lstm", "gpt"):  # each schedule spans the steps its budget allowed
        ran = load_config(tmp_path / "out" / family / "config.yaml")
        assert ran.schedule.decay_steps == ran.train.max_steps == next(r for r in rows if r["model"] == family)["steps"]

    # an interrupted bake-off, rerun with resume: finished models are kept, a changed budget retrains
    kept = (tmp_path / "out/ffnn/metrics.jsonl").stat().st_mtime_ns
    again = bakeoff(cfg, ["ffnn", "lstm", "gpt"], Budget.parse("4ktok"), tmp_path / "out", progress=False, resume=True)
    assert again == json.loads(json.dumps(rows))
    assert (tmp_path / "out/ffnn/metrics.jsonl").stat().st_mtime_ns == kept
    # a row saved before lmforge had an option (now at its default) still counts as the same run
    saved = json.loads((tmp_path / "out/ffnn/bakeoff_row.json").read_text())
    del saved["key"]["recipe"]["schedule"]["step_gamma"]
    (tmp_path / "out/ffnn/bakeoff_row.json").write_text(json.dumps(saved))
    bakeoff(cfg, ["ffnn"], Budget.parse("4ktok"), tmp_path / "out", progress=False, resume=True)
    assert (tmp_path / "out/ffnn/metrics.jsonl").stat().st_mtime_ns == kept
    # a row from an older bake-off, which trained differently, is trained again
    saved["key"]["version"] = 1
    (tmp_path / "out/ffnn/bakeoff_row.json").write_text(json.dumps(saved))
    bakeoff(cfg, ["ffnn"], Budget.parse("4ktok"), tmp_path / "out", progress=False, resume=True)
    retrained = (tmp_path / "out/ffnn/metrics.jsonl").stat().st_mtime_ns
    assert retrained != kept
    bakeoff(cfg, ["ffnn"], Budget.parse("2ktok"), tmp_path / "out", progress=False, resume=True)
    assert (tmp_path / "out/ffnn/metrics.jsonl").stat().st_mtime_ns != retrained


def test_bakeoff_bad_input(tiny_config):
    with pytest.raises(ConfigError, match="--models: unknown architecture 'transformer'"):
        family_config(tiny_config(), "transformer")
    with pytest.raises(ConfigError, match="--budget"):
        Budget.parse("ten minutes")
    assert Budget.parse("10m") == Budget(seconds=600) and Budget.parse("2Mtok") == Budget(tokens=2_000_000)


def test_a_bakeoff_on_a_mixture_reports_each_sources_perplexity(tiny_config, tiny_corpus, tmp_path):
    other = tmp_path / "other.txt"
    words = "a quick brown fox jumps over lazy dogs while birds sing".split()
    other.write_text("\n".join(" ".join(words[(i + j) % len(words)] for j in range(12)) for i in range(300)))
    cfg = tiny_config(f"data.sources=[{{path: {tiny_corpus}, weight: 3}}, {{path: {other}, weight: 1, name: fox}}]",
                      "data.path=null")
    with pytest.raises(ConfigError, match="^--models lstm: .*data.sources: a recurrent model"):  # before any training
        bakeoff(cfg, ["ffnn", "lstm"], Budget.parse("2ktok"), tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()
    assert default_families(cfg) == ["ffnn", "gpt"] and default_families(tiny_config()) == list(FAMILIES)
    rows = bakeoff(cfg, ["ffnn", "gpt"], Budget.parse("2ktok"), tmp_path / "out", progress=False)
    for r in rows:
        assert list(r["source_val_perplexity"]) == ["tiny", "fox"]
        # the whole split's perplexity lies between its sources'
        assert min(r["source_val_perplexity"].values()) < r["val_perplexity"] < max(r["source_val_perplexity"].values())
    table = (tmp_path / "out/bakeoff.md").read_text()
    assert "| val ppl | tiny val ppl | fox val ppl |" in table
    assert "fox val ppl" in (tmp_path / "out/report.html").read_text()
