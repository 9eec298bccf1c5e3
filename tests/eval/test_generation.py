"""Prompts for the generation metrics: evenly spaced, each followed by its true continuation."""

import numpy as np
import pytest

from lmforge.errors import DataError
from lmforge.eval.generation import prompt_windows


def test_prompts_are_evenly_spaced_and_continued_by_the_true_text():
    pairs = prompt_windows([np.arange(100)], count=4, prompt_tokens=5, new_tokens=3)
    assert [int(p[0]) for p, _ in pairs] == [0, 31, 61, 92]  # the last possible start is 100 - 8
    for prompt, truth in pairs:
        assert len(prompt) == 5 and truth.tolist() == list(range(prompt[-1] + 1, prompt[-1] + 4))


def test_prompts_never_straddle_segments_and_skip_short_ones():
    segments = [np.arange(0, 10), np.arange(100, 103), np.arange(200, 210)]
    pairs = prompt_windows(segments, count=20, prompt_tokens=4, new_tokens=4)
    starts = [int(p[0]) for p, _ in pairs]
    assert starts == [0, 1, 2, 200, 201, 202]  # every start there is, each once
    with pytest.raises(DataError, match="need 8 consecutive tokens"):
        prompt_windows([np.arange(7)], count=2, prompt_tokens=4, new_tokens=4)
