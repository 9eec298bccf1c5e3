"""Two "nodes" on one machine: two torchrun agents (`--nnodes 2 --nproc_per_node 1`) meeting by c10d
rendezvous on 127.0.0.1 train the same weights, bit for bit, as one `--standalone --nproc_per_node 2` run.

With a shared filesystem (one run directory, one prepared directory) the data is prepared once, by global
rank 0, and the other node reuses it. Without one (each node its own run and prepared directory), each node
prepares its own copy (the same shards) and only global rank 0's node gets a run directory. c10d numbers
the agents by their sorted (host, process id) (torchrun ignores --node_rank for it), so the test reads which
node was rank 0 from the prepare log rather than assuming it. The child is tests/train/multinode_child.py: `python
-m lmforge`, counting prepares.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CHILD = Path(__file__).with_name("multinode_child.py")
TIMEOUT = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, node: str) -> dict:
    return {**os.environ, "NODE": node, "LMFORGE_TEST_PREPARES": str(tmp_path / "prepares.log"),
            "OMP_NUM_THREADS": "1"}


def _two_nodes(tmp_path: Path, per_node: dict[str, list[str]]) -> None:
    """Start the two nodes' torchrun at once, each with its own arguments; both must succeed."""
    port = _free_port()
    procs = {}
    for node_rank, (node, args) in enumerate(per_node.items()):
        log = open(tmp_path / f"{node}.log", "w")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               f"--node_rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
               f"--rdzv-id=multinode-{port}", "--rdzv-conf=join_timeout=60", str(CHILD), "train", *args,
               "--no-progress"]
        procs[node] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(tmp_path, node)), log)
    try:
        for node, (proc, _) in procs.items():
            proc.wait(timeout=TIMEOUT)
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    for node, (proc, _) in procs.items():
        assert proc.returncode == 0, f"{node}:\n" + (tmp_path / f"{node}.log").read_text()[-3000:]


def _prepares(tmp_path: Path) -> list[tuple[str, int]]:
    log = tmp_path / "prepares.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [(node, int(rank)) for node, rank in (line.split() for line in lines)]


def _standalone(overrides: list[str], run_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lmforge", "train", *overrides, "--run-dir", str(run_dir), "--no-progress"],
                          capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]


def _assert_same_weights(a: Path, b: Path) -> None:
    from lmforge.run import load_run

    wa, wb = (load_run(run).model.state_dict() for run in (a, b))  # fsdp's are sharded: read either kind
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def _common(tiny_overrides: list[str], strategy: str) -> list[str]:
    return [*tiny_overrides, "train.max_steps=4", "train.eval_interval=4", "train.num_threads=1",
            "sample.num_samples=0", "model.dropout=0.0", "train.micro_batch_size=4", "train.report=false",
            f"train.strategy={strategy}"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_nodes_on_a_shared_filesystem_train_what_one_node_does(strategy, tiny_overrides, tmp_path):
    common = _common(tiny_overrides, strategy)
    run = ["--run-dir", str(tmp_path / "nodes")]
    _two_nodes(tmp_path, {"a": [*common, *run], "b": [*common, *run]})
    # one prepare, by global rank 0; the other node waited at the barrier and found the shards current
    assert [rank for _, rank in _prepares(tmp_path)] == [0]
    assert (tmp_path / "nodes/checkpoints/step-4/state.json").is_file()
    if strategy == "fsdp":  # both nodes wrote their shards into the one checkpoint
        assert sorted(p.name for p in (tmp_path / "nodes/checkpoints/step-4/sharded").glob("*.distcp")) == \
            ["__0_0.distcp", "__1_0.distcp"]
    assert (tmp_path / "nodes/metrics.jsonl").is_file()

    _standalone(common, tmp_path / "standalone")  # reuses the prepared shards (prepared_dir is the same)
    _assert_same_weights(tmp_path / "nodes", tmp_path / "standalone")


def test_two_nodes_without_a_shared_filesystem_each_prepare_and_rank_0_alone_writes_the_run(tiny_overrides,
                                                                                                tmp_path):
    common = [o for o in _common(tiny_overrides, "ddp") if not o.startswith("data.prepared_dir=")]
    per_node = {node: [*common, f"data.prepared_dir={tmp_path / node / 'prepared'}",
                       "--run-dir", str(tmp_path / node / "run")] for node in ("a", "b")}
    _two_nodes(tmp_path, per_node)
    prepares = _prepares(tmp_path)
    # one prepare on each node, by its own rank
    assert sorted(prepares) in ([("a", 0), ("b", 1)], [("a", 1), ("b", 0)]), prepares
    main, other = (node for node, _ in sorted(prepares, key=lambda p: p[1]))
    # global rank 0 alone writes a run directory; the other node's was never made
    assert (tmp_path / main / "run/checkpoints/step-4/model.safetensors").is_file()
    assert not (tmp_path / other / "run").exists()
    # each node prepared the same tokenizer and shards (meta.json differs only in the prepared_dir it records)
    a, b = tmp_path / "a" / "prepared", tmp_path / "b" / "prepared"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for path in a.iterdir():
        if path.name != "meta.json":
            assert path.read_bytes() == (b / path.name).read_bytes(), path.name
    metas = [json.loads((d / "meta.json").read_text()) for d in (a, b)]
    for meta in metas:
        meta["config"]["data"].pop("prepared_dir")
    assert metas[0] == metas[1]

    _standalone([*common, f"data.prepared_dir={tmp_path / main / 'prepared'}"], tmp_path / "standalone")
    _assert_same_weights(tmp_path / main / "run", tmp_path / "standalone")
