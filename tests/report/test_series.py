"""What a report draws, as plain data: records read from a (possibly half-written) metrics.jsonl, the series in
them, the run's own clock, and the config keys on which runs differ."""

import json

from lmforge.report.series import (differing_keys, extract_series, group_lrs, latest_evals, read_records,
                                   run_times)


def test_a_half_written_last_line_is_left_out_and_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 3.0}\n\n{"step": 2, "loss": 2.5}\n{"step": 3, "lo')
    records = read_records(path)
    assert [r["step"] for r in records.rows] == [1, 2]
    assert records.skipped == ["metrics.jsonl line 4: not a complete JSON record, left out"]
    assert read_records(tmp_path / "missing.jsonl").rows == []


def test_series_come_in_report_order_with_each_validation_source_its_own():
    rows = [{"step": 5, "time": 0.0, "lr": 1e-3, "loss": 3.0, "tokens_per_s": 100.0, "tokens": 640},
            {"step": 10, "time": 1.0, "loss": float("nan"), "lr": 2e-3, "flag": True, "note": "x", "tokens": 1280},
            {"step": 10, "time": 1.5, "val_loss": 2.9, "val_loss/wiki": 3.1, "elapsed_s": 1.5}]
    series = extract_series(rows, tokens_per_step=64)
    assert list(series) == ["loss", "val_loss", "lr", "tokens_per_s", "tokens", "val_loss/wiki"]
    assert series["loss"].step == [5] and series["loss"].value == [3.0]  # NaN is not drawn
    assert series["lr"].step == [5, 10] and series["lr"].tokens == [320, 640]
    assert series["val_loss/wiki"].value == [3.1] and series["val_loss"].time == [1.5]
    assert extract_series(rows)["lr"].tokens is None


def test_run_time_is_the_logged_elapsed_time_or_the_clock_without_a_resume_pause():
    assert run_times([{"elapsed_s": 2.0}, {"elapsed_s": 4.5}]) == [2.0, 4.5]
    # an old run: 1 s between records, then a stop of an hour before the resume
    rows = [{"time": 100.0}, {"time": 101.0}, {"time": 102.0}, {"time": 3702.0}, {"time": 3703.0}]
    assert run_times(rows) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_differing_keys_are_dotted_and_a_missing_key_differs():
    a = {"model": {"n_layer": 4, "n_embd": 128}, "optimizer": {"lr": 1e-3, "betas": [0.9, 0.95]}}
    b = {"model": {"n_layer": 4, "n_embd": 64}, "optimizer": {"lr": 1e-3, "betas": [0.9, 0.99]}, "name": "b"}
    assert differing_keys([a, b]) == ["model.n_embd", "name", "optimizer.betas"]
    assert differing_keys([a, json.loads(json.dumps(a))]) == []


def test_the_newest_evaluation_of_each_checkpoint_split_and_data_is_kept():
    rows = [{"checkpoint": "last", "split": "val", "data": None, "result": {"loss": 3.0}},
            {"checkpoint": "best", "split": "val", "data": None, "result": {"loss": 2.9}},
            {"checkpoint": "last", "split": "val", "data": None, "result": {"loss": 2.5}},
            {"checkpoint": "last", "split": "val"}]
    assert [e["result"]["loss"] for e in latest_evals(rows)] == [2.5, 2.9]


def test_per_group_rates_keep_frozen_groups_as_gaps():
    rows = [{"step": 1, "lr_groups": [None, 0.01]}, {"step": 2, "loss": 1.0}, {"step": 3, "lr_groups": [0.005, 0.01]}]
    assert group_lrs(rows) == ([1, 3], [[None, 0.01], [0.005, 0.01]])
