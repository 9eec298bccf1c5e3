"""Evaluation: LM metrics (lm.py), generation and text metrics (generation.py, text.py), task metrics (tasks.py),
and the eval recipe (recipe.py) that scores a run directory: `lmforge.eval.evaluate(run_dir, ...)`."""


def evaluate(run_dir, data=None, **options) -> dict:
    """`lmforge eval` from Python: see `lmforge.eval.recipe.evaluate` for the options. Imported when called,
    since the recipe imports the fine-tuning parts, which import this package's metric modules."""
    from lmforge.eval.recipe import evaluate as run

    return run(run_dir, data, **options)
