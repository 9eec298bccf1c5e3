"""A fine-tuning run's report: the unfreezing schedule and per-group rates, dev metrics per epoch, and the
confusion matrix (classification) or per-entity-type F1 (NER) of its last evaluation."""

import json
import re

from lmforge.config import load_config
from lmforge.finetune.train import finetune
from lmforge.report.series import read_records

FAST = ["train.num_threads=1", "train.tensorboard=false", "train.log_interval=1", "schedule.name=constant",
        "schedule.warmup_steps=0", "finetune.max_length=32", "finetune.pooling=last"]


def charts(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="lmforge-data">(.*?)</script>', html, re.S).group(1)
    return {c["id"]: c for c in json.loads(block)["charts"]}


def test_a_classifier_report_shows_unfreezing_rates_dev_metrics_and_the_confusion_matrix(trained_run, tmp_path):
    train = tmp_path / "train.tsv"
    rows = [("the film was good", "pos"), ("a bad plot", "neg"), ("good acting", "pos"), ("so bad", "neg")] * 3
    train.write_text("sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows))
    cfg = load_config(None, [f"finetune.backbone={trained_run}", f"finetune.train_path={train}",
                             f"finetune.val_path={train}", "finetune.text_column=sentence", "finetune.epochs=3",
                             "finetune.batch_size=4", "finetune.unfreeze=epoch", "finetune.discriminative_factor=2",
                             *FAST])
    finetune(cfg, tmp_path / "run", progress=False)
    html = (tmp_path / "run" / "report.html").read_text()
    drawn = charts(html)

    records = read_records(tmp_path / "run" / "metrics.jsonl").rows
    steps = [r for r in records if "lr_groups" in r]
    lines = drawn["lr-groups"]["lines"]
    assert len(lines) == len(steps[0]["lr_groups"]) > 1
    top, below = lines[-1]["y"], lines[-2]["y"]
    assert below[0] is None and below[-1] == top[-1] / 2  # frozen in epoch 1, then at lr / factor
    assert drawn["unfrozen_groups"]["lines"][0]["y"][0] == 1
    assert drawn["dev"]["lines"][0]["name"] == "accuracy" and len(drawn["dev"]["lines"][0]["y"]) == 3

    evals = [json.loads(line) for line in (tmp_path / "run" / "evals.jsonl").read_text().splitlines()]
    confusion = drawn["confusion"]["heatmap"]
    assert confusion["x"] == ["neg", "pos"] and confusion["z"] == evals[-1]["result"]["confusion"]
    assert sum(map(sum, confusion["z"])) == len(rows)
    assert "per class" in html and "gradual unfreezing" in html and "fine-tuned classify task" in html


def test_a_tagger_report_shows_f1_per_entity_type(trained_run, tmp_path):
    train = tmp_path / "train.conll"
    sentences = [[("Ann", "B-person"), ("went", "O"), ("to", "O"), ("Rome", "B-location")],
                 [("in", "O"), ("Oslo", "B-location"), ("Bob", "B-person"), ("met", "O")]] * 2
    train.write_text("\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in sentences))
    cfg = load_config(None, [f"finetune.backbone={trained_run}", f"finetune.train_path={train}",
                             f"finetune.val_path={train}", "finetune.task=tag", "finetune.epochs=1",
                             "finetune.batch_size=2", "train.loggers=[jsonl,csv]", *FAST])
    finetune(cfg, tmp_path / "run", progress=False)
    losses = [line for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines() if ",loss," in line]
    assert len(losses) == len([r for r in read_records(tmp_path / "run" / "metrics.jsonl").rows if "loss" in r])
    html = (tmp_path / "run" / "report.html").read_text()
    section = re.search(r"entity F1 per type</h3>(.*?)</table>", html, re.S).group(1)
    assert "all entities" in section and "person" in section and "location" in section
    assert "confusion" not in charts(html)
