import json
import random

import numpy as np
import pytest
from shared_data import SHARED_DATA
from tokenizers import Tokenizer as HFTokenizer
from transformers import PreTrainedTokenizerFast

from lmforge.config import TokenizerConfig
from lmforge.errors import ConfigError, DataError
from lmforge.tokenizer import EOD, UNK, Tokenizer

KINDS = ["char", "word", "bpe", "wordpiece", "unigram"]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    rng = random.Random(0)
    words = ("the quick brown fox jumps over a lazy dog while her friends didn't notice it , . ! ? ; "
             "Zebra Yak kangaroo émigré naïve").split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + "\n" for _ in range(300)]


@pytest.fixture(scope="module")
def trained(texts) -> dict[str, Tokenizer]:
    return {kind: Tokenizer.train(TokenizerConfig(kind=kind, vocab_size=400 if kind == "unigram" else 120,
                                                  min_frequency=1), texts) for kind in KINDS}


SAMPLE = "the lazy fox didn't notice a kangaroo, naïve émigré!\nZebra  Yak."


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_encodes_decodes_and_matches_transformers(trained, kind, tmp_path):
    tok = trained[kind]
    ids = tok.encode(SAMPLE)
    assert ids and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.eod_id == tok.backend.token_to_id(EOD) and tok.eod_id not in ids  # never added by encode
    assert tok.encode_batch([SAMPLE, "dog"]) == [ids, tok.encode("dog")]
    if kind in ("char", "bpe", "unigram"):
        assert tok.decode(ids) == SAMPLE
    elif kind == "word":  # words and punctuation come back separated by single spaces
        assert tok.decode(ids) == " ".join(w for w, _ in tok.backend.pre_tokenizer.pre_tokenize_str(SAMPLE))
    else:  # WordPiece glues continuations and tidies spaces around punctuation, so only spacing differs
        assert tok.decode(ids).replace(" ", "") == SAMPLE.replace(" ", "").replace("\n", "")
    assert tok.decode(np.array(ids, dtype=np.uint16)) == tok.decode(ids)

    path = tmp_path / "tokenizer.json"
    tok.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temporary file left behind
    again = Tokenizer.load(path)
    assert (again.sha256, again.vocab_size, again.eod_id, again.encode(SAMPLE)) == \
        (tok.sha256, tok.vocab_size, tok.eod_id, ids)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(path))
    assert hf(SAMPLE, add_special_tokens=False)["input_ids"] == ids
    assert hf.decode(ids) == tok.decode(ids, skip_special_tokens=False)


def test_training_is_deterministic(texts, trained):
    # not wordpiece or unigram: HF tokenizers breaks their ties in hash-map order, which varies by process
    for kind in ["char", "word", "bpe"]:
        again = Tokenizer.train(TokenizerConfig(kind=kind, vocab_size=120, min_frequency=1), texts)
        assert again.sha256 == trained[kind].sha256, kind


def test_byte_level_bpe_round_trips_anything(trained):
    odd = "never seen: 日本語, emoji 👍🏽, control \x00\x07, tabs\t\r\n and <unk> too"
    assert trained["bpe"].decode(trained["bpe"].encode(odd)) == odd
    unigram = trained["unigram"]  # byte fallback: no <unk> for unseen characters
    assert unigram.decode(unigram.encode(odd), skip_special_tokens=False) == odd
    assert unigram.backend.token_to_id(UNK) not in unigram.encode(odd.replace("<unk>", ""))


def test_char_vocabulary_is_specials_then_sorted_characters(texts, trained):
    chars = sorted(set("".join(texts)))
    tok = trained["char"]
    vocab = tok.backend.get_vocab()
    assert tok.vocab_size == len(chars) + 2 and vocab[UNK] == 0 and vocab[EOD] == 1
    assert [vocab[c] for c in chars] == list(range(2, len(chars) + 2))
    no_eod = Tokenizer.train(TokenizerConfig(kind="char", eod=False), texts)
    assert no_eod.vocab_size == len(chars) + 1 and no_eod.eod_id is None


@pytest.mark.parametrize("kind", ["char", "word"])
def test_unknown_symbols_map_to_unk(trained, kind):
    tok = trained[kind]
    unk = tok.backend.token_to_id(UNK)
    ids = tok.encode("the 日 dog" if kind == "char" else "the xylophone dog")
    assert unk in ids and ids.count(unk) == 1
    assert tok.decode(ids, skip_special_tokens=False).split()[1] == UNK


def test_word_vocabulary_cap_min_frequency_and_split():
    texts = ["a a a b b c didn't"] * 2
    tok = Tokenizer.train(TokenizerConfig(kind="word", vocab_size=16, min_frequency=3, eod=False), texts)
    assert set(tok.backend.get_vocab()) == {UNK, "a", "b"}  # c and didn't (2 times each) are too rare
    split = Tokenizer.train(TokenizerConfig(kind="word", min_frequency=1), texts)
    assert {"didn", "'", "t"} <= set(split.backend.get_vocab()) and len(split.encode("a didn't")) == 4
    capped = Tokenizer.train(TokenizerConfig(kind="word", vocab_size=16, min_frequency=1), ["x y z"] * 20)
    assert capped.vocab_size <= 16
    pre_split = Tokenizer.train(TokenizerConfig(kind="word", word_split="whitespace", min_frequency=1), texts)
    assert "didn't" in pre_split.backend.get_vocab() and len(pre_split.encode("a didn't")) == 2


def test_lowercase_and_train_sample_bytes():
    tok = Tokenizer.train(TokenizerConfig(kind="char", lowercase=True, eod=False), ["ABC abc"])
    assert tok.encode("ABC") == tok.encode("abc") and tok.vocab_size == 5  # <unk> a b c space
    capped = Tokenizer.train(TokenizerConfig(kind="char", eod=False, train_sample_bytes=4), ["ab", "cd", "ef"])
    assert set(capped.backend.get_vocab()) == {UNK, "a", "b", "c", "d"}
    # a cut inside a multi-byte character drops the broken tail
    cut = Tokenizer.train(TokenizerConfig(kind="char", eod=False, train_sample_bytes=2), ["aé"])
    assert set(cut.backend.get_vocab()) == {UNK, "a"}


def test_errors(tmp_path, texts):
    with pytest.raises(DataError, match="no such tokenizer file"):
        Tokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(DataError, match=r"bad\.json: not a tokenizer\.json"):
        Tokenizer.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="tokenizer.vocab_size: 100 is too small for a unigram"):
        Tokenizer.train(TokenizerConfig(kind="unigram", vocab_size=100), texts)


@pytest.mark.parametrize("kind", KINDS)
def test_special_token_strings_in_the_corpus_keep_the_vocabulary_dense(kind):
    texts = ["a <unk> b <unk> c d e f g h", "x<|endoftext|>y and more words"] * 3
    tok = Tokenizer.train(TokenizerConfig(kind=kind, min_frequency=1, vocab_size=300), texts)
    assert sorted(tok.backend.get_vocab(with_added_tokens=True).values()) == list(range(tok.vocab_size))
    assert tok.eod_id in tok.encode("x<|endoftext|>y")


VARIED = [
    "plain words, punctuation!? numbers 12345 67.8 and 1,000,000",
    "whitespace   runs\t\ttabs\n\n\nnewlines \r\n windows   \u00a0nbsp\u2028line sep\u3000ideographic space",
    "naïve émigré Ωμέγα русский текст 中文字符没有空格 日本語のテキスト 한국어 עברית عربى हिन्दी",
    "emoji 👩‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 combining e\u0301 a\u0308 zero\u200bwidth \U0001f600\U0001f600",
    "contractions don't won't I'll we've they're it's 'S 'T 'RE",
    "specials <|endoftext|> inside, glued<|endoftext|>text, <|endo ftext|> and <mask> too",
    "control \x00\x01\x7f and \ufffd, trailing   ",
    "    leading spaces",
    " ",
]


def varied_texts(n: int, seed: int = 0) -> list[str]:
    """Random strings over ASCII, Latin, Greek, Cyrillic, CJK, emoji, combining marks and odd whitespace."""
    rng = random.Random(seed)
    alphabet = (list("abcdefghij klmno  pqrst\n\t0123456789'.,;!?-\"") + [chr(c) for c in range(0xc0, 0x180)]
                + [chr(c) for c in range(0x391, 0x3c9)] + [chr(c) for c in range(0x410, 0x44f)]
                + [chr(rng.randrange(0x4e00, 0x9fff)) for _ in range(50)] + ["\U0001f600", "\u200d", "\u0301",
                                                                              "\u00a0", "\u3000", "\r\n", "   "])
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(n)]


@pytest.fixture(scope="module")
def varied_bpe() -> Tokenizer:
    corpus = VARIED * 20 + varied_texts(400, seed=1)
    return Tokenizer.train(TokenizerConfig(kind="bpe", vocab_size=1500, min_frequency=1, mask_token=True), corpus)


def test_tiktoken_gives_the_ids_of_tokenizers_for_a_trained_byte_level_bpe(varied_bpe):
    assert varied_bpe.tiktoken_encoding is not None
    texts = VARIED + varied_texts(2000, seed=2)
    expected = varied_bpe.encode_batch(texts)
    got = varied_bpe.encode_arrays(texts)
    assert all(a.dtype == np.uint32 for a in got)
    assert [a.tolist() for a in got] == expected
    assert [a.tolist() for a in varied_bpe.encode_arrays(texts, engine="tokenizers")] == expected
    # the special tokens inside text are matched as tokenizers matches them
    assert varied_bpe.eod_id in got[5] and varied_bpe.mask_id in got[5]


@pytest.mark.skipif(not (SHARED_DATA / "tinyshakespeare").is_dir(), reason="needs ../shared/data/tinyshakespeare")
@pytest.mark.parametrize("vocab", [257, 4096])
def test_tiktoken_matches_on_real_text_at_other_vocabulary_sizes(vocab):
    text = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    pieces = [text[i:i + 4000] for i in range(0, len(text), 4000)]
    tok = Tokenizer.train(TokenizerConfig(kind="bpe", vocab_size=vocab), pieces)
    assert tok.tiktoken_encoding is not None
    assert [a.tolist() for a in tok.encode_arrays(pieces)] == tok.encode_batch(pieces)


@pytest.mark.parametrize("eod", [True, False])
def test_the_char_table_gives_the_ids_of_tokenizers(eod):
    tok = Tokenizer.train(TokenizerConfig(kind="char", eod=eod, mask_token=True), VARIED[:4] + varied_texts(100))
    assert tok.char_table is not None and tok.tiktoken_encoding is None
    texts = VARIED + varied_texts(1000, seed=4) + ["<unk><unk>x<|endoftext|>", "\U0001f9ea unseen \u2603"]
    got = tok.encode_arrays(texts)
    assert [a.tolist() for a in got] == tok.encode_batch(texts) and all(a.dtype == np.uint32 for a in got)


@pytest.mark.parametrize("kind", ["word", "wordpiece", "unigram", "lowercase bpe", "lowercase char"])
def test_other_tokenizers_encode_with_tokenizers(texts, trained, kind):
    tok = (Tokenizer.train(TokenizerConfig(kind=kind.split()[1], vocab_size=200, lowercase=True), texts)
           if kind.startswith("lowercase") else trained[kind])
    assert tok.tiktoken_encoding is None and tok.char_table is None
    assert [a.tolist() for a in tok.encode_arrays(texts)] == tok.encode_batch(texts)


def doctored(tok: Tokenizer, change) -> Tokenizer:
    spec = json.loads(tok.backend.to_str())
    change(spec["model"])
    return Tokenizer(HFTokenizer.from_str(json.dumps(spec)))


def swap_two_merged_ids(model: dict) -> None:
    a, b = ("".join(m) if isinstance(m, list) else m.replace(" ", "") for m in model["merges"][3:5])
    model["vocab"][a], model["vocab"][b] = model["vocab"][b], model["vocab"][a]


@pytest.mark.parametrize("change", [swap_two_merged_ids, lambda model: model["merges"].pop(10)],
                         ids=["ids out of merge order", "a token without its merge"])
def test_a_bpe_tiktoken_would_encode_differently_stays_on_tokenizers(varied_bpe, change):
    tok = doctored(varied_bpe, change)
    assert tok.tiktoken_encoding is None
    texts = VARIED + varied_texts(200, seed=3)
    assert [a.tolist() for a in tok.encode_arrays(texts)] == tok.encode_batch(texts)
