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

__all__ = ["build_tiny_model", "build_tiny_reranker", "TINY_KINDS", "RERANKER_KINDS",
           "TINY_CORPUS"]

TINY_KINDS = ("bert", "xlm-roberta", "mistral", "xlm-roberta-reranker", "gemma-reranker",
              "minicpm-layerwise", "gemma2-lightweight")
#: reranker kinds, built by :func:`build_tiny_reranker`
RERANKER_KINDS = ("xlm-roberta-reranker", "gemma-reranker", "minicpm-layerwise",
                  "gemma2-lightweight")

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

    The reranker kinds (:data:`RERANKER_KINDS`) are built by :func:`build_tiny_reranker`.
    """
    from transformers import (
        BertConfig,
        BertModel,
        MistralConfig,
        MistralModel,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    if kind not in TINY_KINDS:
        msg = f"Unknown tiny model kind {kind!r}; valid: {', '.join(TINY_KINDS)}."
        raise ValueError(msg)
    if kind in RERANKER_KINDS:
        return build_tiny_reranker(kind, path, hidden_size=hidden_size, layers=layers, seed=seed)
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
    _portable_tokenizer(out)
    return out


def _portable_tokenizer(out: Path) -> None:
    """transformers 5 names the tokenizer class ``TokenizersBackend``, which 4.x lacks; both
    load the same tokenizer.json as ``PreTrainedTokenizerFast`` (so FlagEmbedding's venv can)."""
    import json

    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("tokenizer_class") == "TokenizersBackend":
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(cfg, indent=2))


# -- rerankers ---------------------------------------------------------------------------------
_RERANK_CORPUS = [
    "A: what is a panda?", "B: The giant panda is a bear species endemic to China.",
    "Given a query A and a passage B, determine whether the passage contains an answer to the "
    "query by providing a prediction of either 'Yes' or 'No'.",
    "Predict whether passage B contains an answer to query A.", "Yes", "No",
]


def _llm_tokenizer(padding_side: str, bos: str, eos: str, pad: str):  # noqa: ANN202
    return _sentencepiece_like_tokenizer(
        500, [pad, eos, bos, "<unk>"], f"{bos} $A", padding_side, bos_token=bos, eos_token=eos,
        pad_token=pad, unk_token="<unk>")


def _save_native(module: torch.nn.Module, config: dict, out: Path, noise: float,
                 norm_base: float) -> None:
    import json

    from safetensors.torch import save_file

    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                param.copy_(norm_base + noise * torch.randn_like(param))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2))


def build_tiny_reranker(kind: str, path: str | Path, *, hidden_size: int = 32, layers: int = 4,
                        seed: int = 0, vocab_size: int | None = None,
                        intermediate_size: int | None = None, heads: int = 4) -> Path:
    """Write a tiny random reranker checkpoint of ``kind`` to ``path`` and return the path.

    Args:
        kind: ``"xlm-roberta-reranker"`` (bge-reranker-base / v2-m3 shape: XLM-R sequence
            classification, one label), ``"gemma-reranker"`` (bge-reranker-v2-gemma shape: a
            Gemma causal LM, left padding), ``"minicpm-layerwise"`` (the config keys and weight
            names of bge-reranker-v2-minicpm-layerwise, right padding) or
            ``"gemma2-lightweight"`` (those of bge-reranker-v2.5-gemma2-lightweight, with a
            16-token sliding window so short texts exercise it).
        path: output directory (created).
        hidden_size: width; layers: decoder / encoder layers (the layerwise kinds score from
            layer 2); seed: random seed; vocab_size: model vocabulary (default: the
            tokenizer's); intermediate_size: MLP width (default ``2 * hidden_size``);
            heads: attention heads.
    """
    if kind not in RERANKER_KINDS:
        msg = f"Unknown tiny reranker kind {kind!r}; valid: {', '.join(RERANKER_KINDS)}."
        raise ValueError(msg)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    inter = intermediate_size or hidden_size * 2
    if kind == "xlm-roberta-reranker":
        from tokenizers import processors
        from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tokenizer = _sentencepiece_like_tokenizer(
            400, special, "<s> $A </s>", "right", bos_token="<s>", cls_token="<s>",
            eos_token="</s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
            mask_token="<mask>")
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
            special_tokens=[("<s>", tokenizer.convert_tokens_to_ids("<s>")),
                            ("</s>", tokenizer.convert_tokens_to_ids("</s>"))])
        config = XLMRobertaConfig(vocab_size=vocab_size or len(tokenizer),
                                  max_position_embeddings=514, hidden_size=hidden_size,
                                  num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=inter, num_labels=1,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=0,
                                  eos_token_id=2)
        model = XLMRobertaForSequenceClassification(config).eval()
        model.save_pretrained(out, safe_serialization=True)
    elif kind == "gemma-reranker":
        from transformers import GemmaConfig, GemmaForCausalLM

        tokenizer = _llm_tokenizer("left", "<bos>", "<eos>", "<pad>")
        config = GemmaConfig(vocab_size=vocab_size or len(tokenizer), hidden_size=hidden_size,
                             intermediate_size=inter, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                             head_dim=hidden_size // heads, max_position_embeddings=8192,
                             pad_token_id=tokenizer.pad_token_id,
                             bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
        model = GemmaForCausalLM(config).eval()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.copy_(0.1 * torch.randn_like(param))
        model.save_pretrained(out, safe_serialization=True)
    elif kind == "minicpm-layerwise":
        from types import SimpleNamespace

        from .core.native import LayerwiseMiniCPMReranker

        tokenizer = _llm_tokenizer("right", "<s>", "</s>", "<unk>")
        config = {
            "architectures": ["LayerWiseMiniCPMForCausalLM"],
            "auto_map": {
                "AutoConfig": "configuration_minicpm_reranker.LayerWiseMiniCPMConfig",
                "AutoModel": "modeling_minicpm_reranker.LayerWiseMiniCPMModel",
                "AutoModelForCausalLM": "modeling_minicpm_reranker.LayerWiseMiniCPMForCausalLM",
            },
            "model_type": "minicpm", "attention_bias": False, "attention_dropout": 0.0,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "dim_model_base": 256, "head_multi": True, "head_type": "simple",
            "hidden_act": "silu", "hidden_size": hidden_size, "initializer_range": 0.1,
            "intermediate_size": inter, "max_position_embeddings": 2048,
            "num_attention_heads": heads, "num_hidden_layers": layers,
            "num_key_value_heads": heads, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
            "rope_scaling": None, "rope_theta": 10000.0, "scale_depth": 1.4, "scale_emb": 12,
            "start_layer": 2, "tie_word_embeddings": False, "torch_dtype": "float32",
            "use_cache": False, "vocab_size": vocab_size or len(tokenizer),
        }
        module = LayerwiseMiniCPMReranker(SimpleNamespace(**config))
        with torch.no_grad():
            module.model.embed_tokens.weight.mul_(0.1)
        _save_native(module, config, out, noise=0.1, norm_base=1.0)
    else:
        from types import SimpleNamespace

        from .core.native import LightweightGemma2Reranker

        tokenizer = _llm_tokenizer("right", "<bos>", "<eos>", "<pad>")
        head_dim = hidden_size // heads
        config = {
            "architectures": ["CostWiseGemmaForCausalLM"],
            "auto_map": {"AutoConfig": "gemma_config.CostWiseGemmaConfig",
                         "AutoModelForCausalLM": "gemma_model.CostWiseGemmaForCausalLM"},
            "model_type": "cost_wise_gemma", "attention_bias": False, "attention_dropout": 0.0,
            "attn_logit_softcapping": 50.0, "bos_token_id": tokenizer.bos_token_id,
            "cache_implementation": "hybrid", "eos_token_id": tokenizer.eos_token_id,
            "final_logit_softcapping": 30.0, "head_dim": head_dim,
            "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": hidden_size, "initializer_range": 0.02, "intermediate_size": inter,
            "layer_sep": 1, "layer_wise": True, "max_position_embeddings": 8192,
            "num_attention_heads": heads, "num_hidden_layers": layers,
            "num_key_value_heads": max(1, heads // 2), "pad_token_id": tokenizer.pad_token_id,
            "query_pre_attn_scalar": head_dim, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
            "sliding_window": 16, "sliding_window_size": 16, "start_layer": 2,
            "torch_dtype": "float32", "use_cache": False,
            "vocab_size": vocab_size or len(tokenizer),
        }
        module = LightweightGemma2Reranker(SimpleNamespace(**config))
        _save_native(module, config, out, noise=0.1, norm_base=0.0)
    tokenizer.save_pretrained(out)
    _portable_tokenizer(out)
    return out
