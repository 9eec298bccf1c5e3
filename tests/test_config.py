import re
from pathlib import Path

import pytest

from lmforge.config import Config, describe, load_config, parse_overrides
from lmforge.errors import ConfigError

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    cfg = load_config(recipe)
    assert cfg.name


def test_baby_recipe_is_the_nanogpt_reference():
    cfg = load_config(CONFIGS / "shakespeare-char-baby.yaml")
    m, o, t = cfg.model, cfg.optimizer, cfg.train
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout, m.bias) == (4, 4, 128, 64, 0.0, False)
    assert (o.lr, tuple(o.betas), o.weight_decay) == (1e-3, (0.9, 0.99), 0.1)
    assert (cfg.schedule.warmup_steps, cfg.schedule.min_lr, t.max_steps, t.micro_batch_size) == (100, 1e-4, 2000, 12)


def test_overrides_parse_yaml_scalars_and_nest():
    assert parse_overrides(["model.n_layer=6", "optimizer.betas=[0.9, 0.95]", "data.path=a b.txt"]) == {
        "model": {"n_layer": 6}, "optimizer": {"betas": [0.9, 0.95]}, "data": {"path": "a b.txt"}}
    cfg = load_config(None, ["model.n_layer=6", "train.compile=true"])
    assert cfg.model.n_layer == 6 and cfg.train.compile is True


def test_override_beats_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  n_layer: 2\n  n_head: 2\n")
    cfg = load_config(recipe, ["model.n_layer=3"])
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.name) == (3, 2, "r")


@pytest.mark.parametrize("override, message", [
    (["model.n_layr=2"], "model.n_layr: unknown key"),
    (["train.max_steps=abc"], "train.max_steps: Input should be a valid integer"),
    (["model.n_embd=100", "model.n_head=3"], "model: n_embd (100) must be divisible by n_head (3)"),
    (["schedule.name=wobbly"], "schedule.name: Input should be"),
    (["nope"], "expected key.sub=value"),
])
def test_bad_overrides_are_one_line_errors_naming_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, override)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  n_layer: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ invalid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("modle:\n  n_layer: 1\n")
    with pytest.raises(ConfigError, match="typo.yaml: modle: unknown key"):
        load_config(typo)


def test_describe_lists_every_field_with_its_description():
    text = describe(Config())
    for section in ["data", "tokenizer", "model", "optimizer", "schedule", "train", "eval", "sample"]:
        assert f"\n{section}:" in text
    assert "n_layer: 4  # transformer blocks" in text
    assert all("#" in line for line in text.splitlines() if not line.rstrip().endswith(":"))


def test_data_key_ignores_model_settings():
    a, b = Config(), load_config(None, ["model.n_layer=9"])
    c = load_config(None, ["tokenizer.vocab_size=512"])
    assert a.data_key() == b.data_key() != c.data_key()


def test_data_key_of_a_clean_stage_names_html_extract_only_when_main():
    # recipes with a clean stage keep the keys (and prepared shards) they had before the option existed
    text = load_config(None, ["clean.preset=lm"])
    assert text.data_key() == "e31c99ac9c32" == load_config(None, ["clean.preset=lm", "clean.html_extract=text"]).data_key()
    assert load_config(None, ["clean.preset=lm", "clean.html_extract=main"]).data_key() != text.data_key()


def test_optimizer_auto_is_muon_for_gpt_pretraining_only():
    assert load_config(None).optimizer.name == "muon"  # the main job
    assert load_config(None, ["model.arch=lstm"]).optimizer.name == "adamw"
    assert load_config(None, ["model.arch=ffnn"]).optimizer.name == "adamw"
    assert load_config(None, ["optimizer.name=adamw"]).optimizer.name == "adamw"
    tuned = load_config(None, ["finetune.backbone=runs/x", "finetune.train_path=train.tsv"])
    assert tuned.optimizer.name == "adamw"
    # recipes tuned with AdamW name it, so the default does not change them
    assert load_config(CONFIGS / "shakespeare-char-baby.yaml").optimizer.name == "adamw"
    assert load_config(CONFIGS / "ptb-word-ffnn.yaml").optimizer.name == "adamw"


def test_speedrun_recipes_keep_the_references_data_and_validation():
    baby = load_config(CONFIGS / "shakespeare-char-baby.yaml")
    fast = load_config(CONFIGS / "shakespeare-char.yaml")
    long = load_config(CONFIGS / "shakespeare-char-long.yaml")
    for cfg in (fast, long):
        # same shards (split, vocabulary) and the same 64-character validation windows
        assert cfg.data_key() == baby.data_key()
        assert cfg.model.block_size == baby.model.block_size
        assert cfg.train.eval_max_windows is None
    assert fast.optimizer.name == "muon" and fast.model.pos == "rotary"
    # the long recipe is the same model trained for longer
    assert long.model == fast.model and long.schedule == fast.schedule
    assert long.train.max_steps > fast.train.max_steps


def test_mixture_sources_are_named_after_their_files_and_checked():
    cfg = load_config(None, ["data.sources=[{path: a/wiki.train.txt, weight: 1}, {path: web/*.jsonl.gz, weight: 2},"
                             " {path: books/, weight: 0.5, field: body, name: library}]"])
    assert [(s.name, s.weight, s.field) for s in cfg.data.sources] == [("wiki", 1, None), ("web", 2, None),
                                                                      ("library", 0.5, "body")]
    assert cfg.data.of_source(cfg.data.sources[2]).field == "body" and cfg.data.of_source(cfg.data.sources[0]).field == "text"
    for sources, message in [("[]", "give at least one source"),
                             ("[{path: '*.txt', weight: 1}]", "source '*.txt': no file or folder name"),
                             ("[{path: a.txt, weight: 1, name: 'a b'}]", "source 'a b': a name is letters"),
                             ("[{path: a.txt, weight: .nan}]", "source 'a': weight must be a positive number"),
                             ("[{path: a.txt, weight: 1, colour: red}]", "data.sources.0.colour: unknown key")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(None, [f"data.sources={sources}"])
    assert "sources" in describe(cfg) and "library" in describe(cfg)  # config show renders the list
