"""Every bad corpus file (badfiles.py: every reader format, plain and gzipped) given to every verb that reads a
corpus: exit status 2, one line naming the file, no traceback, nothing written that looks finished.

The text stages (clean, curate, augment) are made for dirty data: damage inside the text (bad bytes, a bad record
among good ones) is repaired or skipped and counted in their report (docs/cleaning.md). For those files they
may instead finish, but only with the damage counted; a file they cannot read at all is refused as everywhere."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from badfiles import DOCS, corpus_files, write
from cli_checks import TINY, assert_one_line_error, invoke, leftovers


@dataclass(frozen=True)
class Reader:
    """A verb that reads a corpus: its arguments for the file, and the outputs that must not appear."""
    argv: Callable[[Path, Path, Path], list]  # (bad file, work folder, trained run) -> arguments
    outputs: tuple[str, ...]  # under the work folder
    report: str | None = None  # a text stage's report, under the work folder


VERBS = {
    "clean": Reader(lambda f, w, r: ["clean", f, w / "out.jsonl", "--workers", "1", "--no-progress"],
                    ("out.jsonl", "out.report.json", "out.report.md"), "out.report.json"),
    "curate": Reader(lambda f, w, r: ["curate", f, w / "out.jsonl", "--workers", "1", "--no-progress"],
                     ("out.jsonl", "out.report.json", "out.report.md"), "out.report.json"),
    "augment": Reader(lambda f, w, r: ["augment", f, w / "out.jsonl", "--method", "noise", "--no-progress"],
                      ("out.jsonl", "out.train.jsonl", "out.report.json"), "out.report.json"),
    "prepare": Reader(lambda f, w, r: ["prepare", f"data.path={f}", f"data.prepared_dir={w / 'prepared'}", *TINY,
                                       "--no-progress"], ("prepared",)),
    "train": Reader(lambda f, w, r: ["train", f"data.path={f}", f"data.prepared_dir={w / 'prepared'}", *TINY,
                                     "--run-dir", w / "run", "--no-progress"], ("prepared", "run")),
    "eval": Reader(lambda f, w, r: ["eval", r, "--data", f], ()),
    "bakeoff": Reader(lambda f, w, r: ["bakeoff", f"data.path={f}", f"data.prepared_dir={w / 'prepared'}", *TINY,
                                       "--models", "gpt", "--budget", "1ktok", "--out", w / "bo", "--no-progress"],
                      ("prepared", "bo/bakeoff.json", "bo/gpt")),
}

def damage_counted(report: dict) -> int:
    """What a text stage's report counts as repaired or skipped: replaced bytes, malformed records, documents
    the binary guard removed, NULs read or dropped."""
    read = {**report.get("read", {}), **report.get("extra", {})}
    steps = report.get("steps", {})
    return (read.get("malformed_records", 0) + read.get("invalid_utf8_replaced_chars", 0)
            + read.get("nul_chars", 0) + steps.get("binary", {}).get("removed", 0)
            + steps.get("nul", {}).get("changed", 0))


CASES = [(verb, bad) for bad in corpus_files() for verb in VERBS]


@pytest.mark.parametrize("verb,bad", CASES, ids=[f"{verb}:{bad.id}" for verb, bad in CASES])
def test_a_bad_corpus_file_is_one_line_and_writes_nothing(verb, bad, trained_run, tmp_path):
    src, work = tmp_path / "src", tmp_path / "work"
    src.mkdir(), work.mkdir()
    path = write(bad, src)
    evals = (trained_run / "evals.jsonl").read_bytes() if (trained_run / "evals.jsonl").exists() else b""
    reader = VERBS[verb]
    code, _, err = invoke(*reader.argv(path, work, trained_run))
    if code == 0 and bad.dirty and reader.report:
        assert damage_counted(json.loads((work / reader.report).read_text())) > 0, err
        return
    assert_one_line_error(code, err, str(path))
    assert any(n in err for n in ((bad.needle,) if isinstance(bad.needle, str) else bad.needle)), err
    assert [o for o in VERBS[verb].outputs if (work / o).exists()] == [] and leftovers(tmp_path) == []
    if verb == "eval":
        now = (trained_run / "evals.jsonl").read_bytes() if (trained_run / "evals.jsonl").exists() else b""
        assert now == evals


def _datasets_folder(kind: str, root: Path) -> tuple[str, str]:
    """A `datasets` corpus that cannot be read, and what its one-line error says: (data.path, needle)."""
    import datasets

    folder = root / "ds"
    datasets.Dataset.from_dict({"text": DOCS}).save_to_disk(str(folder))
    if kind == "no-state-json":
        (folder / "state.json").unlink()
        return str(folder), f"{folder}: has dataset_info.json but no state.json"
    if kind == "state-json-of-another-kind":  # lmforge's own checkpoints hold a state.json
        (folder / "state.json").write_text(json.dumps({"step": 2, "rng": [1, 2]}))
        return str(folder), f"{folder}: state.json is not a datasets save_to_disk state"
    if kind == "no-such-split":
        datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"text": DOCS})}).save_to_disk(str(root / "dd"))
        return str(root / "dd"), f"{root / 'dd'}: no split 'train' in this DatasetDict folder"
    if kind == "field-absent":
        return str(folder), f"{folder / 'data-00000-of-00001.arrow'}: no column 'body'"
    hub = root / "hub"  # hf-field-absent: a local folder streamed as hf:, offline
    hub.mkdir()
    (hub / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    return f"hf:{hub}", f"hf:{hub} (split 'train'): no field 'body'"


DATASETS_CASES = [(verb, kind) for kind in ("no-state-json", "state-json-of-another-kind", "no-such-split",
                                           "field-absent", "hf-field-absent") for verb in ("prepare", "clean")]


@pytest.mark.parametrize("verb,kind", DATASETS_CASES, ids=[f"{v}:{k}" for v, k in DATASETS_CASES])
def test_a_bad_datasets_corpus_is_one_line_and_writes_nothing(verb, kind, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path, needle = _datasets_folder(kind, tmp_path)
    field = ["data.field=body"] if kind.endswith("field-absent") else []
    if verb == "prepare":
        argv = ["prepare", f"data.path={path}", f"data.prepared_dir={work / 'prepared'}", *field, *TINY, "--no-progress"]
    else:
        argv = ["clean", path, work / "out.jsonl", *field, "--workers", "1", "--no-progress"]
    code, _, err = invoke(*argv)
    assert_one_line_error(code, err, needle)
    # prepare's lock file (a zero-byte .prepared.lock) is all that may remain
    assert [p.name for p in work.iterdir() if p.name != ".prepared.lock"] == [] and leftovers(tmp_path) == []
