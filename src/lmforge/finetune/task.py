"""A task model at work: encode a task file, run the model, score it, write predictions; and the task model
of a fine-tuned run directory (`task.json`: task and label map, `config.yaml`, `checkpoints/step-N/`).

Used by the fine-tuning recipe (validation after each epoch), by the eval recipe (`lmforge eval` on a task run)
and by the predict recipe (finetune/predict.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmforge.config import Config, FinetuneConfig
from lmforge.data.taskfiles import (QAExample, Sentence, Table, column, read_squad_examples, read_table, read_tagged,
                                    split_labels, table_format)
from lmforge.errors import CheckpointError, DataError
from lmforge.eval.tasks import classification_report, entity_f1, squad_scores
from lmforge.finetune.backbones import rebuild_backbone
from lmforge.finetune.data import (Feature, best_answers, collate, encode_qa, encode_texts, encode_words,
                                   label_targets, lm_windows, unseen_warning, word_predictions)
from lmforge.finetune.heads import TaskModel, build_head, task_loss
from lmforge.io import atomic_write_text
from lmforge.run import RunDir
from lmforge.train.checkpoint import load_weights, saved_shapes


@dataclass
class Task:
    """What turns files into model inputs and outputs back into labels."""

    cfg: FinetuneConfig
    labels: list[str]  # classes (classify) or tags (tag); empty for qa and lm
    model: TaskModel

    @property
    def block(self) -> int:
        limit = self.model.backbone.max_positions
        return min(self.cfg.max_length, limit) if limit else self.cfg.max_length


@dataclass
class Encoded:
    """A task file read and encoded: model inputs, and the source and gold data to score and write back."""

    path: Path
    features: list[Feature]
    source: Table | list[Sentence] | list[QAExample]
    gold: list | None = None  # label lists, tag lists, or the SQuAD data list
    warnings: list[str] = field(default_factory=list)


def eod_id(task: Task) -> int | None:
    return task.model.backbone.tokenizer.token_to_id("<|endoftext|>")


def encode_file(task: Task, path: str | Path, labelled: bool) -> Encoded:
    fc, backbone = task.cfg, task.model.backbone
    path = Path(path)
    if fc.task in ("classify", "lm"):
        table = read_table(path, fc.format, fc.text_column)
        texts = column(table, fc.text_column, "text")
        if fc.task == "lm":
            return Encoded(path, lm_windows(backbone, texts, task.block, eod_id(task)), table)
        features = encode_texts(backbone, texts, task.block)
        if not labelled:
            return Encoded(path, features, table)
        gold = split_labels(column(table, fc.label_column, "label"), fc.multi_label, fc.label_separator, table.path)
        targets, unseen = label_targets(gold, task.labels, fc.multi_label)
        for f, t in zip(features, targets):
            f.target = t
        return Encoded(path, features, table, gold, [w for w in [unseen_warning(path, unseen)] if w])
    if fc.task == "tag":
        sentences = read_tagged(path, labelled)
        features, unseen = encode_words(backbone, sentences, task.labels if labelled else None, task.block)
        gold = [s.tags for s in sentences] if labelled else None
        return Encoded(path, features, sentences, gold, [w for w in [unseen_warning(path, unseen, "tags")] if w])
    articles, examples = read_squad_examples(path, labelled)
    features = encode_qa(backbone, examples, task.block, fc.doc_stride, fc.max_query_length)
    return Encoded(path, features, examples, articles if labelled else None)


@torch.no_grad()
def run_model(task: Task, features: list[Feature], batch_size: int,
              with_loss: bool) -> tuple[list[torch.Tensor], float | None]:
    """The model's output for each feature (cut to its length), and with_loss the mean loss per target (per
    text, token or question window), the same whatever the batch size."""
    model = task.model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs: list[torch.Tensor] = []
    loss_sum, count = 0.0, 0
    for i in range(0, len(features), batch_size):
        chunk = features[i:i + batch_size]
        batch = collate(chunk, model.backbone.special.pad, task.cfg.task, task.cfg.multi_label)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(batch["ids"], batch["mask"], batch["type_ids"])
        if with_loss:
            target = batch["target"]
            # the batch's loss is a mean over its targets; weighting it by their number gives the mean over all
            n = len(chunk) if task.cfg.task == "qa" or task.cfg.multi_label else int((target != -100).sum())
            loss_sum += task_loss(task.cfg.task, logits, target, task.cfg.multi_label).item() * n
            count += n
        for f, row in zip(chunk, logits.float().cpu()):
            outputs.append(row if task.cfg.task == "classify" else row[:len(f.ids)])
    model.train(was_training)
    return outputs, (loss_sum / count if with_loss and count else None)


def predictions(task: Task, encoded: Encoded, outputs: list[torch.Tensor]):
    """Per example: a label list (classify), a tag per word (tag), or {question id: answer} (qa)."""
    fc = task.cfg
    if fc.task == "classify":
        if fc.multi_label:
            return [[task.labels[j] for j in torch.nonzero(row > 0).flatten().tolist()] for row in outputs]
        return [[task.labels[int(row.argmax())]] for row in outputs]
    if fc.task == "tag":
        return [word_predictions(f.word_ids, [task.labels[j] for j in row.argmax(-1).tolist()],
                                 len(encoded.source[f.example].words))
                for f, row in zip(encoded.features, outputs)]
    if fc.task == "qa":
        return best_answers(encoded.source, encoded.features, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs],
                            fc.max_answer_length)
    raise DataError("task lm makes no predictions; sample from the run with lmforge generate")


def multi_label_scores(predicted: list[list[str]], gold: list[list[str]]) -> dict:
    """Micro precision / recall / F1 over (text, label) pairs, and the share of texts with exactly the gold set."""
    right = sum(len(set(p) & set(g)) for p, g in zip(predicted, gold))
    n_pred, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    p = right / n_pred if n_pred else 0.0
    r = right / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "exact_match": sum(set(a) == set(b) for a, b in zip(predicted, gold)) / max(len(gold), 1)}


def evaluate(task: Task, encoded: Encoded, batch_size: int) -> dict:
    """The loss and the task's metrics on a labelled file (lm: loss and perplexity)."""
    outputs, loss = run_model(task, encoded.features, batch_size, with_loss=True)
    result: dict = {"task": task.cfg.task, "data": str(encoded.path), "loss": loss, "warnings": encoded.warnings}
    if task.cfg.task == "lm":
        result["perplexity"] = math.exp(min(loss, 700.0))
        return result
    predicted = predictions(task, encoded, outputs)
    if task.cfg.task == "classify":
        if task.cfg.multi_label:
            result.update(multi_label_scores(predicted, encoded.gold))
        else:
            report = classification_report([p[0] for p in predicted], [g[0] for g in encoded.gold])
            result.update({k: report[k] for k in ("accuracy", "macro", "per_class", "labels", "confusion")})
    elif task.cfg.task == "tag":
        result.update(entity_f1(predicted, encoded.gold))
    else:
        result.update(squad_scores(encoded.gold, predicted))
    return result


def headline(result: dict) -> str:
    """The result's main figures on one line (percent; SQuAD's are percent already)."""
    scale = 1 if result["task"] == "qa" else 100
    parts = [f"loss {result['loss']:.4f}" if result["loss"] is not None else "no loss (no known labels)"]
    if "perplexity" in result:
        parts.append(f"perplexity {result['perplexity']:.2f}")
    for key, name in (("accuracy", "accuracy"), ("exact_match", "exact match"), ("precision", "precision"),
                      ("recall", "recall"), ("f1", "F1")):
        if key in result:
            parts.append(f"{name} {scale * result[key]:.2f}")
    if "macro" in result:
        parts.append(f"macro F1 {100 * result['macro']['f1']:.2f}")
    return ", ".join(parts)


# -- fine-tuned run directories ----------------------------------------------------------------------------

def load_task_run(run_dir: str | Path, which: str = "last") -> tuple[Config, Task]:
    """The fine-tuned model of a run directory, weights from checkpoint `which` (last, best or step-N)."""
    run = RunDir(run_dir)
    run_dir = run.path
    info = run.task_info()
    task_name, labels, kind = info["task"], info["labels"], info["backbone"]
    cfg = run.config()
    ckpt = run.checkpoint(which)
    backbone = rebuild_backbone(run_dir, kind, cfg.model, task_name)
    fc = cfg.finetune
    model = TaskModel(backbone, build_head(task_name, backbone, len(labels), fc.pooling, fc.head_dropout))
    module = model.backbone.lm if task_name == "lm" else model
    _check_shapes(module, ckpt)
    load_weights(module, ckpt)
    model.eval()
    return cfg, Task(fc, labels, model)


def _check_shapes(model: torch.nn.Module, ckpt: Path) -> None:
    """A tensor whose shape differs (a label map edited, another backbone) named before loading fails
    with torch's many-line message."""
    from safetensors import SafetensorError

    path = ckpt / "model.safetensors"
    try:
        saved = saved_shapes(ckpt)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: truncated or foreign checkpoint ({str(e).splitlines()[0]})") from None
    for key, tensor in model.state_dict().items():
        if key in saved and saved[key] != list(tensor.shape):
            raise CheckpointError(f"{path}: weights do not fit this model: {key} is {saved[key]} in the checkpoint "
                                  f"but {list(tensor.shape)} here (task.json and config.yaml must be the run's own)")


def write_predictions(task: Task, encoded: Encoded, predicted, output: Path | None) -> str:
    """Predictions in the input's format: the table with the label column filled in, CoNLL token/tag
    columns, or a SQuAD predictions object {question id: answer}. Written atomically to `output`, or returned."""
    fc = task.cfg
    if fc.task == "classify":
        table = encoded.source
        labels = [fc.label_separator.join(p) for p in predicted]
        fmt = table_format(table.path, fc.format)
        if fmt == "txt":
            text = "".join(f"{label}\n" for label in labels)
        elif fmt == "jsonl":
            text = "".join(json.dumps({**row, fc.label_column: label}, ensure_ascii=False) + "\n"
                           for row, label in zip(table.rows, labels))
        else:
            columns = table.columns + ([fc.label_column] if fc.label_column not in table.columns else [])
            buffer = io.StringIO()
            writer = (csv.writer(buffer, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
                      if fmt == "tsv" else csv.writer(buffer, lineterminator="\n"))
            writer.writerow(columns)
            for row, label in zip(table.rows, labels):
                writer.writerow([label if c == fc.label_column else row.get(c, "") for c in columns])
            text = buffer.getvalue()
    elif fc.task == "tag":
        text = "\n".join("".join(f"{w}\t{t}\n" for w, t in zip(s.words, tags))
                         for s, tags in zip(encoded.source, predicted))
    else:
        text = json.dumps(predicted, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        atomic_write_text(output, text)
    return text


def evaluate_task_run(run_dir: str | Path, data: str | Path | None = None, which: str = "last",
                      batch_size: int = 32) -> dict:
    """Task metrics of a fine-tuned run on `data` (default: the recipe's val_path)."""
    _, task = load_task_run(run_dir, which)
    path = data or task.cfg.val_path
    if path is None:
        raise DataError(f"{run_dir}: the recipe has no finetune.val_path; give --data")
    return evaluate(task, encode_file(task, path, labelled=True), batch_size)
