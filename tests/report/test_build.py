"""`lmforge report` and `lmforge compare` on real tiny runs: what the page holds, and bad input."""

import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import load_config
from lmforge.report import compare_report, run_report
from lmforge.report.series import read_records

runner = CliRunner()


def page_data(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="lmforge-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(block)


def charts(html: str) -> dict:
    return {c["id"]: c for c in page_data(html)["charts"]}


def test_training_ends_with_a_report_that_draws_what_the_run_logged(trained_run):
    html = (trained_run / "report.html").read_text()
    rows = read_records(trained_run / "metrics.jsonl").rows
    drawn = charts(html)
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "memory_mib"} <= set(drawn)
    training, validation = drawn["loss"]["lines"]
    assert training["y"] == [r["loss"] for r in rows if "loss" in r]
    assert validation["x"]["step"] == [10, 20]
    assert set(drawn["loss"]["axes"]) == {"step", "time", "tokens"}
    assert [r["tokens"] for r in rows if "loss" in r] == training["x"]["tokens"]  # the trainer's own count
    assert "best validation loss" in html and "step-20 (best)" in html
    # the config, with each field's description on hover
    assert 'title="optimizer steps"' in html and "max_steps" in html
    sample = (trained_run / "samples.txt").read_text().strip()
    assert sample.split("\n")[0].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html


def test_the_page_needs_no_network(trained_run):
    html = (trained_run / "report.html").read_text()
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)=', html)
    assert "Plotly.react" in html and "plotly.js v" in html  # the library is inlined


def test_an_evaluation_is_recorded_and_shown(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = runner.invoke(app, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "evals.jsonl").read_text().splitlines()[-1])["result"]["loss"] == \
        json.loads(result.output)["loss"]
    html = run_report(run)
    assert "bits_per_byte" in html and "No evaluation recorded yet" not in html


def test_a_run_with_no_metrics_yet_gets_a_report_that_says_so(trained_run, tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    shutil.copy(trained_run / "config.yaml", run / "config.yaml")
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "No metrics yet" in (run / "report.html").read_text()


def test_a_half_written_metrics_line_is_named_on_the_page(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "lo')
    html = run_report(run)
    n = len((run / "metrics.jsonl").read_text().splitlines())
    assert f"metrics.jsonl line {n}: not a complete JSON record, left out" in html


def test_report_of_something_that_is_not_a_run_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "not a run directory" in result.output


def _second_run(trained_run, tmp_path, lr):
    from lmforge.train.trainer import train

    cfg = load_config(trained_run / "config.yaml", [f"optimizer.lr={lr}", "train.max_steps=10", "train.report=false"])
    train(cfg, tmp_path / "other", progress=False)
    return tmp_path / "other"


def test_compare_overlays_runs_and_lists_where_their_configs_differ(trained_run, tmp_path):
    other = _second_run(trained_run, tmp_path, 3e-3)
    assert not (other / "report.html").exists()  # train.report=false
    out = tmp_path / "cmp.html"
    result = runner.invoke(app, ["compare", str(trained_run), str(other), "--metric", "loss", "--x", "tokens",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    (chart,) = page_data(html)["charts"]
    assert [line["name"] for line in chart["lines"]] == ["run", "other"]
    assert len(chart["lines"][1]["y"]) == len([r for r in read_records(other / "metrics.jsonl").rows if "loss" in r])
    differ = re.search(r"Where the configs differ</h2>(.*?)</table>", html, re.S).group(1)
    assert "optimizer.lr" in differ and "train.max_steps" in differ and "train.report" in differ
    assert "model.n_layer" not in differ


@pytest.mark.parametrize("args, message", [
    (["--metric", "nope"], "--metric 'nope': not logged by every run; the runs share loss, val_loss"),
    (["--x", "epochs"], "--x 'epochs': expected one of step, time, tokens"),
])
def test_compare_bad_input_is_one_line_and_exit_2(trained_run, tmp_path, args, message):
    result = runner.invoke(app, ["compare", str(trained_run), *args, "--out", str(tmp_path / "c.html")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and message in result.output
    assert not (tmp_path / "c.html").exists()


def test_compare_runs_with_no_metric_in_common_names_what_each_has(trained_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(trained_run / "config.yaml", other / "config.yaml")
    (other / "metrics.jsonl").write_text('{"step": 1, "accuracy": 0.5}\n')
    with pytest.raises(Exception, match=r"no metric in common .*other: accuracy"):
        compare_report([trained_run, other])


def test_report_every_redraws_the_report_while_training(tiny_config, tmp_path, monkeypatch):
    import lmforge.train.trainer as trainer

    drawn = []
    real = trainer.write_report
    monkeypatch.setattr(trainer, "write_report", lambda path: drawn.append(
        max(r["step"] for r in read_records(path / "metrics.jsonl").rows)) or real(path))
    trainer.train(tiny_config("train.report_every=5", "train.num_threads=1"), tmp_path / "run", progress=False)
    assert drawn == [5, 10, 15, 20]  # every 5 steps, and once at the end (step 20) instead of twice
