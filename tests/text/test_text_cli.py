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


def test_clean_html_extract_main_keeps_a_pages_body_without_its_boilerplate(tmp_path):
    body = ("Ferries to the outer islands leave the north quay at seven each morning and return at dusk, weather "
            "permitting, and the crossing takes a little under two hours in calm water.",
            "Tickets are sold on board; bicycles travel free, and the cafe on the lower deck serves soup and fresh "
            "bread baked in the village the same morning.")
    page = ("<!DOCTYPE html><html><body><div id='cookie-consent'>This site uses cookies for analytics. "
            "<button>Accept all</button></div><nav><a href='/'>Home</a> | <a href='/timetable'>Timetables</a> | "
            "<a href='/contact'>Contact</a></nav><main><h1>Island ferries</h1>" + "".join(f"<p>{p}</p>" for p in body)
            + "</main><footer><a href='/terms'>Terms of Use</a> &copy; 2026 Harbour Board</footer></body></html>")
    src = tmp_path / "pages.jsonl"
    src.write_text(json.dumps({"text": page, "url": "https://example.org/ferries"}) + "\n")
    texts = {}
    for mode in ("text", "main"):
        out = tmp_path / f"{mode}.jsonl"
        code, stdout, err = run("clean", src, out, "--preset", "lm", f"html_extract={mode}", "--no-progress")
        assert code == 0, err
        [row] = [json.loads(line) for line in out.read_text().splitlines()]
        assert row["url"] == "https://example.org/ferries" and all(p in row["text"] for p in body)
        texts[mode] = row["text"]
        report = json.loads((tmp_path / f"{mode}.report.json").read_text())
        assert report["settings"]["clean"]["html_extract"] == mode
    boilerplate = ["cookies", "Accept all", "Home", "Timetables", "Contact", "Terms of Use", "Harbour Board"]
    assert all(b in texts["text"] for b in boilerplate)
    assert not [b for b in boilerplate if b in texts["main"]], texts["main"]


@pytest.mark.parametrize("args,message", [
    (["clean", "{tmp}/missing.txt", "{tmp}/o.jsonl"], "missing.txt: no such file"),
    (["clean", "{corpus}", "{tmp}/in.txt/o.jsonl"], "cannot write there"),
    (["clean", "{corpus}", "{tmp}/o.parquet"], "the output must end in .jsonl, .ndjson, .txt"),
    (["clean", "{corpus}", "{tmp}/o.txt", "--preset", "fancy"], "clean.preset: Input should be 'lm' or 'classic'"),
    (["clean", "{corpus}", "{tmp}/o.txt", "--steps", "html,nope"], "clean.steps.1"),
    (["clean", "{corpus}", "{tmp}/o.txt", "colour=red"], "clean.colour: unknown key"),
    (["clean", "{corpus}", "{tmp}/o.txt", "html_extract=boilerpipe"], "clean.html_extract: Input should be 'text' or 'main'"),
    (["curate", "{corpus}", "{tmp}/o.txt", "balance=up"], "balance needs label_field"),
    (["curate", "{corpus}", "{tmp}/o.txt", "--num-partitions", "2", "--partition", "2"], "partition 2 of 2"),
])
def test_bad_input_is_one_line_with_status_2(corpus, tmp_path, args, message):
    code, stdout, err = run(*(a.format(tmp=tmp_path, corpus=corpus) for a in args))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("o.*"))


def json_dataset(*paths):
    import datasets

    return datasets.load_dataset("json", data_files=[str(p) for p in paths], split="train")


@pytest.mark.parametrize("source", ["save_to_disk", "hf"])
def test_clean_and_curate_outputs_load_with_datasets_json(tmp_path, source):
    import datasets

    texts = [f"Document {i} says the   cat sat on mat number {i}." for i in range(30)]
    ds = datasets.Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(30)]})
    if source == "save_to_disk":
        ds.save_to_disk(str(tmp_path / "ds"))
        src = tmp_path / "ds"
    else:  # a folder load_dataset takes, streamed as hf:, offline
        (tmp_path / "hub").mkdir()
        ds.to_json(str(tmp_path / "hub" / "train.jsonl"))
        src = f"hf:{tmp_path / 'hub'}"
    code, _, err = run("clean", src, tmp_path / "clean.jsonl", "--no-progress", "--workers", "1")
    assert code == 0, err
    cleaned = json_dataset(tmp_path / "clean.jsonl")
    mine = [json.loads(line) for line in (tmp_path / "clean.jsonl").read_text().splitlines()]
    assert cleaned["text"] == [r["text"] for r in mine] == [" ".join(t.split()) for t in texts]
    assert cleaned["label"] == ds["label"]  # the record's other fields ride along

    code, _, err = run("curate", tmp_path / "clean.jsonl", tmp_path / "cur.jsonl", "quality=null",
                       "val_fraction=0.2", "--no-progress", "--workers", "1")
    assert code == 0, err
    splits = [tmp_path / f"cur.{s}.jsonl" for s in ("train", "val") if (tmp_path / f"cur.{s}.jsonl").exists()]
    curated = json_dataset(*splits)
    mine = [json.loads(line) for p in splits for line in p.read_text().splitlines()]
    assert curated["text"] == [r["text"] for r in mine] and sorted(curated["text"]) == sorted(cleaned["text"])
    assert len(json_dataset(splits[1])) > 0  # both splits are datasets of their own


def test_a_missing_field_of_a_datasets_folder_is_one_line(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"body": ["a b c"]}).save_to_disk(str(tmp_path / "ds"))
    code, _, err = run("clean", tmp_path / "ds", tmp_path / "o.jsonl", "--no-progress", "--workers", "1")
    assert code == 2 and "ds/data-00000-of-00001.arrow: no column 'text' (columns: body)" in err, err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.glob("o.*"))
