"""Helpers of the fine-tuning tests: a tiny BERT on disk and small task data sets."""

import json
import random
from pathlib import Path

WORDS = "the a film movie story plot actor was is very quite rather and but it so".split()
POSITIVE = "good great fun superb lovely".split()
NEGATIVE = "bad dull awful boring poor".split()
NAMES = "alice bob carol dave".split()
PLACES = "paris rome oslo lima".split()


def tiny_vocab() -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {*WORDS, *POSITIVE, *NEGATIVE, *NAMES, *PLACES, "went", "to", "met", "in", "what", "colour", "sky",
             "red", "blue", "green", "?", ".", ","}
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters), *sorted(words)]
    return list(dict.fromkeys(tokens))  # "a" is a letter and a word


def save_tiny_bert(folder: Path, with_weights: bool = True) -> Path:
    """A random BERT (2 layers, 32 wide) with an uncased WordPiece tokenizer, as save_pretrained writes it."""
    import torch
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(tiny_vocab())}
    tk = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tk.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    folder.mkdir(parents=True, exist_ok=True)
    if with_weights:
        BertModel(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        cue = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words = [rng.choice(WORDS) for _ in range(4)]
        words.insert(rng.randrange(5), cue)
        rows.append((" ".join(words), label))
    return rows


def ner_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name, place = rng.choice(NAMES), rng.choice(PLACES)
        if rng.random() < 0.5:
            out.append([(name.capitalize(), "B-person"), ("went", "O"), ("to", "O"), (place.capitalize(), "B-location"),
                        (".", "O")])
        else:
            out.append([("in", "O"), (place.capitalize(), "B-location"), (",", "O"), (name.capitalize(), "B-person"),
                        ("met", "O"), ("Bob", "B-person"), ("Carol", "I-person")])
    return out


def write_conll(path: Path, sentences) -> Path:
    path.write_text("\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in sentences))
    return path


def squad_data(n: int, seed: int = 0) -> dict:
    """Questions whose answer is the colour word after 'is', at different places in the context."""
    rng = random.Random(seed)
    paragraphs = []
    for i in range(n):
        colour = rng.choice(["red", "blue", "green"])
        before = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
        after = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
        context = f"{before} the sky is {colour} . {after} ."
        start = context.index(f"is {colour}") + 3
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": "what colour is the sky ?",
                                                       "answers": [{"text": colour, "answer_start": start}]}]})
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path
