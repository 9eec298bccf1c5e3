"""BLEU, chrF and METEOR held to published values; the diversity metrics on texts whose answer is known."""

import math

import nltk
import pytest
from shared_data import SHARED_DATA

from lmforge.data.taskfiles import read_lines
from lmforge.errors import DataError
from lmforge.eval.text import (CorpusScorer, distinct_n, diversity, meteor, ngram_entropy, repetition_rate,
                               sacrebleu_score, self_bleu, sentence_meteor, words)

WMT = SHARED_DATA / "mt" / "wmt17-en-de"
NLTK_DATA = SHARED_DATA / "nltk_data"

# mt/SOURCE.md: BLEU as published by Moses mteval-v13a (sacrebleu's test.sh); chrF as published for FBK and
# C-3MA and as sacrebleu 2.6.0 computes it for the others
WMT17 = {
    "uedin-nmt.4722": (28.30, 57.7227), "LMU-nmt-reranked.4934": (27.11, 56.3908), "SYSTRAN.4847": (26.71, 55.5758),
    "xmu.4910": (26.69, 55.9642), "online-B.0": (26.65, 56.2633), "LIUM-NMT.4900": (26.60, 55.9284),
    "LMU-nmt-single.4893": (26.56, 55.9216), "FBK.4870": (26.33, 54.7152), "KIT.4950": (26.08, 55.7629),
    "RWTH-nmt-ensemble.4921": (26.02, 55.6116), "C-3MA.4959": (22.67, 51.9533), "TALP-UPC.4834": (21.24, 51.6860),
    "online-A.0": (20.80, 52.0023), "online-G.0": (18.16, 51.5871), "PROMT-Rule-based.4735": (16.61, 50.3573),
    "online-F.0": (15.45, 49.2588),
}
CHRF_PLUS_PLUS = {"C-3MA.4959": 49.1683, "FBK.4870": 52.2330}  # sacrebleu's test.sh


@pytest.mark.skipif(not WMT.is_dir(), reason="../shared/data/mt is not here")
def test_wmt17_all_systems_bleu_and_chrf_equal_published():
    ref = read_lines(WMT / "newstest2017-ende-ref.de")
    bleu, chrf, chrf_pp = CorpusScorer("bleu", ref), CorpusScorer("chrf", ref), CorpusScorer("chrf++", ref)
    got = {}
    for system, (want_bleu, want_chrf) in WMT17.items():
        hyp = read_lines(WMT / f"newstest2017.{system}.en-de")
        got[system] = (bleu.score(hyp).score, chrf.score(hyp).score)
        assert abs(got[system][0] - want_bleu) < 0.01 and abs(got[system][1] - want_chrf) < 0.01, (system, got[system])
        if system in CHRF_PLUS_PLUS:
            assert abs(chrf_pp.score(hyp).score - CHRF_PLUS_PLUS[system]) < 0.01
    assert len(got) == 16
    assert bleu.score(hyp).signature == "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" + __import__("sacrebleu").__version__


def test_sentence_scores_and_signatures():
    hyps, refs = ["the cat sat on the mat", "completely different"], ["the cat sat on a mat", "nothing alike here"]
    score = sacrebleu_score("bleu", hyps, refs, sentences=True)
    assert score.metric == "BLEU" and "tok:13a" in score.signature and "eff:no" in score.signature
    assert "eff:yes" in score.sentence_signature  # sentence BLEU uses effective n-gram order
    assert score.sentences[0] == pytest.approx(53.7285, abs=1e-4) and score.sentences[1] == 0.0
    assert "signature: nrefs:1" in score.format() and "2\t0.0000" in score.format()
    assert sacrebleu_score("chrf", refs, refs).score == 100.0
    assert sacrebleu_score("chrf++", hyps, refs).metric == "chrF2++"
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        sacrebleu_score("bleu", hyps, refs[:1])


# NLTK's own METEOR tests (nltk/test/meteor.doctest and the meteor_score docstrings), pre-tokenized here
REFERENCE_1 = "It is a guide to action that ensures that the military will forever heed Party commands"
REFERENCE_2 = "It is the guiding principle which guarantees the military forces always being under the command of the Party"
REFERENCE_3 = "It is the practical guide for the army always to heed the directions of the party"
HYPOTHESIS_1 = "It is a guide to action which ensures that the military always obeys the commands of the party"
NLTK_CASES = [
    ("John loves Mary", ["The candidate has no alignment to any of the references"], 0.0),
    ("The cat sat on the mat", ["The cat sat on the mat"], 0.9977),
    ("on the mat sat the cat", ["The cat sat on the mat"], 0.5),
    ("The cat was sat on the mat", ["The cat sat on the mat"], 0.9654),
    ("creates or updates a virtual machine scale set", ["create or update a vm set"], 0.7806),
    (HYPOTHESIS_1, [REFERENCE_1, REFERENCE_2, REFERENCE_3], 0.6944),
    (HYPOTHESIS_1, [REFERENCE_1], 0.6944),
]


@pytest.fixture
def with_wordnet(monkeypatch):
    if not (NLTK_DATA / "corpora" / "wordnet.zip").is_file():
        pytest.skip("../shared/data/nltk_data is not here")
    monkeypatch.setenv("NLTK_DATA", str(NLTK_DATA))


@pytest.fixture
def without_wordnet(monkeypatch, tmp_path):
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])


@pytest.mark.parametrize("hypothesis,references,want", NLTK_CASES)
def test_meteor_equals_nltks_test_values(with_wordnet, hypothesis, references, want):
    assert round(sentence_meteor(hypothesis, references), 4) == want


def test_meteor_uses_wordnet_synonyms(with_wordnet):
    score = meteor(["the kid ran home"], ["the child ran home"])
    assert round(score.score, 4) == 0.9922 and score.warning is None
    assert "match:exact+stem+wordnet" in score.signature


def test_meteor_without_wordnet_says_so_and_matches_exact_and_stems(without_wordnet):
    score = meteor(["the kid ran home", "the cats sat"], ["the child ran home", "the cat sat"], sentences=True)
    assert "WordNet not found" in score.warning
    assert "match:exact+stem|" in score.signature and "exact+stem matching" in score.summary
    assert round(score.sentences[0], 4) == 0.6389  # kid/child no longer match
    assert round(score.sentences[1], 4) == 0.9815  # cats/cat still match by stem


def test_words_keep_inner_apostrophes_and_split_punctuation():
    assert words("Don't stop, e-mail me.") == ["Don't", "stop", ",", "e-mail", "me", "."]


def test_diversity_metrics_on_known_texts():
    texts = ["a b a b", "a c"]
    assert distinct_n(texts, 1) == 3 / 6 and distinct_n(texts, 2) == 3 / 4  # bigrams: ab ba ab | ac
    assert ngram_entropy(["a b"], 1) == 1.0 and ngram_entropy(["a a a a"], 1) == 0.0
    assert ngram_entropy(texts, 1) == pytest.approx(-(3 / 6 * math.log2(3 / 6) + 2 / 6 * math.log2(2 / 6)
                                                      + 1 / 6 * math.log2(1 / 6)))
    loop = "the cat sat on the mat " * 5
    assert repetition_rate([loop]) > 0.7 and repetition_rate(["one two three four five six"]) == 0.0
    assert self_bleu(["the same words here", "the same words here"]) == pytest.approx(100.0)
    assert self_bleu(["one two three four", "five six seven eight"]) == 0.0
    assert self_bleu(["alone"]) is None
    assert set(diversity(texts)) == {"distinct_1", "distinct_2", "unigram_entropy", "bigram_entropy", "self_bleu",
                                     "repetition_rate"}
