import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def lmforge_cache(tmp_path_factory):
    """The measured CPU peak (train/peak.py) is cached in the session's tmp dir, not the user's home."""
    os.environ["LMFORGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("lmforge-cache"))

@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """About 30 kB of seeded pseudo-sentences: enough for a tiny char model to learn something."""
    rng = random.Random(0)
    words = "the cat sat on a mat and then it ran to see the dog who was not there".split()
    text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(400))
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(text)
    return path


@pytest.fixture
def tiny_overrides(tiny_corpus, tmp_path) -> list[str]:
    """A 2-layer, 32-wide char GPT on the tiny corpus that trains 20 steps in about a second."""
    return [f"data.path={tiny_corpus}", f"data.prepared_dir={tmp_path / 'prepared'}", "tokenizer.kind=char",
            "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=32",
            "train.micro_batch_size=8", "train.max_steps=20", "train.eval_interval=10", "train.log_interval=5",
            "train.tensorboard=false", "schedule.warmup_steps=2", "sample.num_samples=1",
            "sample.max_new_tokens=20",
            # float32 on every machine: the tests compare runs to 1e-5 or to the bit, which a bf16 run (what auto
            # picks for a GPT on a CPU with AVX512-BF16 or AMX) does not keep; tests/train/test_precision.py
            # covers auto
            "train.dtype=float32"]


@pytest.fixture
def tiny_config(tiny_overrides):
    """`tiny_config("train.max_steps=5", ...)` -> the tiny run's Config with those overrides on top."""
    from lmforge.config import load_config

    return lambda *extra: load_config(None, [*tiny_overrides, *extra])
