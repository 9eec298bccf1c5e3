import hashlib
import importlib
import json
import random
import re

import pytest

from lmforge.config import CleanConfig, CurateConfig, DataConfig, QualityConfig
from lmforge.text.curate import Analyser, Curator, identify_language
from lmforge.text.dedup import DupIndex, band_layout
from lmforge.text.pipeline import clean, curate
from lmforge.text.quality import first_failure
from lmforge.text.records import Doc
from lmforge.text.report import Tally

STOP = ["the", "of", "and", "to", "with", "that", "have", "be", "a", "in"]


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "ge", "hu", "bri", "sto", "fen"]
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))) for _ in range(size)})


def document(rng: random.Random, vocab: list[str], n_words: int = 200) -> str:
    """Sentences of made-up words and English stop words: passes every quality filter, unique n-grams."""
    words = [rng.choice(STOP) if rng.random() < 0.25 else rng.choice(vocab) for _ in range(n_words)]
    sentences, i = [], 0
    while i < len(words):
        n = rng.randint(8, 14)
        sentences.append(" ".join(words[i:i + n]).capitalize() + ".")
        i += n
    return "\n".join(" ".join(sentences[j:j + 3]) for j in range(0, len(sentences), 3))


def near_copy(rng: random.Random, text: str, vocab: list[str]) -> str:
    words = text.split(" ")
    words[rng.randrange(len(words))] = rng.choice(vocab)
    return " ".join(words)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """60 distinct documents, then exact copies (case and spacing changed) and near copies of 20 of them."""
    rng = random.Random(0)
    vocab = vocabulary(rng)
    distinct = [document(rng, vocab) for _ in range(60)]
    exact = [distinct[i].upper().replace(" ", "  ") for i in range(0, 20, 2)]
    near = [near_copy(rng, distinct[i], vocab) for i in range(1, 20, 2)]
    rows = [{"text": t, "id": i} for i, t in enumerate(distinct)] + [{"text": t, "id": 100 + i} for i, t in
                                                                     enumerate(exact + near)]
    rng.shuffle(rows[60:])
    path = write_jsonl(tmp_path_factory.mktemp("planted") / "docs.jsonl", rows)
    return path, distinct


# ---- quality ----

def test_quality_filters_name_what_fails():
    rng = random.Random(1)
    good = document(rng, vocabulary(rng))
    q = QualityConfig()
    assert first_failure(good, q) is None
    assert first_failure("Too short to keep.", q) == "too_few_words"
    assert first_failure(" ".join(["a"] * 60) + ".", q) == "short_words"
    assert first_failure(" ".join(["#tag the of"] * 30) + ".", q) == "symbols"
    assert first_failure("\n".join(f"- item the {w} of list." for w in good.split()[:60]), q) == "bullet_lines"
    assert first_failure(" ".join(w.strip(".") for w in good.split() if w.lower().strip(".") not in STOP) + ".", q) == "no_stop_words"
    assert first_failure(" ".join(f"{n} 5678 9012 the of" for n in range(1000, 1020)) + ".", q) == "non_alpha_words"
    assert first_failure(good.replace(".", ""), q) == "no_terminal_punctuation"
    lines = good.split("\n")
    assert first_failure("\n".join(lines + lines[:2] * 3), q) == "duplicate_lines"
    words = good.split()
    assert first_failure(" ".join(words[:100] + words[20:60]) + ".", q) == "duplicate_5grams"
    assert first_failure(" ".join(words[:60] + ["the cat sat"] * 25) + ".", q) == "top_2gram"
    assert first_failure(good, QualityConfig(min_words=1000)) == "too_few_words"
    off = QualityConfig(**{name: None for name in QualityConfig.model_fields})
    assert first_failure("x", off) is None


# ---- dedup ----

def test_planted_exact_and_near_duplicates_are_found_and_distinct_documents_kept(planted, tmp_path):
    path, distinct = planted
    out = tmp_path / "curated.jsonl"
    report = curate(path, out, CurateConfig(), workers=1, progress=False)
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == list(range(60))
    assert [r["text"] for r in rows] == distinct
    assert report.steps["exact_duplicate"].removed == 10
    assert report.steps["near_duplicate"].removed == 10
    saved = json.loads((tmp_path / "curated.report.json").read_text())
    assert saved["extra"]["splits"] == {"all": 60} and saved["documents_out"] == 60


def test_dedup_can_be_turned_off(planted, tmp_path):
    path, _ = planted
    report = curate(path, tmp_path / "all.jsonl", CurateConfig(exact_dedup=False, near_dedup=False), workers=1,
                    progress=False)
    assert report.documents_out == 80


def edited(rng: random.Random, text: str, vocab: list[str], edits: int) -> str:
    """`text` with `edits` words replaced, 10 words apart: each replacement changes 5 of the 5-word shingles."""
    words = text.split()
    for i in range(edits):
        words[10 * i + 7] = rng.choice(vocab)
    return " ".join(words)


def shingle_jaccard(a: str, b: str, k: int = 5) -> float:
    grams = [{tuple(w[i:i + k]) for i in range(len(w) - k + 1)} for w in
             (re.findall(r"\w+", t.lower()) for t in (a, b))]
    return len(grams[0] & grams[1]) / len(grams[0] | grams[1])


def test_near_duplicates_are_those_at_or_above_the_threshold_in_exact_jaccard(tmp_path):
    """Pairs at Jaccard 0.90 and 0.815 (just above the default 0.8) are all caught, pairs at 0.774 (just below)
    and 0.42 all kept: LSH makes them candidates nearly always, the verification on shingle sets decides."""
    rng = random.Random(11)
    vocab = vocabulary(rng)
    originals = [document(rng, vocab) for _ in range(40)]
    levels = {2: 0.903, 4: 0.815, 5: 0.774, 16: 0.420}  # edits -> Jaccard of the pair's 5-word shingles
    copies = [(edits, i, edited(rng, originals[i], vocab, edits)) for i in range(40) for edits in [list(levels)[i % 4]]]
    for edits, i, copy in copies:
        assert shingle_jaccard(originals[i], copy) == pytest.approx(levels[edits], abs=0.001)
    rows = [{"text": t, "id": f"o{i}"} for i, t in enumerate(originals)]
    rows += [{"text": copy, "id": f"c{i}", "edits": edits} for edits, i, copy in copies]
    out = tmp_path / "c.jsonl"
    report = curate(write_jsonl(tmp_path / "pairs.jsonl", rows), out, CurateConfig(), workers=1, progress=False)
    kept = {r["id"]: r for r in read_jsonl(out)}
    assert all(f"o{i}" in kept for i in range(40))
    assert sorted(r["edits"] for r in kept.values() if "edits" in r) == [5] * 10 + [16] * 10
    assert report.steps["near_duplicate"].removed == 20
    # the pairs below the threshold shared bands and were turned down on their shingle sets
    assert report.extra["near_candidates_verified"] >= 20 + 10


def reference_curation(rows, cfg):
    """(id, split) of each kept document as curation did it with its index in Python sets and dicts: a near
    duplicate is the first document, in band order, sharing a band and a Jaccard similarity >= near_threshold."""
    analyser = Analyser(cfg)
    exact_seen, tables, docs = set(), [{} for _ in range(band_layout(cfg.near_threshold, cfg.num_perm)[0])], []
    kept = []
    for row in rows:
        signals = analyser(row["text"])
        if signals.rejected is not None:
            continue
        if cfg.exact_dedup:
            if signals.exact in exact_seen:
                continue
            exact_seen.add(signals.exact)
        cluster = signals.exact
        if signals.bands:
            mine = set(signals.shingles.tolist())
            candidates = dict.fromkeys(t[k] for t, k in zip(tables, signals.bands) if k in t)
            match = next((docs[d][0] for d in candidates
                          if len(mine & docs[d][1]) / len(mine | docs[d][1]) >= cfg.near_threshold), None)
            if match is not None:
                if cfg.near_dedup:
                    continue
                cluster = match
            for table, key in zip(tables, signals.bands):
                table.setdefault(key, len(docs))
            docs.append((cluster, mine))
        split = "all"
        if cfg.val_fraction or cfg.test_fraction:
            digest = hashlib.blake2b(f"{cfg.seed}:{cluster}".encode(), digest_size=8).digest()
            u = int.from_bytes(digest, "little") / 2**64
            split = "test" if u < cfg.test_fraction else "val" if u < cfg.test_fraction + cfg.val_fraction else "train"
        kept.append((row["id"], split))
    return kept


def read_splits(out, cfg):
    """(id, split) of the written documents: in output order without splits, by id with them."""
    if not (cfg.val_fraction or cfg.test_fraction):
        return [(r["id"], "all") for r in read_jsonl(out)]
    return sorted((r["id"], split) for split in ("train", "val", "test")
                  for r in read_jsonl(out.with_name(f"{out.stem}.{split}.jsonl")))


SPLITS = dict(val_fraction=0.25, test_fraction=0.25, seed=3)


@pytest.mark.parametrize("flush", [11, 10**6], ids=["write-within-chunks", "keys-wait-in-memory"])
@pytest.mark.parametrize("cfg", [CurateConfig(), CurateConfig(near_dedup=False, **SPLITS),
                                 CurateConfig(exact_dedup=False, near_dedup=False, **SPLITS),
                                 CurateConfig(exact_dedup=False, **SPLITS)], ids=["dedup", "exact", "none", "near"])
def test_the_on_disk_index_keeps_and_splits_as_an_in_memory_one(planted, tmp_path, monkeypatch, cfg, flush):
    """The planted corpus, then documents each followed by a copy, so that copies also meet within a chunk.
    Chunks of 7 documents (18 keys each), lookups of 3 keys, and writes to the database either between a
    document and its copy or never, new keys answering from memory."""
    monkeypatch.setattr("lmforge.text.parallel.CHUNK_DOCS", 7)
    monkeypatch.setattr("lmforge.text.dedup._LOOKUP", 3)
    monkeypatch.setattr("lmforge.text.dedup._FLUSH", flush)
    rng = random.Random(7)
    vocab = vocabulary(rng)
    rows = read_jsonl(planted[0])
    for i in range(20):
        text = document(rng, vocab)
        rows += [{"text": text, "id": 200 + 2 * i},
                 {"text": near_copy(rng, text, vocab) if i % 2 else text.lower(), "id": 201 + 2 * i}]
    expected = reference_curation(rows, cfg)
    assert len({split for _, split in expected}) == (3 if cfg.val_fraction else 1)
    out = tmp_path / "c.jsonl"
    curate(write_jsonl(tmp_path / "docs.jsonl", rows), out, cfg, workers=2, progress=False)
    assert read_splits(out, cfg) == (sorted(expected) if cfg.val_fraction else expected)
    assert not list(tmp_path.glob(".lmforge-curate-*"))


def test_documents_admitted_without_a_prefetch_are_looked_up_one_by_one(planted, tmp_path, monkeypatch):
    monkeypatch.setattr("lmforge.text.dedup._FLUSH", 5)
    path, _ = planted
    rows = read_jsonl(path)
    cfg = CurateConfig(near_dedup=False, **SPLITS)
    analyser, curator, tally = Analyser(cfg), Curator(cfg, tmp_path), Tally()
    try:
        kept = [(row["id"], split) for row in rows
                for _, split in curator.admit(Doc(row["text"], {}), analyser(row["text"]), tally)]
        assert len(list(tmp_path.glob(".lmforge-curate-*/scratch.sqlite"))) == 1
    finally:
        curator.close()
    assert kept == reference_curation(rows, cfg)
    assert not list(tmp_path.glob(".lmforge-curate-*"))


def test_the_scratch_folder_is_removed_when_curation_fails(planted, tmp_path, monkeypatch):
    path, _ = planted
    seen = []

    def fail(index, *args):
        seen.extend(tmp_path.glob(".lmforge-curate-*/scratch.sqlite"))
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(DupIndex, "insert", fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        curate(path, tmp_path / "c.jsonl", CurateConfig(), workers=1, progress=False)
    assert seen and not list(tmp_path.glob(".lmforge-curate-*"))


# ---- language ----

SENTENCES = {
    "en": "The committee published its annual report on Tuesday, and most of the members agreed with the findings about the budget.",
    "de": "Der Ausschuss hat am Dienstag seinen Jahresbericht veröffentlicht, und die meisten Mitglieder stimmten den Ergebnissen zu.",
    "fr": "Le comité a publié son rapport annuel mardi, et la plupart des membres étaient d'accord avec les conclusions sur le budget.",
}


def test_language_filter_keeps_the_languages_asked_and_counts_unknown(tmp_path):
    rows = [{"text": t, "lang": k} for k, t in SENTENCES.items()] + [{"text": "12345 678 !!! ???", "lang": "?"},
                                                                    {"text": "😀😀 👍", "lang": "?"}]
    out = tmp_path / "en.jsonl"
    report = curate(write_jsonl(tmp_path / "in.jsonl", rows), out,
                    CurateConfig(languages=["en"], quality=None), workers=1, progress=False)
    assert [r["lang"] for r in read_jsonl(out)] == ["en"]
    assert report.steps["language"].removed == 2 and report.steps["language"].counts == {"de": 1, "fr": 1}
    assert report.steps["unknown_language"].removed == 2
    assert identify_language(SENTENCES["de"], 0.5)[0] == "de"


# ---- splits and balance ----

def test_splits_are_deterministic_and_near_duplicates_never_straddle(planted, tmp_path):
    path, _ = planted
    cfg = CurateConfig(exact_dedup=False, near_dedup=False, val_fraction=0.25, test_fraction=0.25, seed=3)
    outputs = {}
    for run in ("a", "b"):
        curate(path, tmp_path / run / "c.jsonl", cfg, workers=1, progress=False)
        outputs[run] = {s: (tmp_path / run / f"c.{s}.jsonl").read_text() for s in ("train", "val", "test")}
    assert outputs["a"] == outputs["b"]
    split_of = {}
    for split, text in outputs["a"].items():
        for row in map(json.loads, text.splitlines()):
            split_of.setdefault(row["id"], set()).add(split)
    assert len(split_of) == 80 and all(len(s) == 1 for s in split_of.values())
    sizes = {s: len(t.splitlines()) for s, t in outputs["a"].items()}
    assert all(sizes[s] >= 10 for s in sizes), sizes
    # each copy (ids 100+, shuffled) sits in the split of its original: the document it shares most words with
    rows = [(row, split) for split, text in outputs["a"].items() for row in map(json.loads, text.splitlines())]
    words = {row["id"]: set(row["text"].lower().split()) for row, _ in rows}
    split_of = {row["id"]: split for row, split in rows}
    for copy in (i for i in words if i >= 100):
        original = max(range(60), key=lambda i: len(words[i] & words[copy]))
        assert split_of[original] == split_of[copy]


def test_augmented_copies_join_their_originals_split(tmp_path, monkeypatch):
    """Copies whose text shares nothing with their original (as a back-translation may) still go to its split,
    also when the original has gone from memory to the scratch database, or was dropped as a duplicate."""
    monkeypatch.setattr(importlib.import_module("lmforge.text.curate").OriginSplits, "BATCH", 7)
    rng = random.Random(1)
    vocab = vocabulary(rng)
    rows = []
    for i in range(60):
        rows.append({"text": document(rng, vocab, 40), "id": f"d{i}"})
        rows += [{"text": document(rng, vocab, 40), "id": f"d{i}-eda-{k}", "augmented_from": f"d{i}"} for k in range(2)]
    rows.append({"text": rows[0]["text"], "id": "again"})  # an exact duplicate of d0, dropped...
    rows.append({"text": document(rng, vocab, 40), "id": "again-eda-0", "augmented_from": "again"})  # ...its copy
    rows.append({"text": document(rng, vocab, 40), "id": "orphan-eda-0", "augmented_from": "never-seen"})
    path = write_jsonl(tmp_path / "aug.jsonl", rows)
    cfg = CurateConfig(val_fraction=0.3, test_fraction=0.3, seed=2, quality=None)
    curate(path, tmp_path / "c.jsonl", cfg, workers=1, progress=False)
    split_of = {row["id"]: split for split in ("train", "val", "test")
                for row in read_jsonl(tmp_path / f"c.{split}.jsonl")}
    assert len(split_of) == 60 * 3 + 2 and "again" not in split_of  # the orphan goes by its own hash
    assert {split_of[f"d{i}"] for i in range(60)} == {"train", "val", "test"}
    for i in range(60):
        assert split_of[f"d{i}-eda-0"] == split_of[f"d{i}-eda-1"] == split_of[f"d{i}"]
    assert split_of["again-eda-0"] == split_of["d0"]
    # without the link, the copies would scatter: their own hashes put most in another split than the original
    plain = write_jsonl(tmp_path / "plain.jsonl", [{k: v for k, v in r.items() if k != "augmented_from"} for r in rows])
    curate(plain, tmp_path / "p.jsonl", cfg, workers=1, progress=False)
    split_of = {row["id"]: split for split in ("train", "val", "test")
                for row in read_jsonl(tmp_path / f"p.{split}.jsonl")}
    assert sum(split_of[f"d{i}-eda-0"] != split_of[f"d{i}"] for i in range(60)) > 20


@pytest.fixture
def labelled(tmp_path):
    rng = random.Random(5)
    vocab = vocabulary(rng)
    rows = [{"text": document(rng, vocab, 60), "label": "pos" if i % 4 else "neg", "id": i} for i in range(120)]
    return write_jsonl(tmp_path / "labelled.jsonl", rows)


@pytest.mark.parametrize("mode,per_label", [("down", 30), ("up", 90)])
def test_balance_resamples_labels_and_carries_fields(labelled, tmp_path, mode, per_label):
    out = tmp_path / f"{mode}.jsonl"
    report = curate(labelled, out, CurateConfig(label_field="label", balance=mode, seed=1), workers=1, progress=False)
    rows = read_jsonl(out)
    assert sorted(r["label"] for r in rows).count("neg") == per_label
    assert sorted(r["label"] for r in rows).count("pos") == per_label
    assert all(set(r) == {"text", "label", "id"} for r in rows)
    assert report.steps["balance"].counts["pos before"] == 90 and report.steps["balance"].counts["neg after"] == per_label
    assert not list(tmp_path.glob(".lmforge-curate-*"))  # the scratch folder is gone


@pytest.mark.parametrize("mode", ["down", "up"])
def test_balance_picks_the_draws_an_in_memory_sort_picks(labelled, tmp_path, monkeypatch, mode):
    """Weights that leave a remainder, so that some documents get one copy more (or fewer) than others."""
    monkeypatch.setattr(importlib.import_module("lmforge.text.curate"), "_FLUSH_DRAWS", 7)  # the package's
    # `curate` is the function, which hides the module from a dotted path
    out = tmp_path / f"{mode}.jsonl"
    cfg = CurateConfig(label_field="label", balance=mode, label_weights={"pos": 1, "neg": 0.8}, seed=4)
    report = curate(labelled, out, cfg, workers=1, progress=False)
    rows = read_jsonl(labelled)
    rng = random.Random(cfg.seed)
    draws = [rng.random() for _ in rows]
    copies, remainders = {}, []
    for label in ("pos", "neg"):
        mine = [(d, r["id"]) for d, r in zip(draws, rows) if r["label"] == label]
        target = report.steps["balance"].counts[f"{label} after"]
        extra = target % len(mine)
        below = sorted(d for d, _ in mine)[extra - 1] if extra else -1.0
        copies.update({i: target // len(mine) + (d <= below) for d, i in mine})
        remainders.append(extra)
    assert any(remainders)  # down: 37 of the 90 pos; up: 12 of the 30 neg get a third copy
    assert [r["id"] for r in read_jsonl(out)] == [i for r in rows for i in [r["id"]] * copies.get(r["id"], 0)]
    assert not list(tmp_path.glob(".lmforge-curate-*"))


def test_balance_to_weights_touches_train_only(labelled, tmp_path):
    cfg = CurateConfig(label_field="label", balance="down", label_weights={"pos": 2, "neg": 1}, val_fraction=0.3)
    curate(labelled, tmp_path / "w.jsonl", cfg, workers=1, progress=False)
    train = [r["label"] for r in read_jsonl(tmp_path / "w.train.jsonl")]
    val = [r["label"] for r in read_jsonl(tmp_path / "w.val.jsonl")]
    assert train.count("pos") == 2 * train.count("neg")
    assert len(val) + len(train) < 120 and val.count("pos") > 2 * val.count("neg")  # val keeps 3:1


def test_balance_needs_a_label_field():
    with pytest.raises(ValueError, match="balance needs label_field"):
        CurateConfig(balance="up")


# ---- scale: partitions, workers, long documents ----

def test_partitioned_runs_concatenate_to_the_whole_run(planted, tmp_path):
    """Exactly so for cleaning, and for curation's filters and splits; duplicates are found within a
    partition only, so the curated input here has none."""
    path, distinct = planted
    unique = write_jsonl(tmp_path / "unique.jsonl", [{"text": t, "n": len(t)} for t in distinct])
    cfg = CurateConfig(val_fraction=0.3)
    curate(unique, tmp_path / "whole.jsonl", cfg, workers=1, progress=False)
    clean(path, tmp_path / "whole.txt", CleanConfig(preset="lm"), workers=1, progress=False)
    for i in range(3):
        curate(unique, tmp_path / f"part{i}.jsonl", cfg, workers=1, partition=(i, 3), progress=False)
        clean(path, tmp_path / f"part{i}.txt", CleanConfig(preset="lm"), workers=1, partition=(i, 3), progress=False)
    for split in ("train", "val"):
        parts = "".join((tmp_path / f"part{i}.{split}.jsonl").read_text() for i in range(3))
        assert parts == (tmp_path / f"whole.{split}.jsonl").read_text()
    # txt documents are separated by a blank line, so concatenated parts meet without one
    whole = (tmp_path / "whole.txt").read_text().split("\n\n")
    parts = [d for i in range(3) for d in (tmp_path / f"part{i}.txt").read_text().split("\n\n")]
    assert [d.strip() for d in parts] == [d.strip() for d in whole] and len(whole) == 80


def test_output_does_not_depend_on_the_number_of_workers(planted, tmp_path, monkeypatch):
    monkeypatch.setattr("lmforge.text.parallel.CHUNK_DOCS", 7)  # many chunks, so two workers really share
    path, _ = planted
    reports = {}
    for workers in (1, 2):
        reports[workers] = curate(path, tmp_path / f"w{workers}.jsonl", CurateConfig(val_fraction=0.2),
                                  clean=CleanConfig(preset="lm"), workers=workers, progress=False)
    for split in ("train", "val", "test"):
        assert (tmp_path / f"w1.{split}.jsonl").read_text() == (tmp_path / f"w2.{split}.jsonl").read_text()
    one, two = (reports[w].as_dict() for w in (1, 2))
    for key in ("steps", "documents_in", "documents_out", "bytes_in", "bytes_out", "extra"):
        assert one[key] == two[key]


def test_documents_over_max_chars_are_dropped_and_counted(tmp_path):
    rng = random.Random(2)
    vocab = vocabulary(rng)
    src = tmp_path / "long.txt"
    src.write_text(document(rng, vocab, 2000) + "\n\n" + document(rng, vocab, 100) + "\n")
    report = curate(src, tmp_path / "o.jsonl", CurateConfig(max_chars=4096), DataConfig(txt_documents="blank_line"),
                    workers=1, progress=False)
    assert report.steps["too_long"].removed == 1 and report.documents_out == 1
