"""The command line's own errors (an option that is not a number, an unknown option, a missing argument, an
unknown verb) are one line naming the verb and the option, exit status 2, like every bad input: click and
typer would print a usage box (cli.py's `OneLineUsageErrors`)."""

import pytest

from cli_checks import assert_one_line_error, invoke

CASES = [  # (verb, arguments after it, what the line names); plan's are test_bad_plan.py's
    ("train", ["--nope"], " train: No such option: --nope"),
    ("train", ["--run-dir"], "Option '--run-dir' requires an argument"),
    ("eval", [], " eval: Missing argument"),
    ("eval", ["run", "--batch-size", "many"], "'--batch-size'"),
    ("generate", [], " generate: Missing argument"),
    ("export", ["run"], " export: Missing argument"),
    ("predict", ["run", "--input", "x.tsv", "--batch-size", "0"], " predict: Invalid value for '--batch-size'"),
    ("generate", ["run", "--seed", "1.5"], " generate: Invalid value for '--seed'"),
    ("bench-gemm", ["--threads", "x"], " bench-gemm: Invalid value for '--threads'"),
    ("bench-gemm", ["--nope"], "No such option: --nope"),
    ("score", ["bleu"], " score bleu: Missing argument"),
    ("score", ["nosuch"], " score: No such command 'nosuch'"),
    ("config show", ["--nope"], "No such option: --nope"),
    ("compare", [], " compare: Missing argument"),
    ("report", [], " report: Missing argument"),
    ("nosuch", [], "No such command 'nosuch'"),
]


@pytest.mark.parametrize("verb, args, needle", CASES, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(CASES)])
def test_a_usage_error_is_one_line(verb, args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke(*verb.split(), *args)
    assert_one_line_error(code, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_a_verb_without_arguments_still_shows_its_help():
    code, out, _ = invoke("score")
    assert "Usage" in out and "bleu" in out
