"""Where a run's metrics go besides metrics.jsonl: TensorBoard, a CSV file, Weights & Biases, MLflow.

Each tracker takes the resolved config as parameters once, every logged metric at its step, and files
(samples.txt, report.html) as artefacts at the end; only rank 0 makes them. W&B and MLflow are optional
extras, imported only when asked for. A missing package or an unreachable tracking server is named in one
line before the run directory is touched (`check_trackers`). A resumed run continues the same W&B and MLflow
runs: their ids are kept in RUN/trackers.json.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from lmforge.config import flatten
from lmforge.errors import ConfigError
from lmforge.io import atomic_write_json

EXTRAS = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}  # logger -> (module, extra to install)


def mlflow_uri(configured: str | None) -> str:
    """The tracking URI: train.mlflow_tracking_uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (SQLite)."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def check_trackers(loggers: list[str], mlflow_tracking_uri: str | None) -> None:
    """Fail in one line, before any training, on a tracker whose package is missing or whose server is down."""
    for name in loggers:
        if name in EXTRAS:
            module, extra = EXTRAS[name]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"train.loggers: {name} needs the {module} package: pip install 'lmforge[{extra}]'")
    if "mlflow" in loggers:
        uri = urlparse(mlflow_uri(mlflow_tracking_uri))
        if uri.scheme in ("http", "https"):
            port = uri.port or (443 if uri.scheme == "https" else 80)
            try:
                socket.create_connection((uri.hostname, port), timeout=5).close()
            except OSError as e:
                raise ConfigError(f"train.mlflow_tracking_uri: {uri.geturl()} is unreachable ({e.strerror or e})") from None


class TensorBoardTracker:
    def __init__(self, run_dir: Path, **_) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: it pulls in tensorboard

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, step: int, values: dict, time: float) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step, walltime=time)

    def artifacts(self, paths: list[Path]) -> None:
        pass  # TensorBoard has no place for files

    def close(self) -> None:
        self.writer.close()


class CsvTracker:
    """metrics.csv, long format (step, time, metric, value): records carry different fields, so one row a
    value streams without rewriting a header; `pandas.read_csv(...).pivot(...)` makes it wide."""

    def __init__(self, run_dir: Path, **_) -> None:
        path = run_dir / "metrics.csv"
        new = not path.exists()
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["step", "time", "metric", "value"])

    def log(self, step: int, values: dict, time: float) -> None:
        for key, value in values.items():
            self.writer.writerow([step, time, key, value])
        self.file.flush()

    def artifacts(self, paths: list[Path]) -> None:
        pass

    def close(self) -> None:
        self.file.close()


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict, name: str, project: str, ids: dict, **_) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=project, name=name, config=config, dir=str(run_dir), id=ids.get("wandb"),
                              resume="allow")
        ids["wandb"] = self.run.id

    def log(self, step: int, values: dict, time: float) -> None:
        self.run.log(values, step=step)

    def artifacts(self, paths: list[Path]) -> None:
        artifact = self.wandb.Artifact(f"{self.run.id}-files", type="run-files")
        for path in paths:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, run_dir: Path, config: dict, name: str, project: str, ids: dict,
                 tracking_uri: str | None = None, **_) -> None:
        import mlflow

        self.client = mlflow.MlflowClient(mlflow_uri(tracking_uri))
        try:
            if ids.get("mlflow"):
                self.run_id = ids["mlflow"]
            else:
                found = self.client.get_experiment_by_name(project)
                experiment = found.experiment_id if found else self.client.create_experiment(project)
                self.run_id = self.client.create_run(experiment, run_name=name).info.run_id
                params = list(flatten(config).items())
                for start in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                    self.client.log_batch(self.run_id, params=[mlflow.entities.Param(k, str(v)[:6000])
                                                               for k, v in params[start:start + 100]])
        except mlflow.exceptions.MlflowException as e:
            raise ConfigError(f"train.loggers: mlflow at {mlflow_uri(tracking_uri)}: {e.message.splitlines()[0]}") from None
        ids["mlflow"] = self.run_id
        self.Metric = mlflow.entities.Metric

    def log(self, step: int, values: dict, time: float) -> None:
        stamp = int(1000 * time)
        self.client.log_batch(self.run_id, metrics=[self.Metric(k, float(v), stamp, step) for k, v in values.items()])

    def artifacts(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


TRACKERS = {"tensorboard": TensorBoardTracker, "csv": CsvTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}


def open_trackers(run_dir: Path, loggers: list[str], config: dict, name: str, project: str | None,
                  mlflow_tracking_uri: str | None) -> list:
    """The trackers named in `loggers` (jsonl is RunLogger's own), continuing the runs of a resumed run."""
    ids_path = run_dir / "trackers.json"
    ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
    opened = [TRACKERS[n](run_dir, config=config, name=name, project=project or name, ids=ids,
                          tracking_uri=mlflow_tracking_uri) for n in loggers if n in TRACKERS]
    if ids:
        atomic_write_json(ids_path, ids)
    return opened
