"""Fixtures of the fine-tuning tests: a random 2-layer BERT saved with save_pretrained, tiny char-level
lmforge GPT and LSTM runs trained for a few steps with the LM trainer, and a sentiment TSV writer."""

from pathlib import Path

import pytest
from ft_data import save_tiny_bert, sentiment_rows


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


def _tiny_lm_run(tmp_path_factory, tiny_corpus, arch_overrides: list[str]) -> Path:
    from lmforge.config import load_config
    from lmforge.train.trainer import train

    root = tmp_path_factory.mktemp("lm")
    cfg = load_config(None, [f"data.path={tiny_corpus}", f"data.prepared_dir={root / 'prepared'}", "tokenizer.kind=char",
                             "train.micro_batch_size=8", "train.max_steps=10", "train.eval_interval=10",
                             "train.log_interval=5", "train.tensorboard=false", "schedule.warmup_steps=2",
                             "sample.num_samples=0", "train.num_threads=1", *arch_overrides])
    train(cfg, root / "run", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def tiny_gpt_run(tmp_path_factory, tiny_corpus) -> Path:
    return _tiny_lm_run(tmp_path_factory, tiny_corpus, ["model.n_layer=2", "model.n_head=2", "model.n_embd=32",
                                                        "model.block_size=64"])


@pytest.fixture(scope="session")
def tiny_lstm_run(tmp_path_factory, tiny_corpus) -> Path:
    return _tiny_lm_run(tmp_path_factory, tiny_corpus, ["model.arch=lstm", "model.n_layer=2", "model.n_embd=32",
                                                        "model.hidden_size=32", "model.block_size=32"])


@pytest.fixture
def sentiment_tsv(tmp_path):
    def write(name: str = "train.tsv", n: int = 24, seed: int = 0, extra: list[tuple[str, str]] = ()) -> Path:
        path = tmp_path / name
        rows = [*sentiment_rows(n, seed), *extra]
        path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows))
        return path
    return write
