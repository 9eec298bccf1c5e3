"""`lmforge plan` given a recipe, an override or an option it cannot plan: each is one line naming it, exit
status 2, nothing written (plan writes nothing at all; the working directory is checked)."""

import os

import pytest

from cli_checks import assert_one_line_error, invoke

RECIPE_CASES = {  # recipe file content (None: no file there; "dir": a folder) -> what the error names
    "missing": (None, "recipe.yaml"),
    "a-folder": ("dir", "recipe.yaml"),
    "unclosed": (b"model: [unclosed\n", "recipe.yaml"),
    "tabs": (b"model:\n\tn_layer: 2\n", "recipe.yaml"),
    "a-list": (b"- 1\n- 2\n", "recipe.yaml"),
    "binary": (bytes(range(256)), "recipe.yaml"),
    "unknown-section": (b"modle:\n  n_layer: 2\n", "modle"),
    "unknown-key": (b"model:\n  n_layers: 2\n", "model.n_layers"),
    "wrong-type": (b"model:\n  n_layer: two\n", "model.n_layer"),
    "out-of-range": (b"model:\n  n_layer: 0\n", "model.n_layer"),
    "unknown-arch": (b"model:\n  arch: transformer-xl\n", "model.arch"),
}


@pytest.mark.parametrize("case", RECIPE_CASES)
def test_plan_names_a_recipe_it_cannot_read(case, tmp_path):
    content, needle = RECIPE_CASES[case]
    recipe = tmp_path / "recipe.yaml"
    if content == "dir":
        recipe.mkdir()
    elif content is not None:
        recipe.write_bytes(content)
    before = sorted(os.listdir(tmp_path))
    code, _, err = invoke("plan", recipe)
    assert_one_line_error(code, err, needle)
    assert sorted(os.listdir(tmp_path)) == before


OVERRIDE_CASES = {  # overrides -> what the error names
    "unknown-key": (["model.n_layers=2"], "model.n_layers"),
    "unknown-section": (["modle.n_layer=2"], "modle"),
    "no-equals": (["model.n_layer"], "model.n_layer"),
    "wrong-type": (["model.n_layer=abc"], "model.n_layer"),
    "zero-layers": (["model.n_layer=0"], "model.n_layer"),
    "negative-batch": (["train.micro_batch_size=-4"], "train.micro_batch_size"),
    "heads-do-not-divide": (["model.n_embd=100", "model.n_head=3"], "n_head"),
    "unknown-optimizer": (["optimizer.name=lion"], "optimizer.name"),
    "unknown-device": (["train.device=tpu"], "train.device"),
    "unknown-dtype": (["train.dtype=float8"], "train.dtype"),
    "unknown-strategy": (["train.strategy=zero3"], "train.strategy"),
    "vocab-zero": (["model.vocab_size=0"], "model.vocab_size"),
}


@pytest.mark.parametrize("case", OVERRIDE_CASES)
def test_plan_names_an_override_it_cannot_take(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, needle = OVERRIDE_CASES[case]
    code, _, err = invoke("plan", *args)
    assert_one_line_error(code, err, needle)
    assert os.listdir(tmp_path) == []


OPTION_CASES = {  # options -> what the error names
    "devices-zero": (["--devices", "0"], "--devices"),
    "devices-negative": (["--devices", "-2"], "--devices"),
    "devices-not-a-number": (["--devices", "two"], "--devices"),
    "memory-unit": (["--device-memory", "80XB"], "--device-memory"),
    "memory-negative": (["--device-memory", "-1GB"], "--device-memory"),
    "memory-zero": (["--device-memory", "0"], "--device-memory"),
    "memory-empty": (["--device-memory", ""], "--device-memory"),
    "memory-unit-only": (["--device-memory", "GB"], "--device-memory"),
    "memory-nan": (["--device-memory", "nanGB"], "--device-memory"),
    "memory-infinite": (["--device-memory", "infGB"], "--device-memory"),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_plan_names_an_option_it_cannot_honour(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, needle = OPTION_CASES[case]
    code, _, err = invoke("plan", *args)
    assert_one_line_error(code, err, needle)
    assert os.listdir(tmp_path) == []


CASES = [*RECIPE_CASES, *OVERRIDE_CASES, *OPTION_CASES]
