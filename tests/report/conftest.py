"""Tiny runs for the report tests: a char GPT trained for 20 steps, made once per session."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_corpus) -> Path:
    from lmforge.config import load_config
    from lmforge.train.trainer import train

    root = tmp_path_factory.mktemp("report-run")
    cfg = load_config(None, [f"data.path={tiny_corpus}", f"data.prepared_dir={root / 'prepared'}", "tokenizer.kind=char",
                             "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=32",
                             "train.micro_batch_size=8", "train.max_steps=20", "train.eval_interval=10",
                             "train.log_interval=2", "train.tensorboard=false", "schedule.warmup_steps=2",
                             "sample.num_samples=1", "sample.max_new_tokens=20", "train.num_threads=1"])
    train(cfg, root / "run", progress=False)
    return root / "run"
