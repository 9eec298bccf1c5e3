"""A recipe's `augment` section: the training data, and only it, augmented before it is used.

- `lmforge finetune`: finetune.train_path is augmented into the run directory (augment/train.jsonl and its
  report), and training reads that file; finetune.val_path is read as it is. With max_train_examples, only
  the first that many originals are read and augmented, so a learning curve compares the same examples.
- `lmforge prepare` / `train`: the corpus (data.path) is augmented before tokenizing; validation must then
  come from data.val_path, since a validation split cut from the end of the training stream would hold
  copies of training documents (and training copies of its).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from lmforge.augment.core import augment
from lmforge.config import Config, DataConfig
from lmforge.data.taskfiles import table_format
from lmforge.errors import ConfigError
from lmforge.text.report import Report

TRAIN_FILE = "train.jsonl"


def _check_stage(cfg: Config, where: str) -> None:
    stage = cfg.augment
    assert stage is not None
    if stage.val_fraction or stage.test_fraction:
        raise ConfigError(f"augment.val_fraction, test_fraction: a recipe's evaluation data is {where}; the stage "
                          f"augments the training data only (the fractions are for `lmforge augment`)")


def check_task_stage(cfg: Config) -> None:
    """Refuse, before any data is read, an augment stage that a fine-tuning recipe cannot take."""
    fc = cfg.finetune
    assert fc is not None and cfg.augment is not None
    if fc.task not in ("classify", "lm"):
        raise ConfigError(f"augment: finetune.task={fc.task}: augmentation rewrites texts, which would lose a "
                          f"{'tag per word' if fc.task == 'tag' else 'answer span'}; it takes classify and lm")
    _check_stage(cfg, "finetune.val_path")


class TaskTrainingData:
    """finetune.train_path augmented into a scratch folder, moved into the run directory by `keep`."""

    def __init__(self, cfg: Config, progress: bool):
        check_task_stage(cfg)
        fc = cfg.finetune
        fmt = table_format(Path(fc.train_path), fc.format)
        data = DataConfig(format=fmt, field=fc.text_column, txt_documents="line")
        self._scratch = tempfile.TemporaryDirectory(prefix=".lmforge-augment-")
        self.path = Path(self._scratch.name) / TRAIN_FILE
        self.report: Report = augment(fc.train_path, self.path, cfg.augment, data, progress=progress,
                                      limit=fc.max_train_examples)

    def keep(self, run_dir: Path) -> Path:
        """Move the augmented file and its report to run_dir/augment/; returns the file's new path."""
        target = run_dir / "augment"
        target.mkdir(parents=True, exist_ok=True)
        for path in [self.path, *self.report.written]:
            shutil.move(str(path), target / path.name)
        self._scratch.cleanup()
        self.path = target / TRAIN_FILE
        return self.path


def augmented_pieces(cfg: Config, pieces: Iterable[tuple[str, bool]], report_dir: Path, max_chars: int,
                     progress: bool) -> Iterator[tuple[str, bool]]:
    """prepare's training corpus (`pieces`, after any clean and curate stages) augmented: (piece,
    ends_document) of each original and copy. The corpus goes through a scratch jsonl file, since copies are
    made in batches; the stage's report is copied into `report_dir` (the prepared directory)."""
    from lmforge.corpora import iter_pieces
    from lmforge.text.records import DocWriter

    assert cfg.augment is not None
    if not cfg.data.val_path:
        raise ConfigError("augment: prepare would hold out the last data.val_fraction of the token stream, which "
                          "would put copies of training documents in validation; give data.val_path")
    _check_stage(cfg, "data.val_path")
    with tempfile.TemporaryDirectory(prefix=".lmforge-augment-") as scratch:
        corpus, out = Path(scratch) / "corpus.jsonl", Path(scratch) / "augmented.jsonl"
        with DocWriter(corpus) as writer:
            first = True
            for piece, end in pieces:
                writer.write(piece, None, first, end)
                first = end
        report = augment(corpus, out, cfg.augment, DataConfig(format="jsonl"), progress=progress)
        for path in report.written:
            shutil.copyfile(path, report_dir / f"augment{path.name.removeprefix(out.stem)}")
        yield from iter_pieces(DataConfig(path=str(out), format="jsonl"), max_chars=max_chars)
