"""Task data: NER word/subword alignment, QA long-context windows, label targets, a SQuAD answer off its context."""

import pytest
import torch
from ft_data import squad_data, write_conll, write_json

from lmforge.data.taskfiles import QAExample, Sentence, read_squad_examples, read_tagged
from lmforge.errors import DataError
from lmforge.finetune.backbones import load_backbone
from lmforge.finetune.data import IGNORE, best_answers, encode_qa, encode_words, label_targets, word_predictions


@pytest.fixture(scope="module")
def bert(tiny_bert):
    return load_backbone(tiny_bert, "tag")


def test_unseen_labels_are_counted_and_ignored():
    targets, unseen = label_targets([["pos"], ["neutral"], ["neg"], ["neutral"]], ["neg", "pos"], multi=False)
    assert targets == [1, IGNORE, 0, IGNORE]
    assert unseen == {"neutral": 2}
    rows, unseen = label_targets([["a", "z"]], ["a", "b"], multi=True)
    assert rows == [[1.0, 0.0]] and unseen == {"z": 1}


def test_ner_alignment_round_trips(bert, tmp_path):
    # "Superbly" and "Dalmatians" split into several WordPiece subwords; "!!" into two tokens
    sentence = [("Superbly", "O"), ("Dalmatians", "B-creative-work"), ("went", "I-creative-work"), ("!!", "O"),
                ("Alice", "B-person")]
    sentences = read_tagged(write_conll(tmp_path / "a.conll", [sentence]), labelled=True)
    tags = sorted({t for _, t in sentence})
    [feature], unseen = encode_words(bert, sentences, tags, max_length=64)
    assert not unseen
    assert len(feature.ids) > len(sentence) + 2  # some words did split
    labelled = [j for j, t in enumerate(feature.target) if t != IGNORE]
    assert len(labelled) == len(sentence)  # one label per word, on its first subword
    assert all(feature.word_ids[j] != feature.word_ids[j - 1] for j in labelled)
    token_tags = [tags[t] if t != IGNORE else "I-never" for t in feature.target]
    assert word_predictions(feature.word_ids, token_tags, len(sentence)) == [t for _, t in sentence]


def test_ner_truncated_words_map_back_as_o(bert):
    sentence = Sentence(["Alice"] * 10, ["B-person"] * 10)
    [feature], _ = encode_words(bert, [sentence], ["B-person"], max_length=6)  # [CLS] + 4 words + [SEP]
    predicted = word_predictions(feature.word_ids, ["B-person"] * len(feature.ids), 10)
    assert predicted == ["B-person"] * 4 + ["O"] * 6


def test_qa_windows_recover_answers_at_split_boundaries(bert):
    words = ("the film was very good and the story is red but the plot was quite dull so it is blue . " * 3).split()
    context = " ".join(words)
    examples = []
    for position in range(len(words)):  # an answer at every word, so some cross every window edge
        start = len(" ".join(words[:position])) + (1 if position else 0)
        answer = " ".join(words[position:position + 2])
        examples.append(QAExample(f"q{position}", "what colour ?", context, [(answer, start)]))
    features = encode_qa(bert, examples, max_length=24, doc_stride=8, max_query_length=8)
    per_example = {}
    for f in features:
        per_example.setdefault(f.example, []).append(f)
    for i, example in enumerate(examples):
        windows = per_example[i]
        assert len(windows) > 3  # the context really is split
        found = [f for f in windows if f.target != (0, 0)]
        assert found, f"answer {i} lies whole in no window"
        for f in found:  # every window that claims the answer gives back its exact characters
            s, e = f.target
            assert context[f.offsets[s][0]:f.offsets[e][1]] == example.answers[0][0]
        # the span search over all windows recovers it from logits that point at it
        starts = [torch.full((len(f.ids),), -5.0) for f in windows]
        ends = [torch.full((len(f.ids),), -5.0) for f in windows]
        s, e = found[-1].target
        starts[windows.index(found[-1])][s] = 5.0
        ends[windows.index(found[-1])][e] = 5.0
        assert best_answers([example], [*map(_renumber, windows)], starts, ends, 30) == {example.id: example.answers[0][0]}


def _renumber(feature):
    feature.example = 0
    return feature


def test_qa_answer_not_in_context(tmp_path):
    data = squad_data(2)
    data["data"][0]["paragraphs"][1]["qas"][0]["answers"][0]["answer_start"] = 0
    with pytest.raises(DataError, match=r"question q1: answer '\w+' is not in its context at answer_start 0"):
        read_squad_examples(write_json(tmp_path / "q.json", data), labelled=True)
