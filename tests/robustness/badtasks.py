"""Bad task files, generated: every kind of damage that applies to each format that fine-tuning, predict and
score read (classify tables in tsv, csv and jsonl; CoNLL tags; SQuAD JSON), from whole-file damage (missing,
empty, binary, another encoding, cut inside a record) to the damage of one field (an unknown tag, a tag column
out of step, an answer outside its context). `task_files()` is the list."""

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from finetune.ft_data import ner_sentences, sentiment_rows, squad_data

GOOD_ROWS = sentiment_rows(16)


@dataclass(frozen=True)
class BadTask:
    id: str  # "tsv/short-row"
    task: str  # classify, tag or qa
    name: str  # the file name, its extension the format
    content: Callable[[], bytes | None]  # None: the file is not there
    needle: str | tuple[str, ...] = ""  # what the one-line error says besides the file's name (one of them)
    labels: bool = False  # damage to the labels, tags or answers only: predict reads none of them
    unseen: bool = False  # a label or tag training never saw: in evaluation data it is counted and warned about


# -- the good files --------------------------------------------------------------------------------------------

def table(fmt: str, rows=GOOD_ROWS, header=("sentence", "label")) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(dict(zip(header, r))) + "\n" for r in rows).encode()
    sep = "\t" if fmt == "tsv" else ","
    return (sep.join(header) + "\n" + "".join(sep.join(r) + "\n" for r in rows)).encode()


def conll(sentences=None) -> bytes:
    sentences = ner_sentences(8) if sentences is None else sentences
    return "\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in sentences).encode()


def squad(edit: Callable[[dict], object] | None = None) -> bytes:
    data = squad_data(6)
    if edit is not None:
        data = edit(data) or data
    return json.dumps(data, indent=1).encode()


GOOD = {"tsv": lambda: table("tsv"), "csv": lambda: table("csv"), "jsonl": lambda: table("jsonl"),
        "conll": conll, "json": squad}
TASK = {"tsv": "classify", "csv": "classify", "jsonl": "classify", "conll": "tag", "json": "qa"}


def _cut_in_last_record(fmt: str) -> bytes:
    """The file cut inside its last record, before the field that would close it (a row's label, a token's
    tag, the JSON's closing brackets): no reader may take it for a whole one."""
    data = GOOD[fmt]()
    if fmt == "json":
        return data[: len(data) // 2]
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[0] + b"\n"
    record = data[len(last):]
    return last + (record.split(b"\t")[0] if fmt == "conll" else record[:3])


# -- damage to any format ---------------------------------------------------------------------------------------

def _whole_file(fmt: str) -> list[BadTask]:
    good = GOOD[fmt]
    latin = good().replace(b"a", "\u00e9".encode("latin-1"), 1)
    # a token without its tag is what unlabelled CoNLL (predict's input) is made of
    return [BadTask(f"{fmt}/{kind}", TASK[fmt], f"bad.{fmt}", content, needle,
                    labels=fmt == "conll" and kind == "cut-in-record") for kind, content, needle in [
        ("missing", lambda: None, "no such file"),
        ("empty", lambda: b"", ("empty", "no ")),
        ("binary", lambda: random.Random(0).randbytes(2048), "not UTF-8"),
        ("utf-16", lambda: good().decode().encode("utf-16"), "not UTF-8"),
        ("latin-1", lambda: latin, "not UTF-8"),
        ("cut-in-record", lambda: _cut_in_last_record(fmt), ("columns", "invalid JSON", "expected a token and a tag",
                                                              "column")),
        ("a-directory", "dir", "a directory"),
    ]]


# -- damage to one format ---------------------------------------------------------------------------------------

def _rows_with(fmt: str, at: int, values: tuple[str, ...]) -> bytes:
    rows = [*GOOD_ROWS[:at], values, *GOOD_ROWS[at:]]
    if fmt == "jsonl":
        return "".join(json.dumps(dict(zip(("sentence", "label", "extra"), r))) + "\n" for r in rows).encode()
    sep = "\t" if fmt == "tsv" else ","
    return ("sentence" + sep + "label\n" + "".join(sep.join(r) + "\n" for r in rows)).encode()


def _tables(fmt: str) -> list[BadTask]:
    cases = [
        ("no-text-column", lambda: table(fmt, header=("review", "label")), "no text column 'sentence'", False),
        ("no-label-column", lambda: table(fmt, header=("sentence", "score")), "no label column 'label'", True),
        ("no-rows", lambda: table(fmt, rows=[]) if fmt != "jsonl" else b"\n\n", ("no rows", "no text column"), False),
        ("empty-label@5", lambda: _rows_with(fmt, 5, ("a good film", "")), "row 6: empty label", True),
        ("unseen-label@3", lambda: _rows_with(fmt, 3, ("a film", "neutral")), "never saw ('neutral' x1)", True),
    ]
    if fmt == "jsonl":
        lines = table(fmt).decode().splitlines()
        cases += [
            ("malformed@7", lambda: "\n".join([*lines[:6], '{"sentence": "a film", "label": ', *lines[6:]]).encode(),
             "line 7", False),
            ("not-an-object@2", lambda: "\n".join([lines[0], '["a film", "pos"]', *lines[1:]]).encode(), "line 2",
             False),
            ("label-null@4", lambda: "\n".join([*lines[:3], '{"sentence": "a film", "label": null}', *lines[3:]]).encode(),
             "row 4 has no label", True),
            ("label-a-list@4", lambda: "\n".join([*lines[:3], '{"sentence": "a film", "label": ["pos"]}',
                                                  *lines[3:]]).encode(), "row 4: label", True),
        ]
    else:
        cases += [
            ("short-row@4", lambda: _rows_with(fmt, 3, ("a film with no label",)), "line 5: 1 columns", False),
            ("long-row@9", lambda: _rows_with(fmt, 8, ("a film", "pos", "extra")), "line 10: 3 columns", False),
        ]
    if fmt == "csv":
        cases.append(("open-quote@6", lambda: _rows_with("csv", 5, ('"a film, never closed', "pos")), "line", False))
    return [BadTask(f"{fmt}/{kind}", "classify", f"bad.{fmt}", content, needle, labels=labels,
                    unseen=kind.startswith("unseen")) for kind, content, needle, labels in cases]


def _conll_lines(edit: Callable[[list[str]], list[str]]) -> Callable[[], bytes]:
    return lambda: "\n".join(edit(conll().decode().split("\n"))).encode()


def _conll() -> list[BadTask]:
    cases = [
        ("tag-missing@3", _conll_lines(lambda ls: [*ls[:2], ls[2].split("\t")[0], *ls[3:]]),
         "line 3: expected a token and a tag", True),
        ("columns-swapped@4", _conll_lines(lambda ls: [*ls[:3], "\t".join(ls[3].split("\t")[::-1]), *ls[4:]]),
         "line 4: tag 'Lima' is not O", True),
        ("bad-tag@4", _conll_lines(lambda ls: [*ls[:3], ls[3].split("\t")[0] + "\tX-person", *ls[4:]]),
         "line 4: ", True),
        ("no-tokens", lambda: b"-DOCSTART- -X- O O\n\n\n", ("no tagged tokens", "no tokens"), False),
        ("unseen-tag@2", _conll_lines(lambda ls: [ls[0], ls[1].split("\t")[0] + "\tB-date", *ls[2:]]),
         "never saw ('B-date' x1)", True),
    ]
    return [BadTask(f"conll/{kind}", "tag", "bad.conll", content, needle, labels=labels,
                    unseen=kind.startswith("unseen")) for kind, content, needle, labels in cases]


def _qa(path: str, value=None, delete: bool = False) -> Callable[[], bytes]:
    """The SQuAD file with the field at `path` (dots; digits index lists) set to value, or deleted."""
    def edit(data):
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = data
        for p in parents:
            node = node[p]
        if delete:
            del node[last]
        else:
            node[last] = value
    return lambda: squad(edit)


ANSWER = "data.0.paragraphs.2.qas.0.answers.0"
QA = "data.0.paragraphs.2.qas.0"


def _squad() -> list[BadTask]:
    cases = [
        ("a-list", lambda: b"[]", "not a SQuAD file", False),
        ("data-not-a-list", _qa("data", {"title": "t"}), "not a SQuAD file", False),
        ("no-questions", _qa("data", []), "no questions", False),
        ("paragraphs-missing", _qa("data.0.paragraphs", delete=True), "paragraphs", False),
        ("context-missing", _qa("data.0.paragraphs.2.context", delete=True), "context", False),
        ("context-a-number", _qa("data.0.paragraphs.2.context", 7), "context", False),
        ("qas-missing", _qa("data.0.paragraphs.2.qas", delete=True), "qas", False),
        ("question-missing", _qa(f"{QA}.question", delete=True), "question", False),
        ("question-a-number", _qa(f"{QA}.question", 7), "question", False),
        ("id-missing", _qa(f"{QA}.id", delete=True), "id", False),
        ("answers-missing", _qa(f"{QA}.answers", delete=True), "q2: no answers", True),
        ("answer-past-the-context", _qa(f"{ANSWER}.answer_start", 10_000), "q2: answer", True),
        ("answer-before-the-context", _qa(f"{ANSWER}.answer_start", -3), "q2: answer", True),
        ("answer-elsewhere", _qa(f"{ANSWER}.answer_start", 0), "is not in its context at answer_start 0", True),
        ("answer-not-in-context", _qa(f"{ANSWER}.text", "purple"), "'purple' is not in its context", True),
        ("answer-empty", _qa(f"{ANSWER}.text", ""), "q2: empty answer", True),
        ("answer-start-text", _qa(f"{ANSWER}.answer_start", "nine"), "answer_start", True),
        ("answer-start-missing", _qa(f"{ANSWER}.answer_start", delete=True), "answer_start", True),
    ]
    return [BadTask(f"json/{kind}", "qa", "bad.json", content, needle, labels=labels)
            for kind, content, needle, labels in cases]


def task_files() -> list[BadTask]:
    return [*(c for fmt in GOOD for c in _whole_file(fmt)), *(c for fmt in ("tsv", "csv", "jsonl") for c in _tables(fmt)),
            *_conll(), *_squad()]


def write(bad: BadTask, folder: Path) -> Path:
    path = folder / bad.name
    content = bad.content if bad.content == "dir" else bad.content()
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    return path
