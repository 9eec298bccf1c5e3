"""Every `lmforge score` metric given a damaged hypothesis or reference file, generated per file layout: exit
status 2, one line naming the file, no traceback and no score printed."""

import json
import random
from typing import Callable

import pytest

from badtasks import conll
from cli_checks import assert_one_line_error, invoke
from finetune.ft_data import squad_data

SEGMENTS = [f"the cat sat on mat number {i} and looked at the dog" for i in range(6)]


def lines(segments=SEGMENTS) -> bytes:
    return "".join(s + "\n" for s in segments).encode()


def squad_predictions() -> dict:
    return {qa["id"]: qa["answers"][0]["text"] for p in squad_data(6)["data"][0]["paragraphs"] for qa in p["qas"]}


def squad_edit(edit: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    def content(good: bytes) -> bytes:
        data = squad_data(6)
        edit(data)
        return json.dumps(data).encode()
    return content


def conll_edit(edit: Callable[[list[str]], list[str]]) -> Callable[[], bytes]:
    return lambda: "\n".join(edit(conll().decode().split("\n"))).encode()


WHOLE_FILE = {  # damage -> (content, what the error says besides the file's name)
    "missing": (lambda good: None, "no such file"),
    "empty": (lambda good: b"", "empty"),
    "binary": (lambda good: random.Random(0).randbytes(1024), ("not UTF-8", "invalid JSON")),
    "utf-16": (lambda good: good.decode().encode("utf-16"), "not UTF-8"),
    "latin-1": (lambda good: good[:1] + "\u00e9".encode("latin-1") + good[1:], "not UTF-8"),
    "a-directory": (lambda good: "dir", "a directory"),
}

LAYOUTS = {  # file layout -> (good content, {damage: (content from the good one, needle)})
    "lines": (lines(), {
        "a-line-fewer": (lambda good: lines(SEGMENTS[:-1]), "has no counterpart in"),
        "a-line-more": (lambda good: lines([*SEGMENTS, "one more"]), "has no counterpart in"),
    }),
    "conll": (conll(), {
        "tag-missing@3": (lambda good: conll_edit(lambda ls: [*ls[:2], ls[2].split("\t")[0], *ls[3:]])(),
                          "line 3: expected a token and a tag"),
        "bad-tag@4": (lambda good: conll_edit(lambda ls: [*ls[:3], ls[3].split("\t")[0] + "\tperson", *ls[4:]])(),
                      "line 4: tag 'person'"),
        "a-token-fewer@2": (lambda good: conll_edit(lambda ls: [ls[0], *ls[2:]])(), "sentence 1 has"),
        "a-sentence-fewer": (lambda good: conll_edit(lambda ls: ls[:ls.index("", 20)])(), "has no counterpart in"),
        "no-tokens": (lambda good: b"-DOCSTART- -X- O O\n\n", "no tagged tokens"),
    }),
    "squad-predictions": (json.dumps(squad_predictions()).encode(), {
        "cut": (lambda good: good[:len(good) // 2], "invalid JSON"),
        "a-list": (lambda good: b'["red"]', "not SQuAD predictions"),
        "a-number-answer": (lambda good: json.dumps({**squad_predictions(), "q1": 3}).encode(), "not SQuAD predictions"),
    }),
    "squad-dataset": (json.dumps(squad_data(6)).encode(), {
        "cut": (lambda good: good[:len(good) // 2], "invalid JSON"),
        "a-list": (lambda good: b"[]", "not a SQuAD dataset"),
        "paragraphs-missing": (squad_edit(lambda d: d["data"][0].pop("paragraphs")), "data[0]: expected"),
        "qas-missing": (squad_edit(lambda d: d["data"][0]["paragraphs"][1].pop("qas")), "paragraphs[1]: expected"),
        "answers-empty": (squad_edit(lambda d: d["data"][0]["paragraphs"][2]["qas"][0].update(answers=[])),
                          "paragraphs[2].qas[0]: expected"),
        "answer-a-number": (squad_edit(lambda d: d["data"][0]["paragraphs"][2]["qas"][0].update(answers=[{"text": 3}])),
                            "paragraphs[2].qas[0]: expected"),
        "id-missing": (squad_edit(lambda d: d["data"][0]["paragraphs"][3]["qas"][0].pop("id")),
                       "paragraphs[3].qas[0]: expected"),
    }),
}

METRICS = {  # score subcommand -> (hypothesis layout, reference layout)
    "bleu": ("lines", "lines"), "chrf": ("lines", "lines"), "meteor": ("lines", "lines"),
    "entity-f1": ("conll", "conll"), "squad": ("squad-predictions", "squad-dataset"),
}


def damages(layout: str) -> dict:
    good, own = LAYOUTS[layout]
    binary_needle = ("invalid JSON", "not UTF-8") if layout.startswith("squad") else "not UTF-8"
    whole = {k: (content, binary_needle if k == "binary" else needle) for k, (content, needle) in WHOLE_FILE.items()}
    return {**whole, **own}


CASES = [(metric, side, damage) for metric, layouts in METRICS.items() for side, layout in zip(("hyp", "ref"), layouts)
         for damage in damages(layout)]


@pytest.mark.parametrize("metric,side,damage", CASES, ids=[f"{m}:{s}/{d}" for m, s, d in CASES])
def test_a_bad_score_file_is_one_line(metric, side, damage, tmp_path):
    paths = {}
    for which, layout in zip(("hyp", "ref"), METRICS[metric]):
        path = paths[which] = tmp_path / f"{which}.{'json' if layout.startswith('squad') else 'txt'}"
        good = LAYOUTS[layout][0]
        if which != side:
            path.write_bytes(good)
            continue
        content, needle = damages(layout)[damage]
        data = content(good)
        if data == "dir":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
    code, out, err = invoke("score", metric, paths["hyp"], paths["ref"])
    assert_one_line_error(code, err, str(paths[side]))
    assert any(n in err for n in ((needle,) if isinstance(needle, str) else needle)), err
    assert out == ""
