"""Tiny random checkpoints of each architecture, built offline in a second.

Tests, examples and ``--tiny`` CLI runs use them where no real model can be downloaded. The
weights are random (seeded): numbers are meaningful for parity, not for relevance.

Example:
    >>> from bge_integrations.tiny_models import build_tiny_model
    >>> path = build_tiny_model("bert", "/tmp/tiny-bert")  # doctest: +SKIP
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

__all__ = ["build_tiny_model", "TINY_KINDS", "TINY_CORPUS"]

TINY_KINDS = ("bert", "xlm-roberta", "mistral")

TINY_CORPUS = [
    "BGE is an embedding model from BAAI for retrieval.",
    "Dense vectors capture the meaning of a sentence.",
    "Sparse lexical weights keep exact keyword matches.",
    "ColBERT compares every query token with every passage token.",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "Python is a programming language; Rust is another one.",
    "Represent this sentence for searching relevant passages: what is a panda?",
    "The giant panda is a bear species endemic to China.",
    "<instruct>Given a web search query, retrieve relevant passages\n<query>what is BGE?\n"
    "<response>BGE is a family of embedding models.",
    "Vector databases such as Qdrant store embeddings and search them quickly.",
    "LangChain and LlamaIndex build retrieval augmented generation pipelines.",
    "Machine learning models turn text into numbers.",
    "Hybrid search fuses dense, sparse and multi-vector scores.",
]


def _alphabet() -> list[str]:
    return sorted(set(string.printable) - set(string.whitespace) | {"\n"})


def _corpus() -> list[str]:
    return TINY_CORPUS * 4


def _wordpiece_tokenizer(vocab_size: int):  # noqa: ANN202 - returns a transformers tokenizer
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=special,
                               initial_alphabet=_alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])


def _sentencepiece_like_tokenizer(vocab_size: int, special: list[str], template: str,
                                  padding_side: str, **roles: str):  # noqa: ANN202
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(BPE(unk_token=roles["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                         initial_alphabet=_alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(s, tok.token_to_id(s)) for s in special
                                         if s in template.split()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side=padding_side,
                                   model_input_names=["input_ids", "attention_mask"], **roles)


def build_tiny_model(kind: str, path: str | Path, *, hidden_size: int = 32, layers: int = 2,
                     seed: int = 0, heads: bool = True, padding_side: str = "left") -> Path:
    """Write a tiny random checkpoint of ``kind`` to ``path`` and return the path.

    Args:
        kind: ``"bert"`` (BGE v1.5-like, WordPiece), ``"xlm-roberta"`` (BGE-M3-like, writes
            ``colbert_linear.pt`` and ``sparse_linear.pt`` when ``heads``), ``"mistral"``
            (bge-en-icl-like decoder).
        path: output directory (created).
        hidden_size: width of the model.
        layers: number of transformer layers.
        seed: random seed for the weights.
        heads: write the BGE-M3 head files (xlm-roberta only).
        padding_side: tokenizer padding side for ``"mistral"``.
    """
    from transformers import BertConfig, BertModel, MistralConfig, MistralModel
    from transformers import XLMRobertaConfig, XLMRobertaModel

    if kind not in TINY_KINDS:
        msg = f"Unknown tiny model kind {kind!r}; valid: {', '.join(TINY_KINDS)}."
        raise ValueError(msg)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    common = {"hidden_size": hidden_size, "num_hidden_layers": layers,
              "num_attention_heads": 4, "intermediate_size": hidden_size * 2}
    if kind == "bert":
        tokenizer = _wordpiece_tokenizer(400)
        config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512,
                            pad_token_id=tokenizer.pad_token_id, **common)
        model = BertModel(config)
    elif kind == "xlm-roberta":
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tokenizer = _sentencepiece_like_tokenizer(
            400, special, "<s> $A </s>", "right", bos_token="<s>", cls_token="<s>",
            eos_token="</s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
            mask_token="<mask>")
        config = XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=8194,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=0,
                                  eos_token_id=2, **common)
        model = XLMRobertaModel(config)
        if heads:
            torch.save(torch.nn.Linear(hidden_size, hidden_size).state_dict(),
                       out / "colbert_linear.pt")
            torch.save(torch.nn.Linear(hidden_size, 1).state_dict(), out / "sparse_linear.pt")
    else:
        special = ["<unk>", "<s>", "</s>"]
        tokenizer = _sentencepiece_like_tokenizer(
            500, special, "<s> $A </s>", padding_side, bos_token="<s>", eos_token="</s>",
            unk_token="<unk>", pad_token="</s>")
        config = MistralConfig(vocab_size=len(tokenizer), max_position_embeddings=4096,
                               num_key_value_heads=2, sliding_window=None,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=1,
                               eos_token_id=2, **common)
        model = MistralModel(config)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
