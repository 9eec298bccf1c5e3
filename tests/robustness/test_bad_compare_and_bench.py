"""`lmforge compare` given what is not a run, a run whose files are damaged, or options it cannot honour; and
`lmforge bench-gemm` given bad options or a damaged cache. A bad argument is one line naming it, exit status 2,
no page written. The GEMM cache is lmforge's own file, not the user's input: a damaged one is measured again
and rewritten, never a failure."""

import json
import random
import shutil
from pathlib import Path

import pytest

from cli_checks import assert_one_line_error, invoke


def _damage_file(name: str, content: bytes | None):
    def damage(run: Path, work: Path) -> Path:
        path = run / name
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        return path
    return damage


def _not_a_run(kind: str):
    def make(run: Path, work: Path) -> Path:
        path = work / kind
        if kind == "empty-folder":
            path.mkdir()
        elif kind == "a-file":
            path.write_text("not a run\n")
        return path  # "missing": nothing there
    return make


RUN_CASES = {  # damage -> (make it: (run copy, work folder) -> the path to name, what the error says)
    "missing": (_not_a_run("missing"), "not a training or fine-tuning run"),
    "empty-folder": (_not_a_run("empty-folder"), "not a training or fine-tuning run"),
    "a-file": (_not_a_run("a-file"), "not a training or fine-tuning run"),
    "metrics-missing": (_damage_file("metrics.jsonl", None), "no metrics yet"),
    "metrics-empty": (_damage_file("metrics.jsonl", b""), "no metrics yet"),
    "metrics-garbage": (_damage_file("metrics.jsonl", random.Random(0).randbytes(512)), "no metrics yet"),
    "config-garbage": (_damage_file("config.yaml", b"model: [unclosed\n"), "config.yaml"),
    "config-missing": (_damage_file("config.yaml", None), "not a training or fine-tuning run"),
    "config-empty": (_damage_file("config.yaml", b""), "config.yaml: empty"),
    "config-of-another-model": (_damage_file("config.yaml", b"model:\n  arch: lstm\n"), "config.yaml"),
}


@pytest.mark.parametrize("damage", RUN_CASES)
def test_compare_names_what_is_not_a_comparable_run(damage, trained_run, tmp_path):
    good = Path(shutil.copytree(trained_run, tmp_path / "good"))
    bad_run = Path(shutil.copytree(trained_run, tmp_path / "bad"))
    make, needle = RUN_CASES[damage]
    named = make(bad_run, tmp_path)
    target = named if damage in ("missing", "empty-folder", "a-file") else bad_run
    page = tmp_path / "compare.html"
    code, _, err = invoke("compare", good, target, "--out", page)
    assert_one_line_error(code, err, str(target))  # the damaged file, or the run (a run without config.yaml)
    assert needle in err and not page.exists(), err


OPTION_CASES = {  # arguments after the two runs -> what the error names
    "unknown-metric": (["--metric", "perplexity_of_the_moon"], "--metric 'perplexity_of_the_moon'"),
    "unknown-x": (["--x", "epochs"], "--x 'epochs'"),
    "out-is-a-folder": (["--out", "{tmp}"], "{tmp}"),
    "out-under-a-file": (["--out", "{tmp}/good/config.yaml/compare.html"], "config.yaml"),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_compare_names_an_option_it_cannot_honour(case, trained_run, tmp_path):
    good = Path(shutil.copytree(trained_run, tmp_path / "good"))
    args, needle = OPTION_CASES[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = invoke("compare", good, good, *args)
    assert_one_line_error(code, err, needle.replace("{tmp}", str(tmp_path)))
    assert not (Path.cwd() / "compare.html").exists()


BENCH_OPTIONS = {
    "dtype-float16": (["--dtype", "float16"], "--dtype 'float16'"),
    "dtype-empty": (["--dtype", ""], "--dtype ''"),
    "threads-zero": (["--threads", "0"], "--threads 0"),
    "threads-negative": (["--threads", "-3"], "--threads -3"),
}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LMFORGE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "peak-flops.json"


@pytest.mark.parametrize("case", BENCH_OPTIONS)
def test_bench_gemm_names_a_bad_option(case, cache):
    args, needle = BENCH_OPTIONS[case]
    code, _, err = invoke("bench-gemm", *args)
    assert_one_line_error(code, err, needle)
    assert not cache.exists()


CACHE_DAMAGE = {
    "garbage": random.Random(0).randbytes(256),
    "empty": b"",
    "cut": b'{"some cpu | 1 threads | float32 | torch 2',
    "a-list": b"[1, 2, 3]",
    "negative-peak": None,  # written from the key the probe uses, below
}


@pytest.mark.parametrize("case", CACHE_DAMAGE)
def test_bench_gemm_measures_again_over_a_damaged_cache(case, cache):
    code, out, err = invoke("bench-gemm", "--threads", "1")
    assert code == 0, err
    key = next(iter(json.loads(cache.read_text())))
    cache.write_bytes(CACHE_DAMAGE[case] if CACHE_DAMAGE[case] is not None else json.dumps({key: -5.0}).encode())
    code, out, err = invoke("bench-gemm", "--threads", "1")
    assert code == 0 and "GFLOP/s" in out, err
    assert float(out.split()[0].replace(",", "")) > 0
    assert json.loads(cache.read_text())[key] > 0  # rewritten whole
