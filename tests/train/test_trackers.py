"""train.loggers: metrics.csv, W&B (offline) and MLflow (SQLite) get the config, every metric at its step and
the run's files; a tracker that cannot work is one line and exit 2 before the run directory is touched."""

import csv
import glob
import importlib.util
import json
import struct

import pytest
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.train.trainer import train

runner = CliRunner()


def jsonl(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def logged(run, key):
    return [(r["step"], r[key]) for r in jsonl(run) if key in r]


def test_csv_holds_every_number_of_metrics_jsonl(tiny_config, tmp_path):
    run = tmp_path / "run"
    train(tiny_config("train.loggers=[jsonl,csv]", "train.num_threads=1"), run, progress=False)
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["step"]), float(r["value"])) for r in rows if r["metric"] == "loss"] == logged(run, "loss")
    assert [(int(r["step"]), float(r["value"])) for r in rows if r["metric"] == "val_loss"] == logged(run, "val_loss")
    assert not (run / "tensorboard").exists()  # not in loggers


def wandb_records(path):
    """The records of a W&B transaction log (.wandb): LevelDB-log framing (32 KiB blocks of crc32, length,
    type, data) behind a 7-byte W&B header, each record a protobuf `Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, records, pending = open(path, "rb").read(), [], b""
    block, pos = 32768, 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (lmforge[wandb])")
def test_wandb_offline_run_holds_the_config_every_metric_and_the_files(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    train(tiny_config("train.loggers=[jsonl,wandb]", "train.num_threads=1"), run, progress=False)
    (log,) = glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))
    records = wandb_records(log)
    # W&B merges what is logged at one step into one row of history
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [(h["_step"], h["loss"]) for h in history if "loss" in h] == logged(run, "loss")
    assert [(h["_step"], h["val_loss"]) for h in history if "val_loss" in h] == logged(run, "val_loss")
    config = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for r in records  # with the run record
              if r.WhichOneof("record_type") == "run" for i in r.run.config.update}
    assert config["model"]["n_layer"] == 2 and config["train"]["max_steps"] == 20
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifacts and {e.path for e in artifacts[0].manifest.contents} == {"samples.txt", "report.html"}


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed (lmforge[mlflow])")
def test_mlflow_run_holds_the_params_every_metric_and_the_files_and_a_resume_continues_it(tiny_config, tmp_path,
                                                                                            monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)  # where the SQLite store keeps artefacts (./mlruns)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tmp_path / "run"
    cfg = tiny_config("train.loggers=[jsonl,mlflow]", f"train.mlflow_tracking_uri={uri}",
                      "train.tracker_project=tiny", "train.num_threads=1", "train.max_steps=10")
    train(cfg, run, progress=False)
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]
    client = mlflow.MlflowClient(uri)
    assert client.get_experiment(client.get_run(run_id).info.experiment_id).name == "tiny"
    params = client.get_run(run_id).data.params
    assert params["model.n_layer"] == "2" and params["train.max_steps"] == "10"
    assert {a.path for a in client.list_artifacts(run_id)} == {"samples.txt", "report.html"}

    train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": 20})}), run, resume=True,
          progress=False)
    assert json.loads((run / "trackers.json").read_text())["mlflow"] == run_id  # the same MLflow run goes on
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert history == logged(run, "loss")


@pytest.mark.parametrize("override, message", [
    ("train.loggers=[jsonl,nope]", "train.loggers.1: Input should be 'jsonl', 'tensorboard', 'csv', 'wandb' or 'mlflow'"),
    ("train.loggers=[tensorboard]", "train.loggers: jsonl must stay"),
    ("train.mlflow_tracking_uri=http://127.0.0.1:9", "train.mlflow_tracking_uri: http://127.0.0.1:9 is unreachable"),
])
def test_a_tracker_that_cannot_work_is_one_line_and_exit_2_and_no_run(tiny_overrides, tmp_path, override, message):
    extra = ["train.loggers=[jsonl,mlflow]"] if "mlflow_tracking" in override else []
    if extra and importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed")
    result = runner.invoke(app, ["train", *tiny_overrides, *extra, override, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_a_missing_tracker_package_names_the_extra_to_install(tiny_overrides, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    result = runner.invoke(app, ["train", *tiny_overrides, "train.loggers=[jsonl,wandb]", "--run-dir",
                                 str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "train.loggers: wandb needs the wandb package: pip install 'lmforge[wandb]'" in result.output
    assert not (tmp_path / "run").exists()
