import math

import numpy as np
import pytest

from lmforge.text.dedup import MinHasher, band_layout, jaccard


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("num_perm", [64, 256])
def test_the_band_layout_makes_a_pair_at_the_threshold_a_candidate_with_probability_0999(threshold, num_perm):
    bands, rows = band_layout(threshold, num_perm)
    assert bands * rows <= num_perm
    assert 1 - (1 - threshold ** rows) ** bands >= 0.999
    # one more row per band would need more permutations than there are for the same recall
    more = math.ceil(math.log(1e-3) / math.log1p(-threshold ** (rows + 1)))
    assert more * (rows + 1) > num_perm


def test_the_band_layout_falls_back_to_one_row_per_band_when_no_layout_reaches_the_recall():
    assert band_layout(0.05, 16) == (16, 1)


def test_shingle_sets_and_their_jaccard():
    hasher = MinHasher(num_perm=64, threshold=0.8, shingle_size=2)
    a = hasher.shingles("one two three four, one two")  # "one two" twice: a set, sorted
    b = hasher.shingles("ONE two three five")
    assert len(a) == 4 and list(a) == sorted(set(a.tolist())) and a.dtype == np.uint32
    assert jaccard(a, b) == pytest.approx(2 / 5)  # {one two, two three} of 5 distinct shingles
    assert jaccard(a, a) == 1.0 and jaccard(a, hasher.shingles("")) == 0.0
    assert len(hasher.shingles("short")) == 1  # fewer words than a shingle: one shingle of them all
    assert hasher.band_keys(hasher.shingles("")) == () and len(hasher.band_keys(a)) == hasher.bands
