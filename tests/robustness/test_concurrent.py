"""Two processes at once: two prepares of the same data build one shard set; a second training of a run that
is being trained refuses in one line, and a killed owner does not hold the run."""

import os
import random
import signal
import subprocess
import sys
import time

from cli_checks import leftovers
from lmforge.config import load_config
from lmforge.data.shards import is_current, load_prepared

TINY = ["tokenizer.kind=char", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
        "train.micro_batch_size=4", "train.tensorboard=false", "schedule.warmup_steps=1", "sample.num_samples=1",
        "sample.max_new_tokens=10", "train.num_threads=1"]


def lmforge(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lmforge", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def wait_for(condition, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_two_prepares_at_once_build_one_shard_set(tmp_path):
    rng = random.Random(0)
    words = "the cat sat on a mat and then it ran to see the dog who was not there".split()
    corpus = tmp_path / "corpus.txt"  # large enough (4 MB) that the first prepare is still encoding
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(80_000)))
    prepared = tmp_path / "prepared"
    # the library's own encoder: char's lookup table encodes 4 MB before the second process has even started
    args = ["prepare", f"data.path={corpus}", f"data.prepared_dir={prepared}", "data.shard_tokens=500000",
            "data.encoder=tokenizers", *TINY, "--no-progress"]
    first = lmforge(*args)
    wait_for(lambda: any(p.name.startswith(".prepared.tmp-") for p in tmp_path.iterdir()), "the first to build")
    second = lmforge(*args)
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    assert "waiting for another process preparing" in outs[1][1]
    assert outs[0][0] == outs[1][0]  # the same summary: the second reused the first's shards
    cfg = load_config(None, args[1:-1])
    assert is_current(prepared, cfg) and leftovers(tmp_path) == []
    data = load_prepared(prepared)
    assert len(data.meta["shards"]) > 1 and sum(len(a) for a in data.split("train")) > 3_000_000


def test_a_second_training_of_the_same_run_refuses_and_a_killed_owner_frees_it(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    base = [f"data.path={tiny_corpus}", f"data.prepared_dir={tmp_path / 'prepared'}", *TINY]
    owner = lmforge("train", *base, "train.max_steps=100000", "train.eval_interval=5",
                    "--run-dir", run, "--no-progress")
    wait_for(lambda: (run / "checkpoints" / "step-5").is_dir() or owner.poll() is not None, "a checkpoint")
    assert owner.poll() is None, owner.communicate()
    second = lmforge("train", "--resume", run, "--no-progress")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2 and err.strip() == (
        f"error: {run}: another process is writing this run (its .lock is held)"), err
    assert owner.poll() is None
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    last = max(int(p.name.removeprefix("step-")) for p in (run / "checkpoints").glob("step-*"))
    metrics = (run / "metrics.jsonl").read_bytes()
    short = lmforge("train", "--resume", run, "train.max_steps=5", "--no-progress")
    _, err = short.communicate(timeout=60)
    assert short.returncode == 2 and err.strip() == (f"error: train.max_steps=5: {run / 'checkpoints' / f'step-{last}'}"
                                                     f" is already at step {last}; give a larger train.max_steps"
                                                     " to train on"), err
    assert (run / "metrics.jsonl").read_bytes() == metrics  # refused before anything was trimmed
    after = lmforge("train", "--resume", run, f"train.max_steps={last + 3}", "--no-progress")
    _, err = after.communicate(timeout=120)
    assert after.returncode == 0, err
