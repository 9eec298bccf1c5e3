"""Kill anywhere (issue 20): each long verb is SIGKILLed at a random moment, then rerun (clean, curate, augment,
prepare: the same command) or resumed (`train --resume`, `finetune --resume`, `bakeoff --resume`), and what it
leaves must be what an uninterrupted run leaves:

- tensors (safetensors) and token shards bit for bit, every other output byte for byte, except the fields that
  hold a time, a rate or a memory peak (TIME_KEYS and friends below), which no two runs share;
- right after the kill, a file under its final name is whole (equal to the uninterrupted run's), a checkpoint
  `checkpoints/step-N` or a prepared folder is complete or absent, and a log (metrics.jsonl) holds a prefix of
  the uninterrupted run's records;
- after the rerun, no scratch is left (`.NAME.tmp-PID`, `.NAME.old-PID`, `.lmforge-curate-*`: any hidden entry
  but a lock file), and no process of the killed one is still running (a bake-off's training child).

The kill time is drawn by a seeded RNG, uniformly between the moments the uninterrupted run first and last changed
its folder: before, a kill only tests that Python starts again, and after, that it had finished. A kill that lands
after the process has exited still counts. Where no checkpoint was written yet, train and finetune start again
with --overwrite (there is nothing to resume); `train --resume` of a run that had ended may refuse in its one line.
Every run happens in its own folder with relative paths, so that no output holds a path that differs between runs.
Seeds 0-1 run by default, seeds 2-9 with `-m slow`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from cli_checks import live_processes

DEFAULT_SEEDS = range(2)
SLOW_SEEDS = range(2, 10)
TIMEOUT_S = 180

# fields that measure the run (wall time, throughput, memory) rather than what it computed
TIME_KEYS = {"time", "elapsed_s", "tokens_per_s", "flops_per_s", "mfu", "memory_mib", "peak_memory_mib",
             "duration_s", "throughput", "wall_s", "mtime_ns"}
APPEND_LOGS = {"metrics.jsonl", "evals.jsonl"}  # appended line by line, not written atomically
_STEP_DIR = re.compile(r"(?:^|/)checkpoints/step-(\d+)$")


# -- inputs --------------------------------------------------------------------------------------------------

def _write_inputs(folder: Path) -> None:
    """Seeded corpora: lines of words (with HTML, URLs and numbers for clean, duplicates for dedup) and a
    labelled sentence/label TSV (curate balances it, augment and finetune read it)."""
    rng = random.Random(0)
    words = "the cat sat on a mat and then it ran to see the dog who was not there".split()
    noisy = [*words, "<b>bold</b>", "https://x.org", "555-1234", "caf\u00e9"]
    lines = []
    for _ in range(2000):
        line = " ".join(rng.choice(noisy) for _ in range(rng.randint(6, 24)))
        lines += [line] * (2 if rng.random() < 0.1 else 1)
    (folder / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "tiny.txt").write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)))
    cues = {"pos": "good great fun superb lovely".split(), "neg": "bad dull awful boring poor".split()}
    rows = []
    for i in range(1200):
        label = "pos" if i % 3 else "neg"  # 2:1, so that balancing has work to do
        sentence = [rng.choice(words) for _ in range(4)]
        sentence.insert(rng.randrange(5), rng.choice(cues[label]))
        rows.append(f"{' '.join(sentence)} {i}\t{label}\n")
    (folder / "labelled.tsv").write_text("sentence\tlabel\n" + "".join(rows))
    (folder / "small.tsv").write_text("sentence\tlabel\n" + "".join(rows[:96]))


TINY_LM = ["data.path=tiny.txt", "data.prepared_dir=prepared", "tokenizer.kind=char", "model.n_layer=2",
           "model.n_head=2", "model.n_embd=32", "model.block_size=32", "train.micro_batch_size=8",
           "train.log_interval=2", "train.tensorboard=false", "schedule.warmup_steps=2", "train.num_threads=1",
           "train.eval_max_windows=4", "train.report=false"]


def _has_checkpoint(run: Path) -> bool:
    return any(re.fullmatch(r"step-\d+", p.name) for p in (run / "checkpoints").glob("step-*"))


@dataclass
class Verb:
    inputs: list[str]  # files of the inputs folder the verb reads, copied into its folder
    command: list[str]
    rerun: Callable[[Path], list[str]] = lambda work: []  # the command after a kill; [] = the same again
    needs_backbone: bool = False  # finetune: the train verb's uninterrupted run is its backbone (../train-ref/run)


def _resume_or_restart(verb: str, args: list[str]) -> Callable[[Path], list[str]]:
    """`VERB --resume run` where a checkpoint was written; before the first one there is nothing to resume, and
    the run starts again with --overwrite."""
    def command(work: Path) -> list[str]:
        if _has_checkpoint(work / "run"):
            return [verb, "--resume", "run", "--no-progress"]
        return [verb, *args, "--run-dir", "run", "--overwrite", "--no-progress"]
    return command


TRAIN = [*TINY_LM, "train.max_steps=40", "train.eval_interval=4", "sample.num_samples=1", "sample.max_new_tokens=16"]
FINETUNE = ["finetune.backbone=../train-ref/run", "finetune.train_path=small.tsv", "finetune.val_path=small.tsv",
            "finetune.text_column=sentence", "finetune.epochs=4", "finetune.batch_size=16", "finetune.max_length=32",
            "finetune.pooling=last", "finetune.head_dropout=0", "finetune.keep_last=1", "optimizer.lr=3e-3",
            "schedule.name=constant", "schedule.warmup_steps=0", "train.num_threads=1", "train.tensorboard=false",
            "train.log_interval=1", "train.report=false"]
BAKEOFF = ["bakeoff", *TINY_LM, "train.eval_interval=4", "sample.num_samples=0", "--models", "lstm",
           "--budget", "3ktok", "--out", "bo"]

VERBS = {
    "prepare": Verb(["lines.txt"], ["prepare", "data.path=lines.txt", "data.prepared_dir=prepared",
                                    "data.txt_documents=line", "data.shard_tokens=40000", "tokenizer.kind=bpe",
                                    "tokenizer.vocab_size=300", "--no-progress"]),
    "clean": Verb(["lines.txt"], ["clean", "lines.txt", "out/clean.jsonl", "data.txt_documents=line", "numbers=zero",
                                  "--steps", "html,mask,numbers,unicode,whitespace", "--workers", "1",
                                  "--no-progress"]),
    "curate": Verb(["labelled.tsv"], ["curate", "labelled.tsv", "out/cur.jsonl", "data.field=sentence",
                                      "quality=null", "label_field=label", "balance=up", "val_fraction=0.1",
                                      "test_fraction=0.1", "--clean", "lm", "--workers", "1", "--no-progress"]),
    "augment": Verb(["labelled.tsv"], ["augment", "labelled.tsv", "out/aug.jsonl", "data.field=sentence",
                                       "--method", "noise", "--copies", "2", "--fraction", "0.5", "--seed", "3",
                                       "--val-fraction", "0.2", "--no-progress"]),
    "train": Verb(["tiny.txt"], ["train", *TRAIN, "--run-dir", "run", "--no-progress"],
                  _resume_or_restart("train", TRAIN)),
    "finetune": Verb(["small.tsv"], ["finetune", *FINETUNE, "--run-dir", "run", "--no-progress"],
                     _resume_or_restart("finetune", FINETUNE), needs_backbone=True),
    # one family, recurrent (its checkpoints carry the hidden state); --resume keeps its row if it finished
    "bakeoff": Verb(["tiny.txt"], [*BAKEOFF, "--no-progress"], lambda work: [*BAKEOFF, "--resume", "--no-progress"]),
}


# -- artefacts: what a run leaves, with what differs between two identical runs taken out ---------------------

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safetensors(data: bytes) -> dict:
    """Each tensor's dtype, shape and a hash of its bytes (the header's order and padding aside)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    header.pop("__metadata__", None)
    return {name: (t["dtype"], t["shape"], _sha(body[t["data_offsets"][0]:t["data_offsets"][1]]))
            for name, t in sorted(header.items())}


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _bakeoff_rows(doc: dict) -> dict:
    """bakeoff.json / bakeoff_row.json: a row's curve is (wall time, validation loss): keep the losses."""
    for row in doc.get("models", [doc.get("row")]):
        if row and "curve" in row:
            row["curve"] = [loss for _, loss in row["curve"]]
    return _untimed(doc)


def _jsonl(text: str) -> tuple[list, bool]:
    """The records of a log and whether its last line is cut short (a kill in the middle of a write)."""
    records, partial = [], False
    for line in text.splitlines(keepends=True):
        try:
            records.append(_untimed(json.loads(line)))
        except ValueError:
            partial = True
    return records, partial


def canonical(rel: str, data: bytes):
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(".safetensors"):
        return _safetensors(data)
    if name in APPEND_LOGS:
        return _jsonl(data.decode("utf-8"))
    if name in ("state.json", "meta.json") or name.endswith(".report.json"):
        return _untimed(json.loads(data))
    if name in ("bakeoff.json", "bakeoff_row.json"):
        return _bakeoff_rows(json.loads(data))
    if name.endswith(".report.md"):  # its "Partition 0 of 1, 1 worker(s), 0.2 s: ... docs/s" line is a timing
        return [line for line in data.decode().splitlines() if not line.startswith("Partition ")]
    if name == "bakeoff.md":  # its columns tokens/s, peak MiB and wall s
        rows = [line.split("|") for line in data.decode().splitlines()]
        return [[c for i, c in enumerate(row) if len(row) != 11 or i not in (4, 5, 9)] for row in rows]
    if name.endswith(".png"):  # its curves are drawn against wall time: whole, not equal
        return ("png", data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82"))
    if name.endswith(".html"):
        return ("html", data.rstrip().endswith(b"</html>"))
    return _sha(data)  # everything else, token shards (.bin) and optimizer state included, byte for byte


def _is_lock(name: str) -> bool:
    return name == ".lock" or (name.startswith(".") and name.endswith(".lock"))


@dataclass
class Snapshot:
    files: dict[str, object] = field(default_factory=dict)  # final names -> canonical content
    leftovers: list[str] = field(default_factory=list)  # hidden scratch entries (locks aside)


def snapshot(work: Path, inputs: list[str]) -> Snapshot:
    snap = Snapshot()
    for root, dirs, files in os.walk(work):
        here = Path(root).relative_to(work)
        for name in sorted(dirs):
            if name.startswith("."):
                snap.leftovers.append((here / name).as_posix())
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            rel = (here / name).as_posix()
            if _is_lock(name) or (here == Path(".") and name in inputs):
                continue
            if name.startswith("."):
                snap.leftovers.append(rel)
                continue
            snap.files[rel] = canonical(rel, (Path(root) / name).read_bytes())
    return snap


def differences(got: dict, want: dict) -> list[str]:
    out = [f"missing {k}" for k in sorted(set(want) - set(got))]
    out += [f"unexpected {k}" for k in sorted(set(got) - set(want))]
    out += [f"differs {k}" for k in sorted(set(got) & set(want)) if got[k] != want[k]]
    return out


def _dir_files(files: dict, folder: str) -> set[str]:
    return {k[len(folder) + 1:] for k in files if k.startswith(folder + "/")}


def check_after_kill(snap: Snapshot, ref: Snapshot) -> list[str]:
    """What a kill may leave under final names: whole files, complete checkpoints, log prefixes."""
    problems = []
    ckpt_dirs = {k.rsplit("/", 1)[0] for k in [*snap.files, *ref.files] if _STEP_DIR.search(k.rsplit("/", 1)[0])}
    for folder in sorted(ckpt_dirs):
        got = _dir_files(snap.files, folder)
        if not got:
            continue
        run = folder.rsplit("/checkpoints/", 1)[0]
        shapes = [_dir_files(ref.files, d) for d in ckpt_dirs if d.startswith(run + "/") and _dir_files(ref.files, d)]
        if got not in shapes:
            problems.append(f"{folder}: incomplete checkpoint ({sorted(got)})")
        state = snap.files.get(f"{folder}/state.json")
        if isinstance(state, dict) and state.get("step") != int(_STEP_DIR.search(folder).group(1)):
            problems.append(f"{folder}: state.json is of step {state.get('step')}")
    prepared = [k for k in ref.files if k.startswith("prepared/")]
    if any(k.startswith("prepared/") for k in snap.files) and \
            _dir_files(snap.files, "prepared") != _dir_files(ref.files, "prepared"):
        problems.append(f"prepared/: incomplete ({sorted(_dir_files(snap.files, 'prepared'))} of {len(prepared)})")
    for rel, value in snap.files.items():
        if rel.rsplit("/", 1)[-1] in APPEND_LOGS:
            if rel in ref.files and value[0] != ref.files[rel][0][:len(value[0])]:
                problems.append(f"{rel}: not a prefix of the uninterrupted run's records")
        elif rel in ref.files:
            if value != ref.files[rel]:
                problems.append(f"{rel}: differs from the uninterrupted run's (half written?)")
        elif not _STEP_DIR.search(rel.rsplit("/", 1)[0]):  # a checkpoint pruned later is fine, if complete
            problems.append(f"{rel}: not among the uninterrupted run's outputs")
    return problems


# -- processes -----------------------------------------------------------------------------------------------

def _env() -> dict:
    # LMFORGE_CACHE_DIR comes from tests/conftest.py; one thread each: two cores are shared by everything
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _start(args: list[str], work: Path) -> subprocess.Popen:
    # a session of its own: its process group is the verb and every process it started
    return subprocess.Popen([sys.executable, "-m", "lmforge", *args], cwd=work, env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def survivors(pgid: int) -> list[str]:
    """Live processes of a process group."""
    return [f"{pid} {name}" for pid, _, group, name in live_processes() if group == pgid]


FINISHED = re.compile(r"error: train\.max_steps=\d+: \S+ is already at step \d+; give a larger train\.max_steps "
                      r"to train on")


def _finish(proc: subprocess.Popen, what: str, finished_ok: bool = False) -> None:
    """Wait for the run; it must succeed. With `finished_ok`, `train --resume` may also refuse, in its one line,
    a run that had finished (the comparison of artefacts that follows says whether it really had)."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{what}: still running after {TIMEOUT_S} s")
    if finished_ok and proc.returncode == 2 and FINISHED.fullmatch(err.strip()):
        return
    assert proc.returncode == 0, f"{what}: exit status {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"


def _prepare_folder(root: Path, verb: Verb, name: str) -> Path:
    work = root / name
    work.mkdir()
    for f in verb.inputs:
        shutil.copy(root / "inputs" / f, work / f)
    return work


@dataclass
class Reference:
    snap: Snapshot
    first_write_s: float  # when the uninterrupted run first changed its folder
    last_write_s: float  # and when it last did (after that it only exits)


def _state(work: Path) -> list:
    """Every entry under `work` with its size and mtime: a change means the run wrote something."""
    out = []
    for root, dirs, files in os.walk(work):
        for name in [*dirs, *files]:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:  # removed meanwhile
                continue
            out.append((root, name, st.st_size, st.st_mtime_ns))
    return sorted(out)


@pytest.fixture(scope="module")
def kill_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    (root / "inputs").mkdir()
    _write_inputs(root / "inputs")
    return root


@pytest.fixture(scope="module")
def reference(kill_root):
    """`reference(verb)`: the verb's uninterrupted run (once per module), with its timing."""
    done: dict[str, Reference] = {}

    def get(name: str) -> Reference:
        if name in done:
            return done[name]
        verb = VERBS[name]
        if verb.needs_backbone:
            get("train")
        work = _prepare_folder(kill_root, verb, f"{name}-ref")
        state = _state(work)
        start = time.perf_counter()
        proc = _start(verb.command, work)
        first = last = None
        while proc.poll() is None:
            now = _state(work)
            if now != state:
                state, last = now, time.perf_counter() - start
                first = last if first is None else first
            time.sleep(0.005)
        _finish(proc, f"uninterrupted {name}")
        assert first is not None, f"uninterrupted {name} wrote nothing"
        ref = Reference(snapshot(work, verb.inputs), first, last)
        assert not ref.snap.leftovers, f"uninterrupted {name} left {ref.snap.leftovers}"
        assert ref.snap.files, f"uninterrupted {name} wrote nothing"
        done[name] = ref
        return ref
    return get


def _cases():
    for seeds, marks in ((DEFAULT_SEEDS, ()), (SLOW_SEEDS, (pytest.mark.slow,))):
        for seed in seeds:
            for name in VERBS:
                yield pytest.param(name, seed, marks=marks, id=f"{name}-{seed}")


@pytest.mark.parametrize("name, seed", list(_cases()))
def test_a_killed_verb_reruns_to_the_uninterrupted_result(name, seed, kill_root, reference, record_property):
    verb = VERBS[name]
    ref = reference(name)
    work = _prepare_folder(kill_root, verb, f"{name}-{seed}")
    delay = random.Random(f"{name}-{seed}").uniform(ref.first_write_s, ref.last_write_s)

    start = time.perf_counter()
    proc = _start(verb.command, work)
    while proc.poll() is None and time.perf_counter() - start < delay:
        time.sleep(0.002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    landed = proc.returncode == -signal.SIGKILL  # else it had finished (a kill drawn near the end)
    assert landed or proc.returncode == 0, f"{name} failed before the kill: {proc.returncode}\n{err[-4000:]}"
    deadline = time.monotonic() + 0.3
    while survivors(proc.pid) and time.monotonic() < deadline:  # a child may take a moment to notice
        time.sleep(0.02)
    left_running = survivors(proc.pid)
    if left_running:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left_running, f"killing {name} left its processes running: {left_running}"

    killed = snapshot(work, verb.inputs)
    problems = check_after_kill(killed, ref.snap)
    assert not problems, f"after a kill at {delay:.2f} s: {problems}"

    rerun = verb.rerun(work) or verb.command
    _finish(_start(rerun, work), f"{' '.join(rerun[:3])} after a kill at {delay:.2f} s", finished_ok=True)
    final = snapshot(work, verb.inputs)
    record_property("kill", json.dumps({"verb": name, "seed": seed, "delay_s": round(delay, 3),
                                        "window_s": [round(ref.first_write_s, 3), round(ref.last_write_s, 3)],
                                        "landed": landed, "left_under_final_names": len(killed.files),
                                        "scratch_after_kill": len(killed.leftovers),
                                        "rerun": "resume" if "--resume" in rerun else
                                        "restart" if "--overwrite" in rerun else "same"}))
    assert not final.leftovers, f"scratch left after the rerun: {final.leftovers}"
    diff = differences(final.files, ref.snap.files)
    assert not diff, f"after a kill at {delay:.2f} s and `{' '.join(rerun[:3])}`: {diff}"
