"""A full or read-only disk while writing shards, a checkpoint, a report, metrics or a text output: one line,
exit status 2, the previous version intact, no partial file under a final name.

Two ways: a patched `open` whose writes fail with ENOSPC under one folder (everywhere), and a real tmpfs of a
few hundred kilobytes in a private mount namespace (`unshare -rm`, where the machine allows it)."""

import builtins
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_checks import assert_one_line_error, invoke, leftovers
from lmforge.config import load_config
from lmforge.data.shards import is_current

TINY = ["tokenizer.kind=char", "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
        "train.micro_batch_size=4", "train.max_steps=6", "train.eval_interval=3", "train.tensorboard=false",
        "schedule.warmup_steps=1", "sample.num_samples=1", "sample.max_new_tokens=10"]


class FullFile:
    """A file object whose writes fail as a full disk's do, after `room` bytes."""

    def __init__(self, file, room: list[int], code: int):
        self._file, self._room, self._code = file, room, code

    def write(self, data):
        if len(data) > self._room[0]:
            raise OSError(self._code, os.strerror(self._code))
        self._room[0] -= len(data)
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __iter__(self):
        return iter(self._file)

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.fixture
def full_disk(monkeypatch):
    """`full_disk(folder, room=0, code=ENOSPC)`: from now on, files opened for writing under folder hold at most
    `room` bytes in all."""
    real_open = builtins.open

    def fill(folder: Path, room: int = 0, code: int = errno.ENOSPC):
        left, folder = [room], str(Path(folder).resolve())

        def patched(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            writing = any(c in mode for c in "wax+")
            if writing and isinstance(file, (str, os.PathLike)) and os.path.abspath(file).startswith(folder):
                return FullFile(f, left, code)
            return f

        monkeypatch.setattr(builtins, "open", patched)
        monkeypatch.setattr(io, "open", patched)
    return fill


def test_a_full_disk_while_cleaning_names_the_output_and_leaves_none(tmp_path, full_disk):
    src = tmp_path / "in.txt"
    src.write_text("one document\n\nanother document\n" * 200)
    out = tmp_path / "out" / "clean.jsonl"
    full_disk(out.parent, room=1000)
    code, _, err = invoke("clean", src, out, "data.txt_documents=blank_line", "--workers", "1", "--no-progress")
    assert_one_line_error(code, err, f"{out}: cannot write: No space left on device")
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_full_disk_while_preparing_keeps_the_previous_shards(tiny_corpus, tmp_path, full_disk):
    prepared = tmp_path / "prepared"
    first = [f"data.path={tiny_corpus}", f"data.prepared_dir={prepared}", *TINY]
    assert invoke("prepare", *first, "--no-progress")[0] == 0
    shards = {p.name: p.read_bytes() for p in prepared.iterdir()}
    other = tmp_path / "other.txt"
    other.write_text(tiny_corpus.read_text().upper())
    full_disk(tmp_path, room=5000)
    code, _, err = invoke("prepare", f"data.path={other}", f"data.prepared_dir={prepared}", *TINY, "--no-progress")
    assert_one_line_error(code, err, f"{prepared}: cannot write: No space left on device")
    assert {p.name: p.read_bytes() for p in prepared.iterdir()} == shards
    assert is_current(prepared, load_config(None, first)) and leftovers(tmp_path) == []


@pytest.fixture
def trained(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    code, _, err = invoke("train", f"data.path={tiny_corpus}", f"data.prepared_dir={tmp_path / 'prepared'}", *TINY,
                          "--run-dir", run, "--no-progress")
    assert code == 0, err
    return run


def test_a_full_disk_while_writing_a_report_keeps_the_previous_report(trained, full_disk):
    report = trained / "report.html"
    assert invoke("report", trained)[0] == 0
    before = report.read_bytes()
    full_disk(trained, room=100)
    assert_one_line_error(*invoke("report", trained)[::2], f"{report}: cannot write: No space left on device")
    assert report.read_bytes() == before and leftovers(trained) == []


def test_a_read_only_disk_during_training_names_the_file(trained, full_disk):
    """metrics.jsonl is appended to as the run goes, so its failure names it."""
    full_disk(trained, code=errno.EROFS)
    code, _, err = invoke("train", "--resume", trained, "train.max_steps=9", "--no-progress")
    assert_one_line_error(code, err, "metrics.jsonl: cannot write: Read-only file system")
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["step-3", "step-6"]


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_one(trained, monkeypatch):
    """safetensors writes from Rust, past any patched open: it is made to fail the way it does on a full disk."""
    import lmforge.train.checkpoint as checkpoint
    from safetensors import SafetensorError

    def full(tensors, path):
        Path(path).write_bytes(b"\0" * 100)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    class Full:
        f_flag, f_bavail, f_frsize = 0, 0, 4096

    monkeypatch.setattr(checkpoint, "save_file", full)
    monkeypatch.setattr("lmforge.io.os.statvfs", lambda path: Full)
    last = {p.name: p.read_bytes() for p in (trained / "checkpoints" / "step-6").iterdir()}
    code, _, err = invoke("train", "--resume", trained, "train.max_steps=9", "--no-progress")
    assert_one_line_error(code, err, f"{trained / 'checkpoints' / 'step-9'}: cannot write: No space left on device")
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["step-3", "step-6"]
    assert {p.name: p.read_bytes() for p in (trained / "checkpoints" / "step-6").iterdir()} == last
    assert leftovers(trained) == []


def can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


SCRIPT = """
set -u
mount -t tmpfs -o size={size}k tmpfs {disk}
lm() {{ name=$1; shift; {python} -m lmforge "$@" > {out}/$name.out 2> {out}/$name.err; echo $? > {out}/$name.rc; }}
lm full train {args} --run-dir {disk}/run --no-progress
ls -a {disk}/run/checkpoints > {out}/full.ls
cp -r {disk}/run/checkpoints {out}/kept
mount -o remount,size=64m {disk}
lm resumed train --resume {disk}/run --no-progress
ls -a {disk}/run/checkpoints > {out}/resumed.ls
mount -o remount,ro {disk}
lm ro train --resume {disk}/run train.max_steps=12 --no-progress
lm report report {disk}/run
"""


@pytest.mark.skipif(not can_mount_tmpfs(), reason="this machine cannot mount a tmpfs in a user namespace")
def test_a_real_full_then_read_only_tmpfs(tiny_corpus, tmp_path):
    """A tmpfs with room for the prepared data, the run and one checkpoint of a 64-wide model, not two: the
    second checkpoint fails in one line with the first intact; on a larger disk the run resumes from it; on a
    read-only one resuming and reporting fail in one line."""
    args = [f"data.path={tiny_corpus}", "model.n_embd=64", "model.n_layer=2", "model.block_size=16",
            "tokenizer.kind=char", "train.micro_batch_size=4", "train.max_steps=6", "train.eval_interval=3",
            "train.tensorboard=false", "schedule.warmup_steps=1", "sample.num_samples=1", "train.keep_last=1"]
    ref = tmp_path / "ref"
    assert invoke("train", *args, f"data.prepared_dir={ref / 'prepared'}", "--run-dir", ref / "run",
                  "train.max_steps=3", "--no-progress")[0] == 0
    size = sum(p.stat().st_size for p in ref.rglob("*") if p.is_file() and p.name != "report.html")  # written last
    ckpt = sum(p.stat().st_size for p in (ref / "run" / "checkpoints" / "step-3").iterdir())
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    script = SCRIPT.format(size=(size + ckpt // 2) // 1024 + 8, disk=disk, out=out, python=sys.executable,
                           args=" ".join([*args, f"data.prepared_dir={disk}/prepared"]))
    subprocess.run(["unshare", "-rm", "sh", "-c", script], check=True, env={**os.environ, "PYTHONPATH": ""})

    def result(name):
        return int((out / f"{name}.rc").read_text()), (out / f"{name}.err").read_text()

    assert_one_line_error(*result("full"), f"{disk}/run/checkpoints/step-6: cannot write: No space left on device")
    assert (out / "full.ls").read_text().split() == [".", "..", "step-3"]
    assert sorted(p.name for p in (out / "kept" / "step-3").iterdir()) == ["model.safetensors", "optimizer.pt",
                                                                          "state.json"]
    assert json.loads((out / "kept" / "step-3" / "state.json").read_text())["step"] == 3
    assert result("resumed")[0] == 0, result("resumed")[1]
    assert (out / "resumed.ls").read_text().split() == [".", "..", "step-6"]
    assert_one_line_error(*result("ro"), "Read-only file system")
    assert_one_line_error(*result("report"), "report.html: cannot write: Read-only file system")
