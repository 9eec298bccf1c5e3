import math

import pytest

from lmforge.config import ScheduleConfig, TrainConfig
from lmforge.train.schedules import batch_rows, lr_at


def nanogpt_lr(it, lr=1e-3, warmup=100, decay_iters=2000, min_lr=1e-4):
    """nanoGPT's get_lr, written out as in train.py."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_cosine_matches_nanogpt():
    cfg = ScheduleConfig(name="cosine", warmup_steps=100, min_lr=1e-4)
    for step in [0, 1, 50, 99, 100, 101, 500, 1000, 1999, 2000]:
        assert lr_at(step, 1e-3, cfg, 2000) == pytest.approx(nanogpt_lr(step), rel=1e-12)


@pytest.mark.parametrize("name", ["constant", "cosine", "linear", "inverse_sqrt", "onecycle", "slanted_triangular", "wsd", "step"])
def test_every_schedule_is_positive_and_peaks_at_lr(name):
    cfg = ScheduleConfig(name=name, warmup_steps=10, min_lr=1e-5, warmup_fraction=0.1)
    rates = [lr_at(s, 1e-3, cfg, 100) for s in range(100)]
    assert all(r > 0 for r in rates)
    assert max(rates) == pytest.approx(1e-3, rel=0.02)


def test_linear_ends_at_min_lr_and_constant_stays():
    cfg = ScheduleConfig(name="linear", warmup_steps=0, min_lr=0.0)
    assert lr_at(0, 1.0, cfg, 10) == 1.0
    assert lr_at(5, 1.0, cfg, 10) == pytest.approx(0.5)
    assert lr_at(10, 1.0, cfg, 10) == 0.0
    const = ScheduleConfig(name="constant", warmup_steps=0)
    assert {lr_at(s, 0.3, const, 10) for s in range(10)} == {0.3}


def test_inverse_sqrt_decays_as_one_over_root_step():
    cfg = ScheduleConfig(name="inverse_sqrt", warmup_steps=100, min_lr=0.0)
    assert lr_at(100, 1.0, cfg, 10_000) == 1.0
    assert lr_at(400, 1.0, cfg, 10_000) == pytest.approx(0.5)


def test_slanted_triangular_follows_ulmfit():
    # Howard & Ruder eq. 3 with T=100, cut_frac=0.1, ratio=32
    cfg = ScheduleConfig(name="slanted_triangular", warmup_fraction=0.1, stlr_ratio=32)
    assert lr_at(0, 0.01, cfg, 100) == pytest.approx(0.01 / 32)
    assert lr_at(10, 0.01, cfg, 100) == pytest.approx(0.01)
    p = 1 - (55 - 10) / (10 * (1 / 0.1 - 1))
    assert lr_at(55, 0.01, cfg, 100) == pytest.approx(0.01 * (1 + p * 31) / 32)
    assert lr_at(100, 0.01, cfg, 100) == pytest.approx(0.01 / 32)


def test_onecycle_rises_from_lr_over_div_then_falls_to_min():
    cfg = ScheduleConfig(name="onecycle", warmup_fraction=0.25, onecycle_div=25, min_lr=1e-6)
    assert lr_at(0, 1e-3, cfg, 100) == pytest.approx(1e-3 / 25)
    assert lr_at(25, 1e-3, cfg, 100) == pytest.approx(1e-3)
    assert lr_at(100, 1e-3, cfg, 100) == pytest.approx(1e-6)


def test_wsd_is_flat_then_cools_down_linearly():
    cfg = ScheduleConfig(name="wsd", warmup_steps=10, cooldown_fraction=0.2, min_lr=0.0)
    assert lr_at(10, 1.0, cfg, 100) == lr_at(79, 1.0, cfg, 100) == 1.0
    assert lr_at(90, 1.0, cfg, 100) == pytest.approx(0.5)
    assert lr_at(100, 1.0, cfg, 100) == 0.0


def test_batch_warmup_ramps_linearly_then_holds():
    cfg = TrainConfig(micro_batch_size=16, batch_warmup_start=4, batch_warmup_steps=6)
    assert [batch_rows(step, cfg) for step in range(8)] == [4, 6, 8, 10, 12, 14, 16, 16]
    assert batch_rows(0, TrainConfig(micro_batch_size=16)) == 16


def test_step_holds_then_multiplies_by_gamma_every_step_size():
    cfg = ScheduleConfig(name="step", step_start=2, step_size=2, step_gamma=0.5)
    assert [lr_at(step, 8.0, cfg, 100) for step in range(9)] == [8, 8, 8, 8, 4, 4, 2, 2, 1]
