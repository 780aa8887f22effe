"""Registry: every FlagEmbedding 1.4.2 model known, lookup rules, overrides, user models."""

from __future__ import annotations

import pytest

from bge_integrations import Family, ModelSpec, Pooling, get_spec, list_models, register_model
from bge_integrations.core.registry import EN_INSTRUCTION, ZH_INSTRUCTION, find_spec, resolve_spec

# AUTO_EMBEDDER_MAPPING keys of FlagEmbedding 1.4.2 with (pooling, model class, remote code,
# query_instruction_format), copied from FlagEmbedding/inference/embedder/model_mapping.py.
FLAG_MAPPING = {
    "bge-reasoner-embed-qwen3-8b-0923": ("last_token", "decoder", False, "Instruct: {}\nQuery: {}"),
    "bge-code-v1": ("last_token", "decoder", True, "<instruct>{}\n<query>{}"),
    "bge-en-icl": ("last_token", "icl", False, "<instruct>{}\n<query>{}"),
    "bge-multilingual-gemma2": ("last_token", "decoder", False, "<instruct>{}\n<query>{}"),
    "bge-m3": ("cls", "m3", False, "{}{}"),
    **{f"bge-{s}-{lang}{v}": ("cls", "encoder", False, "{}{}")
       for s in ("small", "base", "large") for lang in ("en", "zh") for v in ("", "-v1.5")},
    **{f"Qwen3-Embedding-{s}": ("last_token", "decoder", False, "Instruct: {}\nQuery:{}")
       for s in ("0.6B", "4B", "8B")},
    "e5-mistral-7b-instruct": ("last_token", "decoder", False, "Instruct: {}\nQuery: {}"),
    **{f"e5-{s}{v}": ("mean", "encoder", False, "{}{}")
       for s in ("small", "base", "large") for v in ("", "-v2")},
    "multilingual-e5-large-instruct": ("mean", "encoder", False, "Instruct: {}\nQuery: {}"),
    **{f"multilingual-e5-{s}": ("mean", "encoder", False, "{}{}")
       for s in ("small", "base", "large")},
    "gte-Qwen2-7B-instruct": ("last_token", "decoder", True, "Instruct: {}\nQuery: {}"),
    "gte-Qwen2-1.5B-instruct": ("last_token", "decoder", True, "Instruct: {}\nQuery: {}"),
    "gte-Qwen1.5-7B-instruct": ("last_token", "decoder", True, "Instruct: {}\nQuery: {}"),
    "gte-multilingual-base": ("cls", "encoder", True, "{}{}"),
    "gte-large-en-v1.5": ("cls", "encoder", True, "{}{}"),
    "gte-base-en-v1.5": ("cls", "encoder", True, "{}{}"),
    **{f"gte-{s}": ("mean", "encoder", False, "{}{}") for s in ("small", "base", "large")},
    **{f"gte-{s}-zh": ("cls", "encoder", False, "{}{}") for s in ("small", "base", "large")},
    "SFR-Embedding-2_R": ("last_token", "decoder", False, "Instruct: {}\nQuery: {}"),
    "SFR-Embedding-Mistral": ("last_token", "decoder", False, "Instruct: {}\nQuery: {}"),
    "Linq-Embed-Mistral": ("last_token", "decoder", False, "Instruct: {}\nQuery: {}"),
    "bce-embedding-base_v1": ("cls", "encoder", False, "{}{}"),
}


@pytest.mark.parametrize("name", sorted(FLAG_MAPPING))
def test_every_flagembedding_model_is_known_with_its_settings(name: str) -> None:
    pooling, family, remote, fmt = FLAG_MAPPING[name]
    spec = get_spec(name)
    assert spec.pooling.value == pooling
    assert spec.family.value == family
    assert spec.trust_remote_code is remote
    assert spec.query_instruction_format == fmt


def test_bge_instructions_are_the_published_ones() -> None:
    assert get_spec("BAAI/bge-base-en-v1.5").query_instruction == (
        "Represent this sentence for searching relevant passages: ")
    assert EN_INSTRUCTION == "Represent this sentence for searching relevant passages: "
    assert get_spec("BAAI/bge-large-zh-v1.5").query_instruction == ZH_INSTRUCTION
    assert ZH_INSTRUCTION == "为这个句子生成表示以用于检索相关文章："
    assert get_spec("BAAI/bge-m3").query_instruction is None
    assert get_spec("BAAI/bge-m3").max_length == 8192
    assert get_spec("intfloat/e5-base-v2").passage_prefix == "passage: "


def test_lookup_by_hub_id_basename_and_case() -> None:
    spec = get_spec("BAAI/bge-small-en-v1.5")
    assert get_spec("baai/BGE-SMALL-EN-V1.5") is spec
    assert get_spec("/models/checkpoints/bge-small-en-v1.5") is spec
    assert get_spec("/models/checkpoints/bge-small-en-v1.5/") is spec
    assert find_spec("nobody/unknown-model") is None


def test_unknown_model_without_pooling_says_how_to_fix_it() -> None:
    with pytest.raises(KeyError, match="pooling=") as info:
        resolve_spec("/tmp/some-unknown-model")
    assert "register_model" in str(info.value)


def test_unknown_model_with_pooling_gets_a_spec() -> None:
    spec = resolve_spec("/tmp/some-unknown-model", pooling="mean")
    assert spec.pooling is Pooling.MEAN and spec.family is Family.ENCODER
    assert spec.query_instruction is None


def test_explicit_arguments_win_over_the_table() -> None:
    spec = resolve_spec("BAAI/bge-base-en-v1.5", pooling="mean", query_instruction="Q: ",
                        query_instruction_format="{}>>{}")
    assert (spec.pooling, spec.query_instruction, spec.query_instruction_format) == (
        Pooling.MEAN, "Q: ", "{}>>{}")
    assert resolve_spec("BAAI/bge-base-en-v1.5", query_instruction="").query_instruction is None
    assert get_spec("BAAI/bge-base-en-v1.5").pooling is Pooling.CLS  # table unchanged


def test_register_model_rejects_duplicates_and_accepts_overwrite() -> None:
    spec = ModelSpec("acme/test-registry-model", pooling="mean", dim=8)
    register_model(spec, overwrite=True)
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)
    assert get_spec("test-registry-model") is spec
    assert spec in list_models()
    replaced = register_model(spec.replace(dim=16), overwrite=True)
    assert get_spec("acme/test-registry-model").dim == 16 and replaced.dim == 16
    with pytest.raises(TypeError, match="ModelSpec"):
        register_model({"name": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pooling": "max"}, "valid values: 'cls', 'mean', 'last_token'"),
    ({"family": "seq2seq"}, "Unknown family"),
    ({"query_instruction_format": "{}"}, "exactly two"),
    ({"dim": 0}, "dim must be positive"),
    ({"family": "decoder", "pooling": "cls"}, "last_token"),
])
def test_model_spec_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelSpec("acme/bad", **kwargs)


def test_escaped_newlines_in_formats_are_real_newlines() -> None:
    spec = ModelSpec("acme/nl", pooling="mean", query_instruction_format="I: {}\\nQ: {}")
    assert spec.query_instruction_format == "I: {}\nQ: {}"
