"""`lmforge augment` end to end; bad input is one line on stderr, exit status 2, and nothing written."""

import json

import pytest
from typer.testing import CliRunner

from lmforge.cli import app


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_augment_command_writes_copies_splits_and_a_report(labelled_tsv, tmp_path):
    out = tmp_path / "o" / "aug.jsonl"
    code, stdout, err = run("augment", labelled_tsv(20), out, "data.field=sentence", "alpha=0.2", "--method", "noise",
                            "--copies", "2", "--fraction", "0.5", "--seed", "4", "--val-fraction", "0.25",
                            "--no-progress")
    assert code == 0, err
    train = [json.loads(line) for line in (tmp_path / "o" / "aug.train.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (tmp_path / "o" / "aug.val.jsonl").read_text().splitlines()]
    copies = [r for r in train if "augmented_from" in r]
    assert copies and all(r["augment_method"] == "noise" and r["label"] in ("pos", "neg") for r in copies)
    assert all("augmented_from" not in r for r in val)
    report = json.loads((tmp_path / "o" / "aug.report.json").read_text())
    assert report["settings"]["augment"]["alpha"] == 0.2 and report["settings"]["augment"]["copies"] == 2
    assert f"copies written of {report['extra']['copies_requested']}" in stdout and "aug.report.md" in stdout


def test_augment_command_warns_about_empty_texts(labelled_tsv, tmp_path):
    source = labelled_tsv(rows=["a good film", "   ", "a bad film"])
    code, _, err = run("augment", source, tmp_path / "o.jsonl", "data.field=sentence", "--method", "noise",
                       "--no-progress")
    assert code == 0 and "warning: 1 empty text(s) skipped" in err


@pytest.mark.parametrize("args,message", [
    (["{tmp}/missing.tsv", "{tmp}/o.jsonl"], "missing.tsv: no such file"),
    (["{src}", "{tmp}/o.txt"], "the output must be .jsonl"),
    (["{src}", "{tmp}/o.jsonl", "--method", "translate"], "augment.method: Input should be"),
    (["{src}", "{tmp}/o.jsonl", "--method", "mask"], "method=mask needs model"),
    (["{src}", "{tmp}/o.jsonl", "--method", "backtranslate", "--model", "{tmp}"], "needs back_model"),
    (["{src}", "{tmp}/o.jsonl", "--method", "summarize", "summary=abstractive"], "summary=abstractive needs model"),
    (["{src}", "{tmp}/o.jsonl", "--method", "mask", "--model", "{tmp}/nowhere"], "model folder not found"),
    (["{src}", "{tmp}/o.jsonl", "--method", "mask", "--model", "{tmp}"], "not a Hugging Face model folder"),
    (["{src}", "{tmp}/o.jsonl", "--val-fraction", "0.6", "--test-fraction", "0.5"], "must leave some examples"),
    (["{src}", "{tmp}/o.jsonl", "colour=red"], "augment.colour: unknown key"),
    (["{src}", "{tmp}/o.jsonl", "data.field=review"], "no column 'review'"),
])
def test_bad_input_is_one_line_with_status_2(labelled_tsv, tmp_path, args, message):
    source = labelled_tsv()
    code, _, err = run("augment", *(a.format(tmp=tmp_path, src=source) for a in args))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("o.*"))


def test_a_corpus_of_only_empty_texts_is_an_error(labelled_tsv, tmp_path):
    code, _, err = run("augment", labelled_tsv(rows=[" ", "  "]), tmp_path / "o.jsonl", "data.field=sentence")
    assert code == 2 and "no texts to augment" in err
    assert not list(tmp_path.glob("o.*"))
