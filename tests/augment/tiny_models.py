"""Tiny random models saved with save_pretrained, so the real loading and generation code runs offline: an
encoder-decoder (BART or Marian) and a BERT masked LM, each with a word-level tokenizer built here."""

from pathlib import Path

WORDS = ("the a film movie story plot actor was is very quite rather and but it so good great fun superb "
         "lovely bad dull awful boring poor cat sat on mat dog ran . ,").split()


def word_tokenizer(specials: list[str], post: str | None):
    """A PreTrainedTokenizerFast over WORDS, lower-cased, splitting at whitespace and punctuation."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*specials, *dict.fromkeys(WORDS)])}
    tk = Tokenizer(WordLevel(vocab, unk_token="<unk>" if "<unk>" in vocab else "[UNK]"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    if post == "eos":
        tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    elif post == "bert":
        tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
            ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return tk, vocab, PreTrainedTokenizerFast


def save_tiny_seq2seq(folder: Path, kind: str = "bart", max_positions: int = 64) -> Path:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, MarianConfig, MarianMTModel

    tk, vocab, fast = word_tokenizer(["<pad>", "<s>", "</s>", "<unk>", "<mask>"], "eos")
    tokenizer = fast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                     mask_token="<mask>", model_max_length=max_positions)
    shape = dict(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                 max_position_embeddings=max_positions, pad_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    if kind == "marian":
        model = MarianMTModel(MarianConfig(decoder_start_token_id=0, **shape))
    else:
        model = BartForConditionalGeneration(BartConfig(bos_token_id=1, decoder_start_token_id=2, forced_eos_token_id=2,
                                                        **shape))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_mlm(folder: Path, head: bool = True) -> Path:
    """A random 1-layer BERT with its masked-LM head (or, head=False, the bare encoder: no MLM weights)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    tk, vocab, fast = word_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "bert")
    tokenizer = fast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                     mask_token="[MASK]", model_max_length=32)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    folder.mkdir(parents=True, exist_ok=True)
    (BertForMaskedLM if head else BertModel)(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
