"""Fixtures of the augmentation tests: a small labelled TSV, and tiny random seq2seq and masked-LM folders."""

from pathlib import Path

import pytest
from tiny_models import save_tiny_mlm, save_tiny_seq2seq

from shared_data import SHARED_DATA

NLTK_DATA = SHARED_DATA / "nltk_data"

SENTENCES = [
    "the film was very good and the actors were great .",
    "a dull , boring movie with no wit .",
    "it is a charming and often affecting journey .",
    "the plot is so bad that the story never recovers .",
    "a lovely , superb film with a great cast .",
    "the movie was quite poor and rather boring .",
    "the dog sat on the mat and the cat ran .",
    "an awful story but the actor is fun .",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from two threads, and OpenMP's spinning threads slow down many times over
    when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def wordnet(monkeypatch):
    if not (NLTK_DATA / "corpora" / "wordnet.zip").is_file():
        pytest.skip(f"WordNet not found in {NLTK_DATA}")
    monkeypatch.setenv("NLTK_DATA", str(NLTK_DATA))


@pytest.fixture
def labelled_tsv(tmp_path):
    """`labelled_tsv(n)`: a sentence/label TSV of n rows (the sentences above, repeated with a number)."""
    def write(n: int = len(SENTENCES), name: str = "train.tsv", rows: list[str] | None = None) -> Path:
        rows = rows if rows is not None else [
            SENTENCES[i % len(SENTENCES)] + ("" if i < len(SENTENCES) else f" {i}") for i in range(n)]
        path = tmp_path / name
        path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{'pos' if i % 2 == 0 else 'neg'}\n"
                                                      for i, s in enumerate(rows)))
        return path
    return write


@pytest.fixture(scope="session")
def tiny_bart(tmp_path_factory) -> Path:
    return save_tiny_seq2seq(tmp_path_factory.mktemp("bart") / "bart", "bart", max_positions=64)


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory) -> Path:
    return save_tiny_seq2seq(tmp_path_factory.mktemp("marian") / "marian", "marian", max_positions=64)


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory) -> Path:
    return save_tiny_mlm(tmp_path_factory.mktemp("mlm") / "bert")


@pytest.fixture(scope="session")
def tiny_bert_encoder(tmp_path_factory) -> Path:
    """A BertModel without the masked-LM head: a fine-tuning backbone, and the wrong folder for method=mask."""
    return save_tiny_mlm(tmp_path_factory.mktemp("bert") / "bert", head=False)
