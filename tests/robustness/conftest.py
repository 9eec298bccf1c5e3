"""Fixtures of the bad-input campaign: one tiny trained run, copied where a case may change it."""

import shutil
from pathlib import Path

import pytest

from cli_checks import TINY, invoke

@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_corpus) -> Path:
    """A 4-step char GPT with checkpoints at steps 2 and 4. Read it only; copy it (`run_copy`) to change it."""
    root = tmp_path_factory.mktemp("campaign")
    code, _, err = invoke("train", f"data.path={tiny_corpus}", f"data.prepared_dir={root / 'prepared'}", *TINY,
                          "--run-dir", root / "run", "--no-progress")
    assert code == 0, err
    return root / "run"


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """The trained run copied (its prepared data is shared, by path, with the original)."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))
