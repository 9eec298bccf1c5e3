"""Two gloo ranks under torchrun train the same weights as one process with the same global batch."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lmforge.train.trainer import train


def _weights(run_dir) -> dict:
    """A run's last weights, whichever kind of checkpoint holds them, read in this one process."""
    from lmforge.run import load_run

    return load_run(run_dir).model.state_dict()


LSTM = ["model.arch=lstm", "model.hidden_size=16"]


@pytest.mark.parametrize("strategy, accum, optimizer, arch", [
    ("ddp", 1, "muon", []), ("fsdp", 1, "adamw", []), ("fsdp", 2, "adamw", []), ("fsdp", 2, "muon", []),
    # a recurrent stack is one fsdp block; its windows are streams, its state carried between them
    ("fsdp", 2, "adamw", LSTM)])
def test_two_ranks_equal_one_process(strategy, accum, optimizer, arch, tiny_overrides, tmp_path):
    base = [o for o in tiny_overrides if not (arch and o.startswith("model.n_head"))]
    common = [*base, *arch, "train.max_steps=4", "train.eval_interval=4", "train.num_threads=1",
              "sample.num_samples=0", "model.dropout=0.0", f"train.grad_accum_steps={accum}",
              f"optimizer.name={optimizer}"]
    single = train(tiny_config_from(common, f"train.micro_batch_size={8 // accum}"), tmp_path / "single",
                   progress=False)

    overrides = [*common, f"train.micro_batch_size={4 // accum}", f"train.strategy={strategy}"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lmforge", "train", *overrides, "--run-dir", str(tmp_path / "ddp"), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = _weights(single.run_dir), _weights(tmp_path / "ddp")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)


def _torchrun(*args, ranks: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                           "-m", "lmforge", "train", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, timeout=300)


def test_an_fsdp_run_resumes_bit_for_bit_and_its_checkpoint_loads_anywhere(tiny_overrides, tmp_path):
    common = [*tiny_overrides, "train.num_threads=1", "train.strategy=fsdp",
              "train.micro_batch_size=4", "train.eval_interval=3", "model.dropout=0.1", "sample.num_samples=1",
              "sample.max_new_tokens=8", "schedule.decay_steps=6"]
    whole = _torchrun(*common, "train.max_steps=6", "--run-dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    half = _torchrun(*common, "train.max_steps=3", "--run-dir", tmp_path / "half")
    assert half.returncode == 0, half.stderr[-3000:]
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "lmforge", "train", "--resume", str(tmp_path / "half"), "train.max_steps=6",
                              "--no-progress"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # sharded by default under fsdp: each rank's file and DCP's metadata, no gathered copy
    shards = tmp_path / "whole/checkpoints/step-6/sharded"
    assert sorted(p.name for p in shards.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (tmp_path / "whole/checkpoints/step-6/model.safetensors").exists()
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "half")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "whole/samples.txt").read_text() == (tmp_path / "half/samples.txt").read_text()
    from cli_checks import invoke
    code, out, err = invoke("eval", tmp_path / "whole", "--json")  # a single process reads the shards
    assert code == 0 and not err, err
    code, out, err = invoke("export", tmp_path / "whole", tmp_path / "hf")
    assert code == 0, err
    exported = load_file(tmp_path / "hf/model.safetensors")
    assert torch.equal(exported["transformer.wte.weight"], a["transformer.wte.weight"])


def test_a_sharded_run_resumes_on_another_number_of_processes(tiny_overrides, tmp_path):
    """2 fsdp ranks -> 1 process, and 1 process -> 2 fsdp ranks, each equal to going on as it was (no dropout,
    the same global batch: the windows are the same draws, data/loader.py)."""
    import shutil

    from cli_checks import assert_one_line_error, invoke

    common = [*tiny_overrides, "train.num_threads=1", "train.eval_interval=3", "model.dropout=0.0",
              "sample.num_samples=0", "schedule.decay_steps=6", "train.max_steps=6", "train.checkpoint_interval=3",
              "train.keep_last=2"]
    two = _torchrun(*common, "train.strategy=fsdp", "train.micro_batch_size=4", "--run-dir", tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    shutil.copytree(tmp_path / "two", tmp_path / "two-then-one")
    shutil.rmtree(tmp_path / "two-then-one/checkpoints/step-6")  # as if killed after step 3
    code, _, err = invoke("train", "--resume", tmp_path / "two-then-one", "train.strategy=auto",
                          "train.micro_batch_size=8", "--no-progress")
    assert code == 0, err
    a, b = _weights(tmp_path / "two"), _weights(tmp_path / "two-then-one")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)

    one = train(tiny_config_from(common, "train.micro_batch_size=8", "train.max_steps=3"), tmp_path / "one-then-two",
                progress=False)
    assert one.step == 3
    grown = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "lmforge", "train", "--resume", str(tmp_path / "one-then-two"), "train.max_steps=6",
                            "train.strategy=fsdp", "train.micro_batch_size=4", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert grown.returncode == 0, grown.stderr[-3000:]
    c = _weights(tmp_path / "one-then-two")
    for key in a:
        torch.testing.assert_close(a[key], c[key], rtol=1e-5, atol=1e-5)

    # a shard missing, or one from another checkpoint, is named in one line before anything is read
    step3 = tmp_path / "two/checkpoints/step-3/sharded"
    (step3 / "__1_0.distcp").rename(tmp_path / "aside.distcp")
    code, _, err = invoke("eval", tmp_path / "two", "--checkpoint", "step-3")
    assert_one_line_error(code, err, "__1_0.distcp: checkpoint shard missing")
    shutil.copy(tmp_path / "two/checkpoints/step-6/sharded/__1_0.distcp", step3 / "__1_0.distcp")
    code, _, err = invoke("eval", tmp_path / "two", "--checkpoint", "step-3")
    assert_one_line_error(code, err, "__1_0.distcp: truncated or foreign checkpoint")


def test_four_fsdp_ranks_resume_on_two(tiny_overrides, tmp_path):
    """4 -> 2 ranks with the global batch kept (2 x 4 = 4 x 2 windows): the shards of four are read by two."""
    import shutil

    common = [*tiny_overrides, "train.num_threads=1", "train.eval_interval=3", "model.dropout=0.0",
              "sample.num_samples=0", "schedule.decay_steps=6", "train.max_steps=6", "train.checkpoint_interval=3",
              "train.keep_last=2", "train.strategy=fsdp"]
    four = _torchrun(*common, "train.micro_batch_size=2", "--run-dir", tmp_path / "four", ranks=4)
    assert four.returncode == 0, four.stderr[-3000:]
    assert len(list((tmp_path / "four/checkpoints/step-3/sharded").glob("*.distcp"))) == 4
    shutil.copytree(tmp_path / "four", tmp_path / "four-then-two")
    shutil.rmtree(tmp_path / "four-then-two/checkpoints/step-6")
    two = _torchrun("--resume", tmp_path / "four-then-two", "train.micro_batch_size=4")
    assert two.returncode == 0, two.stderr[-3000:]
    assert len(list((tmp_path / "four-then-two/checkpoints/step-6/sharded").glob("*.distcp"))) == 2
    a, b = _weights(tmp_path / "four"), _weights(tmp_path / "four-then-two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)


def tiny_config_from(overrides, *extra):
    from lmforge.config import load_config

    return load_config(None, [*overrides, *extra])


@pytest.mark.parametrize("args, message", [
    (["train.strategy=fsdp"], "train.strategy=fsdp: needs 2 or more processes"),
    (["train.strategy=ddp"], "train.strategy=ddp: needs 2 or more processes"),
    (["train.checkpoint_format=sharded"], "train.checkpoint_format=sharded: needs train.strategy=fsdp"),
])
def test_a_strategy_that_does_not_fit_is_one_line(args, message, tiny_overrides, tmp_path):
    from cli_checks import assert_one_line_error, invoke

    code, _, err = invoke("train", *tiny_overrides, *args, "--run-dir", tmp_path / "r", "--no-progress")
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["model.arch=ffnn", "model.hidden_size=16"], "train.strategy=fsdp: the ffnn model has no blocks to shard"),
])
def test_fsdp_refuses_what_it_cannot_shard_in_one_line(args, message, tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith(("model.n_head", "model.n_layer"))]
    proc = _torchrun(*overrides, "train.strategy=fsdp", *args, "--run-dir", tmp_path / "r")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(message in line for line in errors), proc.stderr[-2000:]
    # torchrun itself reports a failed child with a traceback of its own; none may come from lmforge
    assert "lmforge/" not in proc.stderr.replace(str(tmp_path), "") and not (tmp_path / "r").exists()


def test_a_recurrent_run_resumes_only_on_as_many_processes(tiny_overrides, tmp_path):
    from cli_checks import assert_one_line_error, invoke

    overrides = [o for o in tiny_overrides if not o.startswith(("model.n_head", "model.n_layer"))]
    run = _torchrun(*overrides, "model.arch=lstm", "model.hidden_size=16", "optimizer.name=adamw",
                    "train.num_threads=1", "train.strategy=ddp", "train.micro_batch_size=4", "train.max_steps=2",
                    "sample.num_samples=0", "--run-dir", tmp_path / "r")
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = (tmp_path / "r/metrics.jsonl").read_text()
    code, _, err = invoke("train", "--resume", tmp_path / "r", "train.max_steps=4", "train.strategy=auto",
                          "--no-progress")
    assert_one_line_error(code, err, "saved by 2 processes; a recurrent run carries each rank's hidden state")
    assert (tmp_path / "r/metrics.jsonl").read_text() == metrics  # nothing trimmed or written


def test_an_fsdp_run_killed_anywhere_resumes_to_the_uninterrupted_weights(tiny_overrides, tmp_path):
    """SIGKILL to the whole job (torchrun and its ranks, as a scheduler kills it) at a moment drawn after its fifth
    checkpoint: every checkpoint left under its final name is whole, and the resume ends bit for bit where the
    uninterrupted run did."""
    import os
    import random
    import signal
    import time

    from lmforge.train.checkpoint import list_checkpoints, verify

    common = [*tiny_overrides, "train.num_threads=1", "train.strategy=fsdp", "train.micro_batch_size=4",
              "train.max_steps=60", "train.eval_interval=20", "train.checkpoint_interval=2", "train.keep_last=2",
              "model.dropout=0.1", "sample.num_samples=0", "train.report=false"]
    whole = _torchrun(*common, "--run-dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]

    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "lmforge", "train", *common, "--run-dir", str(tmp_path / "killed"), "--no-progress"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not any(step >= 10 for step, _ in list_checkpoints(tmp_path / "killed")) and job.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(random.Random(0).uniform(0.0, 0.1))  # in the next few steps and their checkpoints, of 25 more
    ranks = _descendants(job.pid)  # torchrun puts its workers in process groups of their own
    assert ranks, "the run ended before the kill"
    for pid in [job.pid, *ranks]:
        os.kill(pid, signal.SIGKILL)
    job.wait()
    saved = list_checkpoints(tmp_path / "killed")
    assert saved and saved[-1][0] < 60, f"the kill did not land inside the run: {saved}"
    for _, ckpt in saved:  # whole: state.json and every file it records, with its sum
        for name in json.loads((ckpt / "state.json").read_text())["sha256"]:
            verify(ckpt, name)

    resumed = _torchrun("--resume", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not [p.name for p in (tmp_path / "killed/checkpoints").iterdir() if p.name.startswith(".")]


def _descendants(pid: int) -> list[int]:
    """The live processes below `pid`."""
    from cli_checks import live_processes

    children: dict[int, list[int]] = {}
    for child, parent, _, _ in live_processes():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_a_mixture_on_two_ranks_equals_one_process(tiny_corpus, tiny_overrides, tmp_path):
    """data.sources under DDP: the ranks share each global batch of the mixture's windows, so they train the
    weights one process trains, log the same per-source validation losses and draw the same windows."""
    other = tmp_path / "other.txt"
    words = "a quick brown fox jumps over lazy dogs while birds sing".split()
    other.write_text("\n".join(" ".join(words[(i + j) % len(words)] for j in range(12)) for i in range(300)))
    base = [o for o in tiny_overrides if not o.startswith("data.path=")]
    common = [*base, f"data.sources=[{{path: {tiny_corpus}, weight: 3}}, {{path: {other}, weight: 1, name: fox}}]",
              "train.max_steps=4", "train.eval_interval=4", "train.num_threads=1", "sample.num_samples=0",
              "model.dropout=0.0"]
    single = train(tiny_config_from(common, "train.micro_batch_size=8"), tmp_path / "single", progress=False)
    proc = _torchrun(*common, "train.micro_batch_size=4", "train.strategy=ddp", "--run-dir", tmp_path / "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]

    a, b = _weights(single.run_dir), _weights(tmp_path / "ddp")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    logged = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (single.run_dir, tmp_path / "ddp")]
    one, two = ([r for r in lines if "val_loss" in r][-1] for lines in logged)
    for key in ("val_loss", "val_loss/tiny", "val_loss/fox"):
        assert two[key] == pytest.approx(one[key], abs=1e-5)
    drawn = [json.loads((run / "checkpoints/step-4/state.json").read_text())["loader"]
             for run in (single.run_dir, tmp_path / "ddp")]
    assert drawn[0][0]["drawn"] == {"tiny": 24, "fox": 8}
    assert len(drawn[1]) == 2 and all(rank["drawn"] == drawn[0][0]["drawn"] for rank in drawn[1])
