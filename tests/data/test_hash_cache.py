import os
import time

import pytest
from test_prepare import config

from lmforge.data import hash_cache
from lmforge.data.shards import load_prepared
from lmforge.errors import DataError
from lmforge.prepare import prepare


@pytest.fixture
def hashed(monkeypatch) -> list:
    """The files hash_cache reads whole, in order."""
    calls = []
    real = hash_cache.sha256_file

    def counting(path):
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(hash_cache, "sha256_file", counting)
    return calls


def settled_prepare(tmp_path, *overrides):
    """A prepared directory whose files last changed over a second ago, so that a check of them is remembered."""
    tmp_path.mkdir(exist_ok=True)
    directory = prepare(config(tmp_path, *overrides), progress=False)
    time.sleep(hash_cache.SETTLED_NS / 1e9 + 0.1)
    return directory


def test_a_shard_is_hashed_once_then_only_when_its_file_changes(tmp_path, hashed):
    directory = settled_prepare(tmp_path)
    shards = sorted(p.name for p in directory.glob("tokens-*.bin"))
    assert len(shards) >= 2

    load_prepared(directory)
    assert sorted(hashed) == shards
    hashed.clear()
    again = load_prepared(directory)
    assert hashed == [], "an unchanged shard was read whole again"

    # a flipped bit keeps the size: the write changes its times, so it is hashed and refused
    victim = directory / shards[1]
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{shards[1]}: its SHA-256 is not the one meta.json recorded"):
        load_prepared(directory)
    assert hashed == [shards[1]]

    data[0] ^= 1  # mended: hashed again (the file is now fresh), accepted, and its tokens are the first load's
    victim.write_bytes(bytes(data))
    hashed.clear()
    assert [a.tolist() for a in load_prepared(directory).split("train")] == [a.tolist() for a in again.split("train")]
    assert hashed == [shards[1]]


def test_a_shard_of_another_preparation_copied_over_with_its_times_is_refused(tmp_path, hashed):
    directory = settled_prepare(tmp_path / "one")
    other = settled_prepare(tmp_path / "two", "tokenizer.vocab_size=270")
    load_prepared(directory)
    shard = sorted(directory.glob("tokens-*.bin"))[0]
    foreign = other / shard.name
    assert foreign.stat().st_size == shard.stat().st_size and foreign.read_bytes() != shard.read_bytes()
    stat = shard.stat()
    shard.write_bytes(foreign.read_bytes())
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # cp -p: size and modification time as before
    with pytest.raises(DataError, match="its SHA-256 is not the one meta.json recorded"):
        load_prepared(directory)


def test_a_check_just_after_a_write_is_not_remembered(tmp_path, hashed):
    directory = prepare(config(tmp_path), progress=False)  # its files changed a moment ago
    load_prepared(directory)
    first = list(hashed)
    hashed.clear()
    load_prepared(directory)
    assert first and hashed == first


def test_an_unwritable_cache_only_means_hashing_every_time(tmp_path, hashed, monkeypatch):
    directory = settled_prepare(tmp_path)
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("LMFORGE_CACHE_DIR", str(blocker))
    load_prepared(directory)
    first = list(hashed)
    hashed.clear()
    load_prepared(directory)
    assert first and hashed == first
