"""Evaluation: language-model metrics now; text and task metrics plug in beside them."""
