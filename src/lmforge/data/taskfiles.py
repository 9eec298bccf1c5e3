"""The task files lmforge reads: what `lmforge score` compares and what `lmforge finetune` trains and
predicts on, checked so that bad input is one line naming the file and line.

- Line-aligned text (BLEU, chrF, METEOR): UTF-8, one segment per line, line i of the hypotheses paired
  with line i of the references. `\\n` or `\\r\\n` line ends; a final line end is optional.
- Tables (fine-tuning classify / lm): TSV (no quoting, as GLUE's), CSV or JSONL rows, the text and label
  columns named in the recipe; lm also takes .txt, one row per line. A multi-label column holds the labels
  joined by a separator.
- CoNLL columns (entity F1, fine-tuning tag): one token per line, the token in the first column and its
  BIO tag in the last (tab- or space-separated), a blank line between sentences, `-DOCSTART-` lines
  ignored. Predictions and gold must have the same sentences with the same number of tokens; the tokens
  themselves are not compared (systems often normalise them). Unlabelled input (for predict) may hold only
  the token column.
- SQuAD (v1.1): the official dataset JSON (`{"data": [{"paragraphs": [{"qas": [...]}]}]}`) and a
  predictions JSON object `{question id: answer text}`, as the official evaluation script takes them.
  Fine-tuning reads the dataset's questions (`read_squad_examples`); a labelled file must place every
  answer at its answer_start in its context.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.corpora import json_record
from lmforge.errors import DataError
from lmforge.eval.tasks import split_tag


def read_text(path: str | Path) -> str:
    """A UTF-8 file's text, or a DataError naming the line of the first undecodable byte."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: unreadable ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 (byte 0x{data[e.start]:02x})") from None
    if not text:
        raise DataError(f"{path}: empty file")
    return text


def read_lines(path: str | Path) -> list[str]:
    """Lines split at `\\n` only (not at the other characters str.splitlines breaks on), `\\r\\n` accepted."""
    lines = read_text(path).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_aligned_lines(hypotheses: str | Path, references: str | Path) -> tuple[list[str], list[str]]:
    """Hypothesis and reference lines, which must pair up one to one."""
    hyp, ref = read_lines(hypotheses), read_lines(references)
    if len(hyp) != len(ref):
        longer, shorter, n = (hypotheses, references, len(ref)) if len(hyp) > len(ref) else (references, hypotheses, len(hyp))
        raise DataError(f"{longer}: line {n + 1} has no counterpart in {shorter}, which has {n} lines")
    return hyp, ref


@dataclass
class TaggedSentence:
    line: int  # of its first token
    tokens: list[str]
    tags: list[str]


def read_conll(path: str | Path) -> list[TaggedSentence]:
    """Sentences of (token, BIO tag) from a CoNLL column file."""
    sentences: list[TaggedSentence] = []
    current: TaggedSentence | None = None
    for number, line in enumerate(read_lines(path), 1):
        # tab-separated when there is a tab, else space-separated: a token may be an odd Unicode space
        columns = [c for c in (line.split("\t") if "\t" in line else line.split(" ")) if c]
        if not columns or columns[0] == "-DOCSTART-":
            current = None
            continue
        if len(columns) < 2:
            raise DataError(f"{path}: line {number}: expected a token and a tag, found 1 column ({line.strip()!r})")
        try:
            split_tag(columns[-1])
        except ValueError as e:
            raise DataError(f"{path}: line {number}: {e}") from None
        if current is None:
            current = TaggedSentence(number, [], [])
            sentences.append(current)
        current.tokens.append(columns[0])
        current.tags.append(columns[-1])
    if not sentences:
        raise DataError(f"{path}: no tagged tokens")
    return sentences


def read_tagged_pair(predicted: str | Path, gold: str | Path) -> tuple[list[list[str]], list[list[str]]]:
    """The tag sequences of a predictions file and a gold file, checked to cover the same tokens."""
    pred, true = read_conll(predicted), read_conll(gold)
    for n, (p, g) in enumerate(zip(pred, true), 1):
        if len(p.tags) != len(g.tags):
            raise DataError(f"{predicted}: line {p.line}: sentence {n} has {len(p.tags)} tokens, but in {gold} "
                            f"(line {g.line}) it has {len(g.tags)}")
    if len(pred) != len(true):
        longer, shorter, extra = (predicted, gold, pred) if len(pred) > len(true) else (gold, predicted, true)
        n = min(len(pred), len(true))
        raise DataError(f"{longer}: line {extra[n].line}: sentence {n + 1} has no counterpart in {shorter}, "
                        f"which has {n} sentences")
    return [s.tags for s in pred], [s.tags for s in true]


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None


def read_squad(predictions: str | Path, dataset: str | Path) -> tuple[list[dict], dict[str, str]]:
    """A SQuAD v1.1 dataset's `data` list and a predictions object, with the fields scoring needs checked."""
    data = read_json(dataset)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{dataset}: not a SQuAD dataset (expected an object with a \"data\" list)")
    for i, article in enumerate(data["data"]):
        where = f"{dataset}: data[{i}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f"{where}: expected an object with a \"paragraphs\" list")
        for j, paragraph in enumerate(article["paragraphs"]):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                raise DataError(f"{where}.paragraphs[{j}]: expected an object with a \"qas\" list")
            for k, qa in enumerate(qas):
                ok = (isinstance(qa, dict) and isinstance(qa.get("id"), str) and isinstance(qa.get("answers"), list)
                      and qa["answers"] and all(isinstance(a, dict) and isinstance(a.get("text"), str) for a in qa["answers"]))
                if not ok:
                    raise DataError(f"{where}.paragraphs[{j}].qas[{k}]: expected an \"id\" and a non-empty "
                                    f"\"answers\" list of {{\"text\": ...}} (SQuAD v1.1)")
    preds = read_json(predictions)
    if not isinstance(preds, dict) or not all(isinstance(v, str) for v in preds.values()):
        raise DataError(f"{predictions}: not SQuAD predictions (expected an object of question id: answer text)")
    return data["data"], preds


# -- tables (classify, lm) ----------------------------------------------------------------------------------

@dataclass
class Table:
    path: Path
    columns: list[str]
    rows: list[dict] = field(default_factory=list)


def table_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    known = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".txt": "txt"}
    if suffix not in known:
        raise DataError(f"{path}: cannot tell the format from the extension {suffix!r}; set finetune.format")
    return known[suffix]


def read_table(path: str | Path, fmt: str, text_column: str) -> Table:
    """Rows of a TSV (no quoting, as GLUE's), CSV, JSONL or TXT (one row per line, in `text_column`) file."""
    path = Path(path)
    fmt = table_format(path, fmt)
    if fmt == "txt":
        rows = [{text_column: line} for line in read_lines(path) if line.strip()]
        return _with_rows(Table(path, [text_column], rows))
    if fmt == "jsonl":
        rows, columns = [], {}
        for number, line in enumerate(read_lines(path), 1):
            if not line.strip():
                continue
            row = json_record(line, f"{path} line {number}")
            columns.update(dict.fromkeys(row))
            rows.append(row)
        return _with_rows(Table(path, list(columns), rows))
    # the whole text, not lines: a quoted CSV field may hold a line break
    text = io.StringIO(read_text(path), newline="")
    reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else csv.reader(text)
    try:
        header = next(reader)
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise DataError(f"{path}: line {reader.line_num}: {len(values)} columns, but the header has "
                                f"{len(header)}")
            rows.append(dict(zip(header, values)))
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: {e}") from None
    return _with_rows(Table(path, header, rows))


def _with_rows(table: Table) -> Table:
    if not table.rows:
        raise DataError(f"{table.path}: no rows" + (f" (only the header: {', '.join(table.columns)})"
                                                    if table.columns else ""))
    return table


def column(table: Table, name: str, what: str) -> list[str]:
    if name not in table.columns:
        raise DataError(f"{table.path}: no {what} column {name!r} (columns: {', '.join(table.columns) or 'none'})")
    values = []
    for i, row in enumerate(table.rows):
        value = row.get(name)
        if value is None:
            raise DataError(f"{table.path}: row {i + 1} has no {what} {name!r}")
        if isinstance(value, (list, dict)):  # a JSON row's field: str() of it would pass for a label
            raise DataError(f"{table.path}: row {i + 1}: {what} {name!r} is a JSON {type(value).__name__}, not a "
                            f"string (several labels: one string joined by finetune.label_separator)")
        values.append(str(value).strip())
    return values


def split_labels(raw: list[str], multi: bool, separator: str, path: Path) -> list[list[str]]:
    """Each example's labels: one, or (multi-label) any number, separated by `separator`."""
    if not multi:
        for i, label in enumerate(raw):
            if not label:  # would become a class named ""
                raise DataError(f"{path}: row {i + 1}: empty label")
        return [[label] for label in raw]
    return [[part.strip() for part in label.split(separator) if part.strip()] for label in raw]


def label_list(labels: list[list[str]], path: Path) -> list[str]:
    names = sorted({label for example in labels for label in example})
    if not names:
        raise DataError(f"{path}: no labels")
    return names


# -- tagging (CoNLL) ----------------------------------------------------------------------------------------

@dataclass
class Sentence:
    words: list[str]
    tags: list[str] | None


def read_tagged(path: str | Path, labelled: bool) -> list[Sentence]:
    """CoNLL sentences; unlabelled input (for predict) may hold only the token column."""
    if labelled:
        return [Sentence(s.tokens, s.tags) for s in read_conll(path)]
    sentences: list[Sentence] = []
    current: list[str] = []
    for line in [*read_lines(path), ""]:
        columns = [c for c in (line.split("\t") if "\t" in line else line.split(" ")) if c]
        if columns and columns[0] != "-DOCSTART-":
            current.append(columns[0])
        elif current:
            sentences.append(Sentence(current, None))
            current = []
    if not sentences:
        raise DataError(f"{path}: no tokens")
    return sentences


# -- question answering (SQuAD) -----------------------------------------------------------------------------

@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]  # (text, character start)


def read_squad_examples(path: str | Path, labelled: bool) -> tuple[list[dict], list[QAExample]]:
    """The file's `data` list and its questions, each field checked and named where it is wrong; a labelled
    file must give every question an answer that is found at its answer_start in its context."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path}: not a SQuAD file (expected an object with a \"data\" list)")
    examples = []
    for i, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{path}: data[{i}]: expected an object with a \"paragraphs\" list")
        for j, paragraph in enumerate(paragraphs):
            where = f"data[{i}].paragraphs[{j}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                raise DataError(f"{path}: {where}: expected an object with a \"context\" string")
            if not isinstance(paragraph.get("qas"), list):
                raise DataError(f"{path}: {where}: expected a \"qas\" list")
            for k, qa in enumerate(paragraph["qas"]):
                examples.append(_question(path, f"{where}.qas[{k}]", qa, paragraph["context"], labelled))
    if not examples:
        raise DataError(f"{path}: no questions")
    return data["data"], examples


def _question(path: Path, where: str, qa: object, context: str, labelled: bool) -> QAExample:
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), (str, int)) or isinstance(qa.get("id"), bool):
        raise DataError(f"{path}: {where}: expected an object with an \"id\"")
    name = f"{path}: question {qa['id']}"
    if not isinstance(qa.get("question"), str):
        raise DataError(f"{name}: expected a \"question\" string")
    if not labelled:  # predict input: answers, if the file has them, are not read
        return QAExample(str(qa["id"]), qa["question"], context, [])
    raw = qa.get("answers")
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{name}: no answers")
    answers = []
    for answer in raw:
        text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
            raise DataError(f"{name}: an answer needs a \"text\" string and an \"answer_start\" integer")
        if not text:
            raise DataError(f"{name}: empty answer")
        if not 0 <= start < len(context):
            raise DataError(f"{name}: answer_start {start} is outside its context ({len(context)} characters)")
        if context[start:start + len(text)] != text:
            raise DataError(f"{name}: answer {text!r} is not in its context at answer_start {start}")
        answers.append((text, start))
    return QAExample(str(qa["id"]), qa["question"], context, answers)
