"""What a checkpoint directory says about itself: its config, its name, its length limits.

Read from the files only (``config.json``, ``sentence_bert_config.json``,
``tokenizer_config.json``), before or without loading the weights, so every backend gets the
same answers.

Example:
    >>> from bge_integrations.core.checkpoint import position_limit
    >>> position_limit({"model_type": "xlm-roberta", "max_position_embeddings": 514,
    ...                 "pad_token_id": 1})
    512
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .resolve import ModelNotFoundError

__all__ = ["read_config", "recorded_name", "own_max_length", "position_limit",
           "check_length", "resolve_lengths"]

#: model types whose learned positions start after the padding index (RoBERTa's offset)
_PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert",
                                   "mpnet", "longformer", "data2vec-text", "roberta-prelayernorm"})
#: config keys of rotary / relative schemes, whose position count is not a hard limit
_UNBOUNDED_POSITION_KEYS = ("rope_theta", "rope_scaling", "rope_parameters", "global_rope_theta",
                            "rotary_emb_base", "alibi")
#: tokenizers without a limit record transformers' VERY_LARGE_INTEGER (1e30) or similar
_UNSET_LENGTH = 1_000_000
#: a config.json larger than this is not a model configuration
_MAX_CONFIG_BYTES = 4 * 1024 * 1024
_HUB_CACHE_DIR = re.compile(r"^models--([^/]+?)--([^/]+)$")


def _json_file(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        msg = f"{str(path)!r} is over {_MAX_CONFIG_BYTES} bytes; it is not a model config file."
        raise ValueError(msg)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        msg = f"{str(path)!r} is not valid JSON ({type(exc).__name__}); replace the file."
        raise ValueError(msg) from None
    return data if isinstance(data, dict) else None


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict.

    Raises:
        ModelNotFoundError: the directory holds no ``config.json`` (it is not a model).
        ValueError: the file is not a JSON object.
    """
    path = Path(model_dir) / "config.json"
    config = _json_file(path)
    if config is None:
        msg = (f"no config.json in {str(model_dir)!r}: it is not a model directory. A model "
               "folder holds config.json, the weights (model.safetensors) and the tokenizer "
               "files; pass that folder, or a hub id such as 'BAAI/bge-small-en-v1.5'.")
        raise ModelNotFoundError(msg)
    return config


def recorded_name(model_dir: str | Path) -> str | None:
    """The hub id a local copy records about itself, if any.

    Two records are read: a Hugging Face cache snapshot path
    (``.../models--BAAI--bge-m3/snapshots/<commit>``) and the ``_name_or_path`` that
    ``save_pretrained`` of transformers 4.x wrote into ``config.json`` (the id it was loaded
    from). Either gives a name for the registry; the caller decides whether it is known.
    """
    path = Path(model_dir).resolve()
    for part in path.parts:
        match = _HUB_CACHE_DIR.match(part)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    name = read_config(path).get("_name_or_path")
    if isinstance(name, str) and name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return name.strip()
    return None


def own_max_length(model_dir: str | Path) -> int | None:
    """The length the checkpoint's authors set: ``sentence_bert_config.json``'s
    ``max_seq_length``, else the tokenizer's ``model_max_length``; ``None`` when neither is set.
    """
    for file, key in (("sentence_bert_config.json", "max_seq_length"),
                      ("tokenizer_config.json", "model_max_length")):
        value = (_json_file(Path(model_dir) / file) or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and (
                0 < value < _UNSET_LENGTH):
            return int(value)
    return None


def position_limit(config: dict[str, Any]) -> int | None:
    """Most tokens the model's learned position table can take; ``None`` when unbounded.

    ``max_position_embeddings``, less ``pad_token_id + 1`` for RoBERTa-style models (their
    positions start after the padding index: XLM-R's 514 positions hold 512 tokens). Rotary
    and other relative schemes are not bounded by it.
    """
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return None
    if any(key in config for key in _UNBOUNDED_POSITION_KEYS):
        return None
    if config.get("position_embedding_type", "absolute") != "absolute":
        return None
    if config.get("model_type") in _PADDING_OFFSET_TYPES:
        pad = config.get("pad_token_id")
        positions -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    return positions if positions > 0 else None


def check_length(name: str, value: int, limit: int | None, model_dir: str | Path) -> int:
    """``value`` if the model's positions can take it, else a ``ValueError`` saying the limit."""
    if limit is not None and value > limit:
        msg = (f"{name}={value} exceeds what {str(model_dir)!r} can take: {limit} tokens "
               f"(its position table); pass {name}={limit} or less.")
        raise ValueError(msg)
    return value


def resolve_lengths(model_dir: str | Path, registry_length: int | None,
                    query_max_length: int | None, passage_max_length: int | None
                    ) -> tuple[int, int, int | None]:
    """``(query_max_length, passage_max_length, position limit)`` for a checkpoint.

    Defaults: the registry's ``max_length``, else the checkpoint's own (:func:`own_max_length`),
    else 512; queries at most 512. Defaults are cut to the model's positions
    (:func:`position_limit`); explicit values beyond them are an error.

    Raises:
        ValueError: an explicit length exceeds the position limit.
    """
    limit = position_limit(read_config(model_dir))
    default = registry_length or own_max_length(model_dir) or 512
    if limit is not None:
        default = min(default, limit)
    query = min(512, default) if query_max_length is None else check_length(
        "query_max_length", query_max_length, limit, model_dir)
    passage = default if passage_max_length is None else check_length(
        "passage_max_length", passage_max_length, limit, model_dir)
    return query, passage, limit
