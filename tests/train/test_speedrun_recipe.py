"""The Tiny Shakespeare speedrun recipe (every modern option at once) trains, on the tiny corpus."""

import json
from pathlib import Path

from lmforge.config import load_config
from lmforge.train.trainer import train

RECIPE = Path(__file__).parents[2] / "configs" / "shakespeare-char.yaml"


def test_speedrun_recipe_trains_a_few_steps(tiny_corpus, tmp_path):
    cfg = load_config(RECIPE, [f"data.path={tiny_corpus}", f"data.prepared_dir={tmp_path / 'prepared'}",
                               "model.block_size=32", "train.max_steps=30", "train.eval_interval=30",
                               "train.tensorboard=false", "train.num_threads=1", "schedule.warmup_steps=5",
                               "sample.num_samples=0"])
    result = train(cfg, tmp_path / "run", progress=False)
    losses = [r["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if "loss" in (r := json.loads(line))]
    assert result.step == 30 and losses[-1] < 0.7 * losses[0]
