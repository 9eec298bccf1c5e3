"""Data augmentation: synthetic copies of training examples, labels and other fields carried over.

Methods (`AugmentConfig.method`, docs/augmentation.md): back-translation and abstractive summaries through
local sequence-to-sequence folders (seq2seq.py, summarize.py), extractive summaries (summarize.py), masked-LM
word replacement through a local masked LM or an lmforge encoder (mask.py), EDA (eda.py) and character noise
(noise.py). `augment(source, output, cfg)` runs one over a corpus (core.py); `lmforge augment` is its command,
and a recipe's `augment` section applies it to the training data only (stage.py).

A package of its own rather than a module of text/: the text stages stream documents through worker
processes, while augmentation holds models that run batched in one process, and its methods are several
files' worth of code.
"""

from lmforge.augment.core import FROM_FIELD, METHOD_FIELD, augment, build_method

__all__ = ["FROM_FIELD", "METHOD_FIELD", "augment", "build_method"]
