"""Tiny offline text stacks for tiny checkpoints: a WordLevel tokenizer and a T5 encoder."""

from __future__ import annotations


# Words of WIW's prompt templates plus a few more; anything else maps to [UNK].
VOCAB_WORDS = (
    "follow this sequence of camera motions move forward 0.2 m turn left right 22.5 degrees stop "
    "a robot arm performs the task pick up put place open close push pull cup drawer table red blue "
    "green block on in to and with"
).split()
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def tiny_tokenizer(model_max_length: int = 64, chat_template: str | None = None):
    """A PreTrainedTokenizerFast over a small word vocabulary; survives save/reload offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in VOCAB_WORDS + list("[],.:"):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=model_max_length)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tiny_t5_encoder(d_model: int = 16, seed: int = 0):
    """A one-layer UMT5/T5 encoder sized to the tiny tokenizer's vocabulary."""
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(SPECIAL_TOKENS) + len(VOCAB_WORDS) + 8, d_model=d_model, d_ff=32,
                      d_kv=8, num_layers=1, num_heads=2, relative_attention_num_buckets=8,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5EncoderModel(config).eval()
