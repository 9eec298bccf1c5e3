"""`lmforge clean` and `lmforge curate` end to end; bad input is one line on stderr and exit status 2."""

import json

import pytest
from typer.testing import CliRunner

from lmforge.cli import app


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("<p>Call 555 1234 at https://x.org</p>\n\nThe   cats were running.\n\nThe   cats were running.\n")
    return path


def test_clean_with_preset_steps_and_overrides(corpus, tmp_path):
    out = tmp_path / "o" / "clean.jsonl"
    code, stdout, err = run("clean", corpus, out, "data.txt_documents=blank_line", "numbers=zero",
                            "--steps", "html,mask,numbers,whitespace", "--no-progress", "--workers", "1")
    assert code == 0, err
    assert "clean: 3 -> 3 documents" in stdout and "clean.report.md" in stdout
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == [
        "Call 000 0000 at xxurl", "The cats were running.", "The cats were running."]
    report = json.loads((tmp_path / "o" / "clean.report.json").read_text())
    assert report["settings"]["clean"]["numbers"] == "zero" and report["steps"]["mask"]["counts"] == {"urls": 1}


def test_curate_with_clean_first_and_splits(corpus, tmp_path):
    out = tmp_path / "cur.txt"
    code, stdout, err = run("curate", corpus, out, "data.txt_documents=blank_line", "quality=null",
                            "test_fraction=0.5", "--clean", "lm", "--no-progress")
    assert code == 0, err
    texts = [t for split in ("train", "val", "test") for t in (tmp_path / f"cur.{split}.txt").read_text().split("\n\n")
             if t.strip()]
    assert sorted(t.strip() for t in texts) == ["Call 555 1234 at https://x.org", "The cats were running."]
    assert "curate: 3 -> 2 documents" in stdout


@pytest.mark.parametrize("args,message", [
    (["clean", "{tmp}/missing.txt", "{tmp}/o.jsonl"], "missing.txt: no such file"),
    (["clean", "{corpus}", "{tmp}/in.txt/o.jsonl"], "cannot write there"),
    (["clean", "{corpus}", "{tmp}/o.parquet"], "the output must end in .jsonl, .ndjson, .txt"),
    (["clean", "{corpus}", "{tmp}/o.txt", "--preset", "fancy"], "clean.preset: Input should be 'lm' or 'classic'"),
    (["clean", "{corpus}", "{tmp}/o.txt", "--steps", "html,nope"], "clean.steps.1"),
    (["clean", "{corpus}", "{tmp}/o.txt", "colour=red"], "clean.colour: unknown key"),
    (["curate", "{corpus}", "{tmp}/o.txt", "balance=up"], "balance needs label_field"),
    (["curate", "{corpus}", "{tmp}/o.txt", "--num-partitions", "2", "--partition", "2"], "partition 2 of 2"),
])
def test_bad_input_is_one_line_with_status_2(corpus, tmp_path, args, message):
    code, stdout, err = run(*(a.format(tmp=tmp_path, corpus=corpus) for a in args))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("o.*"))
