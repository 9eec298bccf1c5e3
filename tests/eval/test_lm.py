"""Language-model metrics: the formulas, the counts they divide by, and sliding-window evaluation."""

import math
import random
import re
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from lmforge.config import GPTConfig
from lmforge.errors import ConfigError, DataError
from lmforge.eval.lm import (TextCounts, document_segments, eval_tokens, evaluate_run, format_lm, metrics,
                             predicted_text_counts, score_batches, sliding_window_batches, sum_loss)
from lmforge.models.transformer import GPT
from lmforge.run import load_run
from lmforge.train.trainer import train


def test_metrics_divide_one_total_by_each_count():
    loss_sum = 1000.0
    m = metrics(loss_sum, tokens=500, n_bytes=800, n_chars=700, n_words=100)
    assert m["loss"] == 2.0 and m["perplexity"] == pytest.approx(math.exp(2.0))
    assert m["bits_per_token"] == pytest.approx(2.0 / math.log(2))
    assert m["bits_per_byte"] == pytest.approx(1000 / math.log(2) / 800)
    assert m["bits_per_char"] == pytest.approx(1000 / math.log(2) / 700)
    assert m["word_perplexity"] == pytest.approx(math.exp(10.0))
    assert m["byte_perplexity"] == pytest.approx(math.exp(1000 / 800))
    assert metrics(1e6, 1)["perplexity"] == math.exp(700.0)  # a diverged model: huge, not an OverflowError


def test_text_counts_agree_however_the_text_is_cut():
    rng = random.Random(0)
    text = "".join(rng.choice(["word", "é", "日本", " ", "\n", "  ", "x"]) for _ in range(2000))
    whole = TextCounts()
    whole.add(text)
    assert (whole.bytes, whole.chars, whole.words) == (len(text.encode()), len(text), len(text.split()))
    cuts = sorted(rng.sample(range(1, len(text)), 50))
    pieces = TextCounts()
    for a, b in zip([0, *cuts], [*cuts, len(text)]):
        pieces.add(text[a:b])
    assert pieces == whole
    docs = TextCounts()
    docs.add("end of one")
    docs.end_document()
    docs.add("start")  # glued to "one" by the text, but a document boundary separates them
    assert docs.words == 4


class Uniform(nn.Module):
    """Equal logits for every token: loss, perplexity and entropy are known exactly."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, tokens, state=None):
        return torch.zeros(*tokens.shape, self.vocab), None


def test_a_uniform_model_has_perplexity_and_entropy_of_the_vocabulary():
    segments = [np.arange(100) % 7]
    totals = score_batches(Uniform(7), sliding_window_batches(segments, 16, 5, 4), torch.device("cpu"), entropy=True)
    assert totals.tokens == 99
    assert totals.loss_sum / totals.tokens == pytest.approx(math.log(7))
    assert totals.entropy_sum / totals.tokens == pytest.approx(math.log(7))


@pytest.mark.parametrize("stride", [1, 3, 8, 16])
@pytest.mark.parametrize("length", [2, 10, 16, 17, 50])
def test_sliding_windows_score_every_target_once_with_enough_context(stride, length):
    block = 16
    tokens = np.arange(length)  # each token is its own position, so a batch shows what it scores
    scored = []
    for x, y, n in sliding_window_batches([tokens], block, stride, batch_size=3):
        assert x.size(1) <= block and torch.equal(y, x + 1)
        for row_x, row_y in zip(x, y):
            for position in range(x.size(1) - n, x.size(1)):
                context = position + 1  # tokens the model sees for this prediction
                target = int(row_y[position])
                assert context >= min(target, block - stride + 1), (target, context)
                scored.append(target)
    assert sorted(scored) == list(range(1, length))


def test_stride_equal_to_the_block_is_the_non_overlapping_evaluation_to_the_bit():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11)).eval()
    rng = np.random.default_rng(0)
    segments = [rng.integers(0, 11, n).astype(np.uint16) for n in (40, 3, 17, 9, 64)]
    want = sum_loss(model, segments, 8, 4, torch.device("cpu"))
    got = score_batches(model, sliding_window_batches(segments, 8, 8, 4), torch.device("cpu"))
    assert (got.loss_sum, got.tokens) == want
    overlapping = score_batches(model, sliding_window_batches(segments, 8, 4, 4), torch.device("cpu"))
    assert overlapping.tokens == want[1] and overlapping.loss_sum != want[0]


def test_a_stride_outside_the_context_is_an_error():
    with pytest.raises(ConfigError, match="stride 9: must be between 1 and the model's block_size"):
        next(sliding_window_batches([np.arange(20)], 8, 9, 4))
    with pytest.raises(ConfigError, match="stride 0"):
        next(sliding_window_batches([np.arange(20)], 8, 0, 4))


def test_full_last_windows_are_the_harness_rolling_windows():
    """lm-evaluation-harness's rolling windows (max_length L, context_len 1) over [eod] + tokens: disjoint
    windows of L targets, each target given the tokens before it in its window, and the last window, shorter
    in targets, still reads L tokens of context. Written out here for a 23-token document and L = 8."""
    seg = np.arange(24)  # seg[0] plays the end-of-document token, seg[1:] the document's 23 tokens
    got = [(x[0].tolist(), y[0, -n:].tolist()) for x, y, n in sliding_window_batches([seg], 8, 8, 1, full_last=True)]
    expected = [(list(range(0, 8)), list(range(1, 9))), (list(range(8, 16)), list(range(9, 17))),
                (list(range(15, 23)), list(range(17, 24)))]  # the last: 7 targets, 8 tokens of context
    assert sorted(got) == sorted(expected)
    short = [(x[0].tolist(), n) for x, _, n in sliding_window_batches([np.arange(5)], 8, 8, 1, full_last=True)]
    assert short == [([0, 1, 2, 3], 4)]  # a document shorter than the block is one window from its start


def test_documents_are_counted_as_the_harness_counts_them(tmp_path):
    r"""Words are re.split(r"\s+", document): whitespace at a document's start or end counts an empty word."""
    import json

    from lmforge.config import DataConfig, TokenizerConfig
    from lmforge.tokenizer import Tokenizer

    docs = ["the cat sat", " leading space", "trailing newline\n", "  both  \n", "unicode é 日本"]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tok = Tokenizer.train(TokenizerConfig(kind="char"), docs)
    segments, counts = document_segments(tok, str(path), DataConfig())
    assert [s[0] for s in segments] == [tok.eod_id] * len(docs)
    assert [tok.decode(s[1:]) for s in segments] == docs
    assert counts.words == sum(len(re.split(r"\s+", d)) for d in docs) == 3 + 3 + 3 + 3 + 3
    assert counts.bytes == sum(len(d.encode()) for d in docs) and counts.chars == sum(map(len, docs))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: a second thread gains little, and loses much when other jobs share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def context_run(tmp_path_factory):
    """A char GPT trained briefly (600 steps) on lines whose first letter decides their last words, 6 to 30
    characters later: a model that has learned this predicts better the more context it sees."""
    from lmforge.config import load_config

    tmp = tmp_path_factory.mktemp("context")
    rng = random.Random(0)
    animals = ["red fox", "blue jay", "gray owl", "pink pig", "tan cat", "old dog", "big elk", "sly eel"]
    lines = []
    for k in (rng.randrange(8) for _ in range(800)):
        lines.append("abcdefgh"[k] + " " + "." * rng.randrange(25) + " the " + animals[k])
    (tmp / "animals.txt").write_text("\n".join(lines))
    cfg = load_config(None, [f"data.path={tmp / 'animals.txt'}", f"data.prepared_dir={tmp / 'prepared'}",
                             "tokenizer.kind=char", "model.n_layer=2", "model.n_head=4", "model.n_embd=64",
                             "model.block_size=32", "train.micro_batch_size=16", "train.max_steps=600",
                             "train.eval_interval=600", "optimizer.lr=5e-3", "schedule.warmup_steps=10",
                             "train.tensorboard=false", "sample.num_samples=0"])
    train(cfg, tmp / "run", progress=False)
    return tmp / "run"


def test_smaller_strides_never_increase_perplexity(context_run):
    run = load_run(context_run)
    perplexities = [evaluate_run(run, stride=s)["perplexity"] for s in (32, 16, 8, 4)]
    assert perplexities == sorted(perplexities, reverse=True), perplexities
    assert perplexities[-1] < 0.95 * perplexities[0]  # context matters for this model
    assert evaluate_run(run, stride=32)["loss"] == evaluate_run(run)["loss"]


def test_file_evaluation_counts_the_files_words_and_characters(context_run):
    run = load_run(context_run)
    text_file = context_run.parent / "animals.txt"
    text = text_file.read_text()
    result = evaluate_run(run, str(text_file), entropy=True)
    assert (result["bytes"], result["chars"], result["words"]) == (len(text.encode()), len(text), len(text.split()))
    loss_sum = result["loss"] * result["tokens"]
    assert result["word_perplexity"] == pytest.approx(math.exp(loss_sum / result["words"]))
    assert result["bits_per_char"] == pytest.approx(loss_sum / math.log(2) / len(text))
    assert 0 < result["entropy"] < math.log(run.tokenizer.vocab_size)
    assert result["tokens_per_s"] > 0 and result["stride"] is None


def test_validation_split_counts_the_decoded_predicted_text(context_run):
    run = load_run(context_run)
    result = evaluate_run(run)
    (segment,), source, sources = eval_tokens(run)
    text = run.tokenizer.decode(segment[1:])
    assert source == "validation split" and result["data"] == "validation split" and sources == {}
    assert (result["chars"], result["words"]) == (len(text), len(text.split()))


def test_documents_are_scored_one_by_one_from_the_end_of_document_token(context_run):
    """--documents: each record of the file is a document, scored from [eod] in the harness's windows; the total
    is the sum of each document scored alone."""
    import json

    run = load_run(context_run)
    text_file = context_run.parent / "animals.txt"
    lines = [line for line in text_file.read_text().splitlines() if len(line) < 32][:40]
    (context_run.parent / "forty.jsonl").write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    result = evaluate_run(run, str(context_run.parent / "forty.jsonl"), documents=True)
    expected, eod = 0.0, run.tokenizer.eod_id
    with torch.no_grad():
        for line in lines:
            ids = torch.tensor([[eod, *run.tokenizer.encode(line)]])
            logits, _ = run.model(ids[:, :-1])  # every line fits the 32-token block
            expected += torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
    assert result["documents"] == 40 and result["tokens"] == sum(len(run.tokenizer.encode(l)) for l in lines)
    assert result["loss"] * result["tokens"] == pytest.approx(expected, rel=1e-5)
    assert result["words"] == sum(len(re.split(r"\s+", l)) for l in lines)
    assert "each document on its own" in format_lm(result)


def test_documents_need_a_file_and_no_stride(context_run):
    run = load_run(context_run)
    with pytest.raises(ConfigError, match="^--documents scores the documents of a file: give --data FILE"):
        evaluate_run(run, documents=True)
    with pytest.raises(ConfigError, match="not with --stride"):
        evaluate_run(run, str(context_run.parent / "animals.txt"), documents=True, stride=8)


def test_bfloat16_evaluation_is_close_to_float32(context_run):
    run = load_run(context_run)
    exact, fast = evaluate_run(run), evaluate_run(run, dtype="bfloat16")
    assert (exact["dtype"], fast["dtype"]) == ("float32", "bfloat16")
    assert fast["loss"] != exact["loss"]  # autocast really ran in bf16
    assert fast["loss"] == pytest.approx(exact["loss"], rel=0.01)


def test_a_run_whose_prepared_data_is_gone_is_told_to_prepare_it(tiny_config, tmp_path):
    train(tiny_config("sample.num_samples=0"), tmp_path / "run", progress=False)
    prepared = tmp_path / "prepared"
    shutil.rmtree(prepared)
    message = (f"^{re.escape(str(prepared))}: the run's prepared data is missing or out of date; "
               f"run lmforge prepare {re.escape(str(tmp_path / 'run' / 'config.yaml'))}$")
    with pytest.raises(DataError, match=message):
        evaluate_run(load_run(tmp_path / "run"))
    assert not prepared.exists()  # evaluation never prepares


def test_a_mixture_is_scored_per_source_and_the_split_is_their_sum(tiny_config, tiny_corpus, tmp_path):
    """lmforge eval of a run on data.sources: each source's own validation figures, equal to training's
    val_loss/<source>, and the whole split's loss is their token-weighted mean, as scoring the union at once."""
    import json

    from cli_checks import invoke

    other = tmp_path / "other.jsonl"
    words = "a quick brown fox jumps over lazy dogs while birds sing".split()
    other.write_text("".join(json.dumps({"body": " ".join(words[(i + j) % len(words)] for j in range(12))}) + "\n"
                             for i in range(300)))
    cfg = tiny_config(f"data.sources=[{{path: {tiny_corpus}, weight: 3}}, {{path: {other}, weight: 1, field: body, "
                      f"name: fox}}]", "data.path=null", "sample.num_samples=0")
    done = train(cfg, tmp_path / "run", progress=False)
    logged = [json.loads(line) for line in (done.run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in logged if "val_loss" in r][-1]

    code, out, err = invoke("eval", done.run_dir, "--json")
    assert code == 0, err
    result = json.loads(out)
    sources = result["sources"]
    assert list(sources) == ["tiny", "fox"]
    for name, m in sources.items():
        assert m["loss"] == pytest.approx(last[f"val_loss/{name}"], abs=1e-5)
        assert m["bits_per_byte"] > 0 and m["tokens"] > 0
    assert result["tokens"] == sources["tiny"]["tokens"] + sources["fox"]["tokens"]
    mean = sum(m["loss"] * m["tokens"] for m in sources.values()) / result["tokens"]
    assert result["loss"] == pytest.approx(mean, rel=1e-9) == pytest.approx(last["val_loss"], abs=1e-5)
    run = load_run(done.run_dir)
    union, _, _ = eval_tokens(run)
    loss_sum, tokens = sum_loss(run.model, union, cfg.model.block_size, 32, torch.device("cpu"))
    assert tokens == result["tokens"] and loss_sum / tokens == pytest.approx(result["loss"], abs=1e-6)
    whole = predicted_text_counts(run.tokenizer, union)  # the split's text is its sources' text, counted once
    assert (result["bytes"], result["chars"], result["words"]) == (whole.bytes, whole.chars, whole.words)

    code, out, err = invoke("eval", done.run_dir)
    assert code == 0, err
    assert re.search(r"^  tiny \([\d,]+ tokens\): loss [\d.]+, perplexity [\d.]+, [\d.]+ bits/byte$", out, re.M)
    assert re.search(r"^  fox \([\d,]+ tokens\): loss", out, re.M)
    code, _, err = invoke("report", done.run_dir, "--out", tmp_path / "report.html")
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert "loss/tiny" in page and "perplexity/fox" in page
