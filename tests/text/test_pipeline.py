"""The text stages inside `prepare`: a recipe's clean and curate sections change what gets tokenized."""

import tempfile

import numpy as np

from lmforge.data.shards import ensure_prepared, load_prepared


def tokens_and_text(cfg):
    data = load_prepared(ensure_prepared(cfg, progress=False))
    tokens = np.concatenate([*data.split("train"), *data.split("val")])
    return data, data.tokenizer.decode(tokens.tolist())


def test_prepare_runs_the_recipe_clean_and_curate_stages(tiny_config, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where prepare's curation keeps its index
    corpus = tmp_path / "c.txt"
    lines = tiny_corpus.read_text().splitlines()
    corpus.write_text("\n".join(f"<p>{line.upper()}</p>" for line in lines + lines[:100]) + "\n")
    base = ["tokenizer.eod=false", f"data.path={corpus}", "data.txt_documents=line"]

    stages = {"raw": [], "cleaned": ["clean.steps=[html,lowercase]"],
              "curated": ["clean.steps=[html,lowercase]", "curate.quality=null"]}
    configs = {k: tiny_config(*base, *v, f"data.prepared_dir={tmp_path / k}") for k, v in stages.items()}
    assert len({cfg.data_key() for cfg in configs.values()}) == 3  # the stages are part of the data key
    (raw, raw_text), (cleaned, clean_text), (curated, curated_text) = map(tokens_and_text, configs.values())

    assert "<p>" in raw_text and "<p>" not in clean_text and clean_text == clean_text.lower()
    assert len(clean_text) == sum(len(line) for line in lines + lines[:100])
    assert len(curated_text) == sum(len(line) for line in dict.fromkeys(lines))  # the repeats are gone
    assert raw.meta["sources"] == curated.meta["sources"]  # what was read is the raw corpus
    assert not list(tmp_path.glob(".lmforge-curate-*"))
    mtime = (curated.path / "meta.json").stat().st_mtime_ns
    ensure_prepared(configs["curated"], progress=False)  # reused while nothing changed
    assert (curated.path / "meta.json").stat().st_mtime_ns == mtime
