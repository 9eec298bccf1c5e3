"""Bad config, generated from the pydantic schema: for every field of every section (each model family, the
optional stages and their sub-sections) the values its type and bounds refuse; an unknown key in every
section; broken recipe files. Each is one line naming the field (or file and line), exit status 2, through
`lmforge config show` and through the verbs that load a config. A hypothesis fuzz then throws arbitrary values
at arbitrary fields: a config either loads or is refused in one line naming the key, never a traceback."""

import typing
from dataclasses import dataclass

import annotated_types as at
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cli_checks import assert_one_line_error, invoke
from lmforge.config import Config

# the model section is one of four families, picked by model.arch; the optional stages exist when named
SECTIONS: list[tuple[str, list[str], type]] = [
    ("data", [], Config.model_fields["data"].annotation), ("tokenizer", [], Config.model_fields["tokenizer"].annotation),
    *[("model", [f"model.arch={arch}"], cls) for cls, arch in
      zip(typing.get_args(Config.model_fields["model"].annotation), ("gpt", "ffnn", "lstm", "encoder"))],
    *[(name, [], Config.model_fields[name].annotation) for name in ("optimizer", "schedule", "train", "eval", "sample")],
    *[(name, [], typing.get_args(Config.model_fields[name].annotation)[0])
      for name in ("clean", "curate", "finetune", "augment")],
]


def _unwrap(annotation):
    """The type under `X | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType"))\
        and len(args) == 1 else annotation


def bad_values(field) -> list[str]:
    """Override values (YAML, as on the command line) that the field's type or bounds must refuse."""
    kind = _unwrap(field.annotation)
    values: list[str] = []
    if kind is int:
        values += ["lots", "1.5", "[1, 2]"]
    elif kind is float:
        values += ["lots", "[1, 2]"]
    elif kind is bool:
        values += ["lots", "[true]"]
    elif kind is str:
        values += ["[1, 2]", "{a: 1}"]
    elif typing.get_origin(kind) is typing.Literal:
        values += ["no-such-choice", "[1, 2]"]
    elif typing.get_origin(kind) is list:
        values += ["{a: 1}"]
        if typing.get_origin(typing.get_args(kind)[0]) is typing.Literal:
            values += ["[no-such-choice]"]
    elif typing.get_origin(kind) is tuple:
        values += ["lots", "[1]"]
    elif typing.get_origin(kind) is dict:
        values += ["lots", "{a: lots}"]
    if kind in (int, float):
        for bound in field.metadata:
            if isinstance(bound, at.Ge):
                values.append(str(bound.ge - 1))
            elif isinstance(bound, at.Gt):
                values.append(str(bound.gt))
            elif isinstance(bound, at.Le):
                values.append(str(bound.le + 1))
            elif isinstance(bound, at.Lt):
                values.append(str(bound.lt))
    return values


@dataclass(frozen=True)
class BadSetting:
    id: str
    overrides: tuple[str, ...]
    needle: str


def _fields(prefix: str, cls: type) -> typing.Iterator[tuple[str, object]]:
    for name, field in cls.model_fields.items():
        sub = _unwrap(field.annotation)
        if isinstance(sub, type) and issubclass(sub, BaseModel):  # curate.quality, finetune.lora
            yield from _fields(f"{prefix}.{name}", sub)
        elif name != "arch":
            yield f"{prefix}.{name}", field


def schema_cases() -> list[BadSetting]:
    cases = []
    for section, first, cls in SECTIONS:
        family = first[0].split("=")[1] if first else ""
        tag = f"{section}[{family}]" if family else section
        for key, field in _fields(section, cls):
            for value in bad_values(field):
                cases.append(BadSetting(f"{tag}:{key.split('.', 1)[1]}={value}", (*first, f"{key}={value}"), key))
        cases.append(BadSetting(f"{tag}:unknown", (*first, f"{section}.no_such_key=1"),
                                f"{section}.no_such_key: unknown key"))
    cases.append(BadSetting("no-such-section", ("nosection.key=1",), "nosection: unknown key"))
    cases.append(BadSetting("not-key=value", ("model.n_layer",), "model.n_layer"))  # read as a recipe: not found
    cases.append(BadSetting("section-is-a-value", ("train=3",), "train"))
    cases.append(BadSetting("value-under-a-value", ("name=x", "name.sub=1"), "name is not a section"))
    return cases


SCHEMA = schema_cases()


@pytest.mark.parametrize("case", SCHEMA, ids=[c.id for c in SCHEMA])
def test_a_bad_setting_is_one_line_naming_the_field(case):
    assert_one_line_error(*invoke("config", "show", *case.overrides)[::2], case.needle)


# every verb that reads a config refuses it before any work: one bad setting of each kind, through each
CONFIG_VERBS = {
    "train": lambda tmp: ["train", "--run-dir", tmp / "run", "--no-progress"],
    "prepare": lambda tmp: ["prepare", f"data.prepared_dir={tmp / 'prepared'}", "--no-progress"],
    "bakeoff": lambda tmp: ["bakeoff", "--models", "gpt", "--out", tmp / "bo", "--no-progress"],
    "finetune": lambda tmp: ["finetune", "--run-dir", tmp / "run"],
    "clean": lambda tmp: ["clean", tmp / "in.txt", tmp / "out.jsonl"],
    "curate": lambda tmp: ["curate", tmp / "in.txt", tmp / "out.jsonl"],
    "augment": lambda tmp: ["augment", tmp / "in.txt", tmp / "out.jsonl"],
}
PER_VERB = [c for c in SCHEMA if c.id.split(":")[0] in ("train", "data", "optimizer", "model[gpt]")][::7]


@pytest.mark.parametrize("verb", CONFIG_VERBS)
@pytest.mark.parametrize("case", PER_VERB, ids=[c.id for c in PER_VERB])
def test_every_verb_refuses_a_bad_setting_before_any_work(verb, case, tmp_path):
    (tmp_path / "in.txt").write_text("some text to clean\n")
    before = sorted(tmp_path.iterdir())
    argv = CONFIG_VERBS[verb](tmp_path)
    at_ = next((i for i, a in enumerate(argv) if str(a).startswith("--")), len(argv))
    if verb in ("clean", "curate", "augment"):  # stage verbs scope a bare key to their section: keep it dotted
        at_ = 3
    code, _, err = invoke(*argv[:at_], *case.overrides, *argv[at_:])
    assert_one_line_error(code, err, case.needle)
    assert sorted(tmp_path.iterdir()) == before


RECIPES = {
    "tab-indent": ("train:\n\tmax_steps: 3\n", "invalid YAML"),
    "unclosed-bracket": ("train: {max_steps: 3\n", "invalid YAML"),
    "a-list": ("- train\n- model\n", "a recipe must be a mapping of sections"),
    "a-scalar": ("just words\n", "a recipe must be a mapping of sections"),
    "section-a-list": ("train: [1, 2]\n", "train"),
    "unknown-section": ("trian:\n  max_steps: 3\n", "trian: unknown key"),
    "unknown-field": ("train:\n  max_step: 3\n", "train.max_step: unknown key"),
    "ill-typed": ("model:\n  n_layer: two\n", "model.n_layer"),
    "duplicate-anchor-bomb": ("a: &a [1]\nb: *c\n", "invalid YAML"),
    "binary": (bytes(range(256)).decode("latin-1"), ""),
    "python-object": ("!!python/object/apply:os.system ['echo owned']\n", "invalid YAML"),
}


@pytest.mark.parametrize("verb", ["config", "train", "prepare", "bakeoff", "finetune"])
@pytest.mark.parametrize("name", RECIPES)
def test_a_broken_recipe_file_is_one_line_naming_it(verb, name, tmp_path):
    text, needle = RECIPES[name]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text, encoding="latin-1")
    argv = {"config": ["config", "show", recipe], "train": ["train", recipe, "--run-dir", tmp_path / "run"],
            "prepare": ["prepare", recipe], "bakeoff": ["bakeoff", recipe, "--out", tmp_path / "bo"],
            "finetune": ["finetune", recipe, "--run-dir", tmp_path / "run"]}[verb]
    code, _, err = invoke(*argv)
    assert_one_line_error(code, err, str(recipe))
    assert needle in err and sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


KEYS = [key for section, first, cls in SECTIONS if not first for key, _ in _fields(section, cls)]
VALUES = st.one_of(st.text(max_size=12), st.integers(-10**12, 10**12).map(str), st.floats().map(str),
                   st.lists(st.integers(-3, 3), max_size=3).map(str), st.sampled_from(["null", "true", "~", "{}", "[]"]))


FUZZ_EXAMPLES = 300


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_fuzzed_settings_load_or_are_refused_in_one_line(key, value):
    code, _, err = invoke("config", "show", f"{key}={value}")
    if code != 0:
        assert_one_line_error(code, err, key.split(".")[0])
