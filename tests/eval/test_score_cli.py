"""`lmforge score ...` and `lmforge eval --metrics/--stride` end to end; every bad input file is one line
naming the file and the line, exit status 2."""

import json

import pytest
from typer.testing import CliRunner

from lmforge.cli import app


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def error_line(*args) -> str:
    code, _, err = run(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


@pytest.fixture
def files(tmp_path):
    def write(name: str, text: str | bytes):
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    return write


def test_score_line_aligned_files(files):
    hyp = files("hyp.txt", "the cat sat on the mat\r\nhello world\n")  # CRLF is fine
    ref = files("ref.txt", "the cat sat on a mat\nhello world")  # so is a missing final newline
    code, out, _ = run("score", "bleu", hyp, ref)
    assert code == 0 and out.startswith("BLEU = ") and "signature: nrefs:1|case:mixed|eff:no|tok:13a" in out
    code, out, _ = run("score", "chrf", hyp, ref, "--plus", "--sentences", "--json")
    result = json.loads(out)
    assert result["metric"] == "chrF2++" and len(result["sentences"]) == 2 and result["sentences"][1] == 100.0
    code, out, _ = run("score", "meteor", hyp, ref, "--json")
    assert code == 0 and 0.5 < json.loads(out)["score"] <= 1


def test_meteor_without_wordnet_warns_on_the_command_line(files, monkeypatch, tmp_path):
    import nltk

    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    hyp, ref = files("h.txt", "a kid\n"), files("r.txt", "a child\n")
    code, out, err = run("score", "meteor", hyp, ref)
    assert code == 0 and "exact+stem matching" in out and "warning: WordNet not found" in err


def test_score_entity_f1_and_squad(files):
    gold = files("gold.conll", "John\tB-person\nlives\tO\nin\tO\nParis\tB-location\n\nhi\tO\n")
    pred = files("pred.conll", "-DOCSTART- O\n\nJohn B-person\nlives O\nin O\nParis O\n\nhi O\n")
    code, out, _ = run("score", "entity-f1", pred, gold, "--json")
    result = json.loads(out)
    assert code == 0 and (result["precision"], result["recall"]) == (1.0, 0.5)
    assert "all entities     precision 100.00  recall  50.00  F1  66.67" in run("score", "entity-f1", pred, gold)[1]
    dataset = files("dev.json", json.dumps({"data": [{"paragraphs": [{"qas": [
        {"id": "q1", "answers": [{"text": "Paris"}]}, {"id": "q2", "answers": [{"text": "in 1889"}]}]}]}]}))
    predictions = files("pred.json", json.dumps({"q1": "paris", "q2": "1889"}))
    code, out, _ = run("score", "squad", predictions, dataset)
    assert code == 0 and out.startswith("exact match 50.00, F1 83.33 (2 questions")


def test_line_counts_that_differ(files):
    hyp, ref = files("hyp.txt", "a\nb\nc\n"), files("ref.txt", "a\nb\n")
    assert error_line("score", "bleu", hyp, ref) == f"error: {hyp}: line 3 has no counterpart in {ref}, which has 2 lines"
    assert f"error: {hyp}: line 3 has no counterpart" in error_line("score", "chrf", ref, hyp).replace(str(ref), "")


def test_empty_missing_and_undecodable_files(files, tmp_path):
    empty, ref = files("empty.txt", ""), files("ref.txt", "a\n")
    assert error_line("score", "meteor", empty, ref) == f"error: {empty}: empty file"
    assert error_line("score", "bleu", tmp_path / "nope.txt", ref) == f"error: {tmp_path / 'nope.txt'}: no such file"
    latin1 = files("latin1.txt", "ok\ncaf\xe9\n".encode("latin-1"))
    assert error_line("score", "bleu", latin1, ref) == f"error: {latin1}: line 2: not UTF-8 (byte 0xe9)"
    assert error_line("score", "entity-f1", files("e.conll", "\n\n"), ref) == f"error: {tmp_path / 'e.conll'}: no tagged tokens"


def test_invalid_squad_files(files):
    good = files("dev.json", json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "q1", "answers": [{"text": "x"}]}]}]}]}))
    broken = files("pred.json", '{"q1": "x",\n "q2": }\n')
    assert error_line("score", "squad", broken, good).startswith(f"error: {broken}: line 2: invalid JSON (Expecting value")
    assert error_line("score", "squad", good, broken).startswith(f"error: {broken}: line 2: invalid JSON")
    not_squad = files("other.json", '{"version": "1.1"}')
    assert "not a SQuAD dataset" in error_line("score", "squad", files("p.json", "{}"), not_squad)
    no_answers = files("v2.json", json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "q", "answers": []}]}]}]}))
    assert "data[0].paragraphs[0].qas[0]: expected an \"id\" and a non-empty" in error_line(
        "score", "squad", files("p.json", "{}"), no_answers)
    assert "not SQuAD predictions" in error_line("score", "squad", files("list.json", '["x"]'), good)


@pytest.mark.parametrize("predicted,message", [
    ("a\tO\nb\tB-x\n\nc\tO\n", "{pred}: line 4: sentence 2 has 1 tokens, but in {gold} (line 4) it has 2"),
    ("a\tO\nb\tB-x\n", "{gold}: line 4: sentence 2 has no counterpart in {pred}, which has 1 sentences"),
    ("a\tO\nb\n", "{pred}: line 2: expected a token and a tag, found 1 column ('b')"),
    ("a\tO\nb\tPER\n", "{pred}: line 2: tag 'PER' is not O, B-TYPE or I-TYPE"),
])
def test_conll_files_that_do_not_fit(files, predicted, message):
    gold, pred = files("gold.conll", "a\tO\nb\tB-x\n\nc\tO\nd\tO\n"), files("pred.conll", predicted)
    assert error_line("score", "entity-f1", pred, gold) == "error: " + message.format(pred=pred, gold=gold)


@pytest.fixture
def trained(tiny_overrides, tmp_path):
    code, _, err = run("train", *tiny_overrides, "--run-dir", tmp_path / "run", "--no-progress")
    assert code == 0, err
    return tmp_path / "run"


def test_eval_metrics_and_stride(trained, monkeypatch):
    from shared_data import SHARED_DATA

    monkeypatch.setenv("NLTK_DATA", str(SHARED_DATA / "nltk_data"))
    code, out, _ = run("eval", trained, "--metrics", "--samples", 4, "--json")
    result = json.loads(out)
    assert code == 0 and 0 < result["entropy"] and result["word_perplexity"] > result["perplexity"]
    generation = result["generation"]
    assert generation["samples"] == 4 and generation["prompt_tokens"] == generation["new_tokens"] == 16
    assert set(generation["scores"]) == {"BLEU", "chrF2", "chrF2++", "METEOR"}
    assert 0 <= generation["diversity"]["distinct_1"] <= 1
    code, out, _ = run("eval", trained, "--metrics", "--samples", 2)
    assert code == 0 and "entropy" in out and "generation (2 prompts of 16 tokens" in out and "signature BLEU" in out
    code, out, _ = run("eval", trained, "--stride", 8)
    assert code == 0 and "sliding windows every 8" in out and "word perplexity" in out
    assert "stride 64: must be between 1 and the model's block_size (32)" in error_line("eval", trained, "--stride", 64)
