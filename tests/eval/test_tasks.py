"""Classification metrics, conlleval entity F1 and SQuAD EM/F1, held to the published numbers."""

import pytest
from shared_data import SHARED_DATA

from lmforge.data.taskfiles import read_squad, read_tagged_pair
from lmforge.errors import DataError
from lmforge.eval.tasks import (accuracy, classification_report, entity_f1, entity_spans, normalize_answer,
                                squad_f1, squad_scores)

WNUT = SHARED_DATA / "ner" / "wnut17"
SQUAD = SHARED_DATA / "squad"
needs_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not here")

# Derczynski et al. 2017, results table, "F1 (entity)" (ner/SOURCE.md)
WNUT17_ENTITY_F1 = {"uh_ritual": 41.86, "spinningbytes.txt": 40.78, "sjtu_adapt.txt": 40.42, "arcada": 39.98,
                    "flytxt": 38.35, "mic-cis.txt": 37.06, "drexel_cci": 26.30}


def test_classification_report_by_hand():
    gold = ["cat", "cat", "cat", "dog", "dog", "eel"]
    pred = ["cat", "cat", "dog", "dog", "eel", "eel"]
    r = classification_report(pred, gold)
    assert r["labels"] == ["cat", "dog", "eel"]
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]  # rows gold, columns predicted
    assert r["per_class"]["cat"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    assert r["per_class"]["dog"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert r["per_class"]["eel"]["f1"] == pytest.approx(2 / 3)
    assert r["accuracy"] == accuracy(pred, gold) == 4 / 6
    assert r["micro"] == pytest.approx({"precision": 4 / 6, "recall": 4 / 6, "f1": 4 / 6})
    assert r["macro"]["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_classes_never_predicted_or_never_true_score_zero_not_nan():
    r = classification_report(["a", "a"], ["a", "b"], labels=["a", "b", "c"])
    assert r["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    with pytest.raises(DataError, match="'x' is not one of the labels"):
        classification_report(["x"], ["a"], labels=["a"])
    with pytest.raises(DataError, match="2 predictions but 1 gold"):
        accuracy([1, 2], [1])


@pytest.mark.parametrize("tags,spans", [
    (["B-per", "I-per", "O", "B-loc"], {("per", 0, 2), ("loc", 3, 4)}),
    (["I-per", "I-per", "O"], {("per", 0, 2)}),               # IOB1: I after O starts an entity
    (["B-per", "B-per"], {("per", 0, 1), ("per", 1, 2)}),      # B always starts a new one
    (["B-per", "I-loc", "I-loc"], {("per", 0, 1), ("loc", 1, 3)}),  # a type change splits
    (["O", "I-creative-work"], {("creative-work", 1, 2)}),     # types may contain hyphens
    (["O", "O"], set()),
])
def test_entity_spans_follow_conlleval(tags, spans):
    assert entity_spans(tags) == spans


def test_entity_f1_needs_exact_span_and_type():
    gold = [["B-per", "I-per", "O", "B-loc"]]
    assert entity_f1([["B-per", "I-per", "O", "B-loc"]], gold)["f1"] == 1.0
    partial = entity_f1([["B-per", "O", "O", "B-org"]], gold)  # short span, wrong type: both wrong
    assert (partial["correct"], partial["predicted"], partial["gold"], partial["f1"]) == (0, 2, 2, 0.0)
    half = entity_f1([["B-per", "I-per", "O", "O"]], gold)
    assert (half["precision"], half["recall"]) == (1.0, 0.5)
    assert half["per_type"]["loc"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "predicted": 0, "gold": 1}
    with pytest.raises(ValueError, match="'X-per' is not O, B-TYPE or I-TYPE"):
        entity_spans(["X-per"])


@needs_data
@pytest.mark.parametrize("system", sorted(WNUT17_ENTITY_F1))
def test_wnut17_submissions_score_their_published_entity_f1(system):
    predicted, gold = read_tagged_pair(WNUT / "submissions" / system, WNUT / "emerging.test.annotated")
    assert round(100 * entity_f1(predicted, gold)["f1"], 2) == WNUT17_ENTITY_F1[system]


def test_squad_normalisation_and_f1():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("a cat, an apple and the end") == "cat apple and end"
    assert squad_f1("the big red dog", "red dog") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert squad_f1("", "red dog") == 0.0
    data = [{"paragraphs": [{"qas": [{"id": "q1", "answers": [{"text": "Paris"}, {"text": "the city of Paris"}]},
                                     {"id": "q2", "answers": [{"text": "1889"}]}]}]}]
    scores = squad_scores(data, {"q1": "city of paris"})  # q2 unanswered: scores 0
    assert scores == {"exact_match": 50.0, "f1": 50.0, "questions": 2, "unanswered": 1}


@needs_data
@pytest.mark.parametrize("predictions,em,f1", [("bert_ensemble_google_dev-v1.1.json", 86.21, 92.20),
                                               ("logistic_regression_baseline_stanford_dev-v1.1.json", 40.14, 50.98)])
def test_squad_dev_published_systems(predictions, em, f1):
    scores = squad_scores(*read_squad(SQUAD / "predictions" / predictions, SQUAD / "dev-v1.1.json"))
    assert (round(scores["exact_match"], 2), round(scores["f1"], 2), scores["questions"]) == (em, f1, 10570)
