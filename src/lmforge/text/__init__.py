"""Text in, text out, streaming: cleaning (`clean`) and curation (`curate`) of a corpus, with a report.

`clean(source, output, CleanConfig(preset="classic"))` and `curate(source, output, CurateConfig())` read
any corpus `prepare` reads and write jsonl or txt; `Cleaner.from_config(cfg).clean_text(text)` cleans one
string. A recipe's `clean` and `curate` sections make `prepare` run the same stages before tokenizing.
See docs/cleaning.md for what each step does and which use it helps or harms.
"""

from lmforge.text.clean import PRESETS, Cleaner
from lmforge.text.pipeline import clean, curate

__all__ = ["PRESETS", "Cleaner", "clean", "curate"]
