"""`lmforge plan` given a recipe it cannot read, overrides the config refuses, or options it cannot honour: one
line naming the file (and line), the field or the option, exit status 2, no table printed and nothing written.
A model that fits no device is not bad input: the planner answers it with its table and what would fit
(tests/test_plan.py), exit status 0, so it is not counted here."""

from pathlib import Path

import pytest

from cli_checks import assert_one_line_error, invoke

# small enough that a case which wrongly got through would still finish at once
SMALL = ["model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16", "model.vocab_size=64"]


def _run(tmp_path: Path, *args) -> tuple[int, str, str]:
    before = sorted(tmp_path.rglob("*"))
    code, out, err = invoke("plan", *args)
    assert out == "" and sorted(tmp_path.rglob("*")) == before, out  # no table, nothing written
    return code, out, err


RECIPES = {  # the recipe file's content (None: no file; "/": a folder) -> what the error says besides its path
    "missing": (None, "recipe not found"),
    "a-folder": ("/", "recipe not found"),
    "unclosed-bracket": ("train: {max_steps: 3\n", "line 2 invalid YAML"),
    "tab-indent": ("model:\n\tn_layer: 2\n", "invalid YAML"),
    "a-list": ("- model\n- train\n", "a recipe must be a mapping of sections"),
    "a-scalar": ("a GPT please\n", "a recipe must be a mapping of sections"),
    "not-utf8": (b"model:\n  n_layer: 2 \xff\xfe\n", "not UTF-8"),
    "python-object": ("!!python/object/apply:os.system ['echo owned']\n", "invalid YAML"),
    "unknown-section": ("modle:\n  n_layer: 2\n", "modle: unknown key"),
    "unknown-field": ("model:\n  n_layers: 2\n", "model.n_layers: unknown key"),
    "ill-typed": ("model:\n  n_layer: two\n", "model.n_layer"),
    "unknown-arch": ("model:\n  arch: transformer\n", "model.arch: unknown architecture 'transformer'"),
    "heads-do-not-divide": ("model:\n  n_embd: 100\n  n_head: 3\n", "must be divisible by n_head"),
}


@pytest.mark.parametrize("case", RECIPES)
def test_a_recipe_plan_cannot_read_is_one_line_naming_it(case, tmp_path):
    content, needle = RECIPES[case]
    recipe = tmp_path / "recipe.yaml"
    if content == "/":
        recipe.mkdir()
    elif isinstance(content, bytes):
        recipe.write_bytes(content)
    elif content is not None:
        recipe.write_text(content)
    code, _, err = _run(tmp_path, recipe)
    assert_one_line_error(code, err, str(recipe))
    assert needle in err, err


OVERRIDES = {  # key=value overrides -> the field (or the override) the error names
    "unknown-key": (["model.n_layers=2"], "model.n_layers: unknown key"),
    "unknown-section": (["trian.micro_batch_size=2"], "trian: unknown key"),
    "not-an-integer": (["model.n_layer=two"], "model.n_layer: Input should be a valid integer"),
    "not-a-bool": (["train.activation_checkpointing=maybe"], "train.activation_checkpointing"),
    "not-a-number": (["model.dropout=lots"], "model.dropout"),
    "no-layers": (["model.n_layer=0"], "model.n_layer: Input should be greater than or equal to 1"),
    "micro-batch-zero": (["train.micro_batch_size=0"], "train.micro_batch_size"),
    "micro-batch-negative": (["train.micro_batch_size=-4"], "train.micro_batch_size"),
    "vocab-zero": (["model.vocab_size=0"], "model.vocab_size"),
    "dropout-one": (["model.dropout=1"], "model.dropout: Input should be less than 1"),
    "unknown-arch": (["model.arch=mamba"], "model.arch: unknown architecture 'mamba'"),
    "heads-do-not-divide": (["model.n_head=3"], "must be divisible by n_head (3)"),
    "unknown-optimizer": (["optimizer.name=lion"], "optimizer.name"),
    "negative-momentum": (["optimizer.name=sgd", "optimizer.momentum=-0.9"], "optimizer.momentum"),
    "unknown-device": (["train.device=tpu"], "train.device"),
    "unknown-dtype": (["train.dtype=float16"], "train.dtype"),
    "no-key": (["=5"], "override '=5'"),
    "not-key-value": ([*SMALL, "n_layer"], "override 'n_layer'"),
}


@pytest.mark.parametrize("case", OVERRIDES)
def test_a_bad_override_is_one_line_naming_the_field(case, tmp_path):
    overrides, needle = OVERRIDES[case]
    code, _, err = _run(tmp_path, *overrides)
    assert_one_line_error(code, err, needle)


OPTIONS = {  # the option's arguments -> what the error names
    "devices-zero": (["--devices", "0"], "--devices 0: expected 1 or more"),
    "devices-negative": (["--devices", "-2"], "--devices -2: expected 1 or more"),
    "devices-a-word": (["--devices", "two"], "--devices 'two': expected a whole number"),
    "devices-a-fraction": (["--devices", "1.5"], "--devices '1.5': expected a whole number"),
    "devices-empty": (["--devices", ""], "--devices '': expected a whole number"),
    "memory-unknown-unit": (["--device-memory", "80XB"], "--device-memory '80XB': expected a size"),
    "memory-negative": (["--device-memory", "-1GB"], "--device-memory '-1GB': must be 1 byte or more"),
    "memory-zero": (["--device-memory", "0"], "--device-memory '0': must be 1 byte or more"),
    "memory-under-a-byte": (["--device-memory", "0.5"], "--device-memory '0.5': must be 1 byte or more"),
    "memory-empty": (["--device-memory", ""], "--device-memory '': expected a size"),
    "memory-unit-only": (["--device-memory", "GB"], "--device-memory 'GB': expected a size"),
    "memory-two-units": (["--device-memory", "80GB16GB"], "--device-memory '80GB16GB': expected a size"),
    "memory-exponent": (["--device-memory", "8e10"], "--device-memory '8e10': expected a size"),
    "memory-nan": (["--device-memory", "nan"], "--device-memory 'nan': expected a size"),
    "memory-infinite-digits": (["--device-memory", "9" * 400 + "GB"], "too large a size"),  # was OverflowError
}


@pytest.mark.parametrize("case", OPTIONS)
def test_an_option_plan_cannot_honour_is_one_line_naming_it(case, tmp_path):
    args, needle = OPTIONS[case]
    code, _, err = _run(tmp_path, *SMALL, *args)
    assert_one_line_error(code, err, needle)
