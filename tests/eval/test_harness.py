"""LmforgeLM, lmforge's model for EleutherAI's lm-evaluation-harness, on local tasks (offline): an exported GPT
scores the same through the harness's HFLM; recurrent runs read whole texts with their state; bad input is one
line and exit 2."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (lmforge[harness])")

from lmforge.cli import app  # noqa: E402
from lmforge.eval.harness import LmforgeLM, run_harness  # noqa: E402
from lmforge.run import load_run  # noqa: E402

runner = CliRunner()
WORDS = "the cat sat on a mat and then it ran to see the dog who was not there".split()


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """Three local tasks, one of each kind the adapter serves, with `dataset_path: json` and local files."""
    import random

    root = tmp_path_factory.mktemp("tasks")
    rng = random.Random(1)
    pages = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(5, 40))) for _ in range(6)]
    pages[1], pages[2] = " " + pages[1], pages[2] + "\n"  # whitespace at the ends counts a word for the harness
    (root / "pages.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in pages))
    choices = [{"q": "the cat sat on", "choices": [" a mat", " zq xv"], "label": 0},
               {"q": "the dog who was", "choices": [" kkkk", " not there"], "label": 1}]
    (root / "choices.jsonl").write_text("".join(json.dumps(c) + "\n" for c in choices))
    (root / "gen.jsonl").write_text(json.dumps({"q": "the cat", "a": " sat"}) + "\n")
    common = "dataset_path: json\ntest_split: test\n"
    (root / "tinywiki.yaml").write_text(
        f"task: tinywiki\n{common}dataset_kwargs:\n  data_files:\n    test: {root / 'pages.jsonl'}\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\nmetric_list:\n"
        "  - metric: word_perplexity\n  - metric: byte_perplexity\n  - metric: bits_per_byte\n")
    (root / "tinychoice.yaml").write_text(
        f"task: tinychoice\n{common}dataset_kwargs:\n  data_files:\n    test: {root / 'choices.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{label}}'\n"
        "metric_list:\n  - metric: acc\n")
    (root / "tinygen.yaml").write_text(
        f"task: tinygen\n{common}dataset_kwargs:\n  data_files:\n    test: {root / 'gen.jsonl'}\n"
        "output_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 6\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n")
    return root, pages


def _train(tiny_overrides, tmp_path, *extra):
    from lmforge.config import load_config
    from lmforge.train.trainer import train

    run = tmp_path / "run"
    if any(e.startswith("model.arch=") for e in extra):  # another family: only the GPT's shape options go
        tiny_overrides = [o for o in tiny_overrides if not o.startswith(("model.n_head", "model.n_layer"))]
    train(load_config(None, [*tiny_overrides, "train.report=false", "train.num_threads=1", *extra]), run, progress=False)
    return run


def scores(results: dict, task: str) -> dict:
    return {k.split(",")[0]: v for k, v in results["results"][task].items() if isinstance(v, float)}


def test_an_exported_gpt_scores_the_same_through_hflm(tiny_overrides, tmp_path, tasks):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    root, _ = tasks
    run = _train(tiny_overrides, tmp_path)
    assert runner.invoke(app, ["export", str(run), str(tmp_path / "hf"), "--format", "hf"]).exit_code == 0
    names = ["tinywiki", "tinychoice", "tinygen"]
    ours = run_harness(run, names, include_path=str(root))
    hf = simple_evaluate(model="hf", model_args=f"pretrained={tmp_path / 'hf'},dtype=float32", tasks=names,
                         task_manager=TaskManager(include_path=str(root)), device="cpu")
    for task in names:
        mine, theirs = scores(ours, task), scores(hf, task)
        assert set(mine) == set(theirs) and mine, task
        for key in mine:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4), (task, key)
    assert scores(ours, "tinywiki")["bits_per_byte"] > 0


@pytest.mark.parametrize("family", ["gpt", "lstm"])
def test_lmforge_eval_documents_gives_the_harness_word_and_byte_figures(family, tiny_overrides, tmp_path, tasks):
    """The three routes agree: HFLM = LmforgeLM (the test above, for a GPT) = `lmforge eval --data --documents`."""
    import re

    root, pages = tasks
    extra = ("model.arch=lstm", "model.hidden_size=32", "model.n_embd=32") if family == "lstm" else ()
    run = _train(tiny_overrides, tmp_path, *extra)
    theirs = scores(run_harness(run, ["tinywiki"], include_path=str(root)), "tinywiki")
    result = runner.invoke(app, ["eval", str(run), "--data", str(root / "pages.jsonl"), "--documents", "--json"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.output)
    assert ours["documents"] == len(pages) and ours["words"] == sum(len(re.split(r"\s+", p)) for p in pages)
    for key in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-4), key
    stream = json.loads(runner.invoke(app, ["eval", str(run), "--data", str(root / "pages.jsonl"), "--json"]).output)
    assert stream["word_perplexity"] != pytest.approx(theirs["word_perplexity"], rel=1e-4)  # one stream differs


def test_rolling_loglikelihood_scores_the_text_in_disjoint_windows_of_the_block(tiny_overrides, tmp_path):
    """The harness's definition: the text cut into windows of max_length tokens, each token given the tokens
    before it in its window (the first window starts from the end-of-document token; the last, shorter one
    reads a whole window of context)."""
    run = _train(tiny_overrides, tmp_path)
    lm = LmforgeLM(run=str(run))
    text = " ".join(WORDS * 3)  # 200 characters: several windows of the 32-token block
    tokens = lm.tok_encode(text)
    expected = 0.0
    model, block = load_run(run).model, 32
    with torch.no_grad():
        shifted = [lm.eot_token_id] + tokens
        for start in range(0, len(tokens), block):
            end = min(start + block, len(tokens))  # the last, shorter window reads a whole block of context
            logits, _ = model(torch.tensor([shifted[max(0, end - block):end]]))
            targets = torch.tensor(tokens[start:end])
            expected += torch.log_softmax(logits[0, -len(targets):], -1).gather(1, targets[:, None]).sum().item()
    assert len(tokens) > 3 * block
    (got,) = lm.loglikelihood_rolling([type("R", (), {"args": (text,)})()])
    assert got == pytest.approx(expected, rel=1e-5)


def test_a_recurrent_run_reads_the_whole_text_with_its_state(tiny_overrides, tmp_path):
    run = _train(tiny_overrides, tmp_path, "model.arch=lstm", "model.hidden_size=32", "model.n_embd=32")
    lm = LmforgeLM(run=str(run))
    text = " ".join(WORDS * 3)
    tokens = [lm.eot_token_id] + lm.tok_encode(text)
    model = load_run(run).model
    with torch.no_grad():
        logits, _ = model(torch.tensor([tokens[:-1]]))  # one pass over everything, no windows
    expected = torch.log_softmax(logits[0], -1).gather(1, torch.tensor(tokens[1:])[:, None]).sum().item()
    (got,) = lm.loglikelihood_rolling([type("R", (), {"args": (text,)})()])
    assert got == pytest.approx(expected, rel=1e-5)
    (choice,) = lm.loglikelihood([type("R", (), {"args": ("the cat", " sat")})()])
    assert choice[0] < 0 and math.isfinite(choice[0])


def test_what_the_harness_cannot_score_is_one_line_and_exit_2(tiny_overrides, tmp_path, tasks):
    root, _ = tasks
    run = _train(tiny_overrides, tmp_path)
    for args, message in [
        (["eval", str(run), "--harness", "nope", "--include-path", str(root)], "--harness: unknown task nope"),
        (["eval", str(tmp_path), "--harness", "tinywiki", "--include-path", str(root)],
         "the harness scores an LM run; this is not a run directory"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0 and message in result.output, result.output


def test_a_masked_lm_encoder_is_refused(tiny_overrides, tmp_path):
    run = _train(tiny_overrides, tmp_path, "model.arch=encoder", "sample.num_samples=0")
    with pytest.raises(Exception, match="masked-LM encoder does not score text left to right"):
        LmforgeLM(run=str(run))


def test_the_lmforge_lm_eval_command_finds_the_model(tiny_overrides, tmp_path, tasks, monkeypatch):
    import sys

    from lmforge.eval import harness

    root, _ = tasks
    run = _train(tiny_overrides, tmp_path)
    out = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", ["lmforge-lm-eval", "--model", "lmforge", "--model_args", f"run={run}",
                                      "--tasks", "tinychoice", "--include_path", str(root), "--output_path", str(out)])
    harness.cli()
    (saved,) = out.rglob("results_*.json")
    assert "acc,none" in json.loads(saved.read_text())["results"]["tinychoice"]
