"""What lmforge's uses of transformers share: keeping its logs and progress bars out of a command's output."""

from __future__ import annotations

import contextlib
import io


@contextlib.contextmanager
def quiet_transformers():
    """transformers logs and draws progress bars while it loads and saves; a command's output is its own (and
    an error stays one line)."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
