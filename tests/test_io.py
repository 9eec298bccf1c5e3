"""Atomic writes: whole or absent, a full or read-only disk in one line, leftovers of dead processes removed."""

import errno
import json
import subprocess
import sys
import threading
import time

import pytest

from lmforge.errors import WriteError
from lmforge.io import atomic_dir, atomic_path, atomic_write_json, clear_stale, clear_stale_in, exclusive


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_full_disk_mid_file_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(WriteError, match=rf"^{target}: cannot write: No space left on device$"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_full_disk_mid_directory_keeps_the_previous_directory(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(WriteError, match="Read-only file system"):
        with atomic_dir(target) as tmp:
            (tmp / "a").write_text("new")
            raise OSError(errno.EROFS, "Read-only file system")
    assert (target / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_an_error_without_errno_on_a_full_disk_is_a_write_error(tmp_path, monkeypatch):
    """torch.save says RuntimeError when the disk fills; the file system is asked why."""
    class Full:
        f_flag, f_bavail, f_frsize = 0, 3, 4096

    monkeypatch.setattr("lmforge.io.os.statvfs", lambda path: Full)
    with pytest.raises(WriteError, match="No space left on device"):
        with atomic_dir(tmp_path / "ckpt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    Full.f_bavail = 1 << 20  # 4 GiB free: the error is not the disk's and passes through unchanged
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic_dir(tmp_path / "ckpt"):
            raise RuntimeError("unexpected pos")


def test_other_errors_pass_through_and_leave_nothing(tmp_path):
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("partial")
            raise KeyError("a bug, not the disk")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_or_a_file_in_the_way_is_a_write_error_naming_the_path(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(WriteError, match=r"folder: is a directory; give a file name"):
        atomic_write_json(tmp_path / "folder", {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"out.json: cannot write: .*/file is a file, not a folder"):
        atomic_write_json(tmp_path / "file" / "sub" / "out.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


def test_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "meta.json"
    dead, live = dead_pid(), subprocess.os.getppid()
    (tmp_path / f".meta.json.tmp-{dead}").write_text("half")
    (tmp_path / f".meta.json.tmp-{live}").write_text("being written")
    (tmp_path / f".step-3.tmp-{dead}").mkdir()  # another name: not this write's business
    atomic_write_json(target, {"v": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["meta.json", f".meta.json.tmp-{live}", f".step-3.tmp-{dead}"])
    (tmp_path / f".step-3.tmp-{dead}" / "model.safetensors").write_text("half")
    (tmp_path / f".step-3.old-{dead}").mkdir()
    clear_stale(tmp_path / "step-3")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["meta.json", f".meta.json.tmp-{live}"])
    (tmp_path / f".step-1.old-{dead}").mkdir()  # a pruned checkpoint whose removal was killed
    (tmp_path / f".step-2.old-{live}").mkdir()
    clear_stale_in(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["meta.json", f".meta.json.tmp-{live}", f".step-2.old-{live}"])


def test_exclusive_waits_for_the_holder(tmp_path, capfd):
    lock = tmp_path / ".x.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from lmforge.io import exclusive
with exclusive(__import__('pathlib').Path({str(lock)!r}), 'x'):
    print('held', flush=True)
    time.sleep(1.5)
"""], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    start = time.monotonic()
    with exclusive(lock, "preparing x"):
        waited = time.monotonic() - start
    holder.wait()
    assert waited > 0.5
    assert "waiting for another process preparing x" in capfd.readouterr().err


def test_a_killed_holder_does_not_keep_the_lock(tmp_path):
    lock = tmp_path / ".x.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import time
from pathlib import Path
from lmforge.io import exclusive
with exclusive(Path({str(lock)!r}), 'x'):
    print('held', flush=True)
    time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    done = threading.Event()
    t = threading.Thread(target=lambda: (exclusive(lock, "x").__enter__(), done.set()), daemon=True)
    t.start()
    assert done.wait(5)
