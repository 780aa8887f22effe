"""BGEEmbeddings: langchain-tests standard suites, parity with the core, bad input, async."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_close
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from loop_ticks import ticks_during
from pydantic import ValidationError

from bge_integrations import BGEEmbedder
from bge_integrations.core.registry import EN_INSTRUCTION
from bge_integrations.langchain import BGEEmbeddings

QUERY = "what is a panda?"
DOCS = [
    "The giant panda is a bear species endemic to China.",
    "Paris is the capital of France.",
    "Python is a programming language.",
]


class _TinyBertParams:
    """Standard-suite parameters: the tiny BGE v1.5-shaped checkpoint on CPU."""

    @pytest.fixture(autouse=True)
    def _checkpoint(self, tiny_bert: str) -> None:
        self.checkpoint = tiny_bert

    @property
    def embeddings_class(self) -> type[BGEEmbeddings]:
        return BGEEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model_name": self.checkpoint, "device": "cpu"}


class _MiniLMParams(_TinyBertParams):
    """Standard-suite parameters: the real all-MiniLM-L6-v2 with mean pooling."""

    @pytest.fixture(autouse=True)
    def _checkpoint(self, minilm_dir: str) -> None:
        self.checkpoint = minilm_dir

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": self.checkpoint, "pooling": "mean", "device": "cpu"}


class TestTinyBertUnit(_TinyBertParams, EmbeddingsUnitTests):
    pass


class TestTinyBertIntegration(_TinyBertParams, EmbeddingsIntegrationTests):
    pass


class TestMiniLMUnit(_MiniLMParams, EmbeddingsUnitTests):
    pass


class TestMiniLMIntegration(_MiniLMParams, EmbeddingsIntegrationTests):
    pass


@pytest.fixture(scope="module")
def emb(tiny_bert: str) -> BGEEmbeddings:
    return BGEEmbeddings(model_name=tiny_bert, device="cpu")


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BGEEmbeddings:
    return BGEEmbeddings(model_name=minilm_dir, pooling="mean", device="cpu")


def test_vectors_equal_core(emb: BGEEmbeddings, bert_embedder: BGEEmbedder) -> None:
    assert_close(emb.embed_documents(DOCS), bert_embedder.encode_documents(DOCS))
    assert_close(emb.embed_query(QUERY), bert_embedder.encode_queries([QUERY])[0])


def test_english_instruction_on_queries_only(emb: BGEEmbeddings,
                                             bert_embedder: BGEEmbedder) -> None:
    assert emb.embedder.spec.query_instruction == EN_INSTRUCTION
    assert_close(emb.embed_query(QUERY),
                               bert_embedder.encode([EN_INSTRUCTION + QUERY])[0])
    assert_close(emb.embed_documents([QUERY])[0], bert_embedder.encode([QUERY])[0])


def test_instruction_override_and_disable(tiny_bert: str, bert_embedder: BGEEmbedder) -> None:
    custom = BGEEmbeddings(model_name=tiny_bert, device="cpu", query_instruction="Query: ")
    none = BGEEmbeddings(model_name=tiny_bert, device="cpu", query_instruction="")
    assert_close(custom.embed_query(QUERY),
                               bert_embedder.encode(["Query: " + QUERY])[0])
    assert_close(none.embed_query(QUERY), bert_embedder.encode([QUERY])[0])


def test_bge_m3_has_no_query_instruction(tiny_m3: str, m3: Any) -> None:
    dense = BGEEmbeddings(model_name=tiny_m3, device="cpu")
    assert dense.embedder.spec.query_instruction is None
    assert dense.embedder.spec.pooling.value == "cls"
    assert_close(dense.embed_query(QUERY), dense.embed_documents([QUERY])[0])
    assert_close(dense.embed_query(QUERY), m3.encode_queries([QUERY]).dense[0])


def test_icl_examples_reach_the_core(tiny_icl: str) -> None:
    examples = [{"instruct": "Find the animal.", "query": "black and white bear",
                 "response": "The giant panda."}]
    emb = BGEEmbeddings(model_name=tiny_icl, device="cpu", examples=examples)
    core = BGEEmbedder(tiny_icl, device="cpu", examples=examples)
    assert emb.embedder.spec.pooling.value == "last_token"
    assert_close(emb.embed_query(QUERY), core.encode_queries([QUERY])[0])
    assert not np.allclose(emb.embed_query(QUERY),
                           BGEEmbeddings(model_name=tiny_icl, device="cpu").embed_query(QUERY))


def test_minilm_mean_pooling_equals_core(minilm: BGEEmbeddings, minilm_dir: str) -> None:
    core = BGEEmbedder(minilm_dir, pooling="mean", device="cpu")
    assert_close(minilm.embed_documents(DOCS), core.encode_documents(DOCS))


def test_plain_floats_and_normalized(emb: BGEEmbeddings) -> None:
    docs = emb.embed_documents(DOCS)
    query = emb.embed_query(QUERY)
    assert all(type(x) is float for row in [*docs, query] for x in row)
    np.testing.assert_allclose(np.linalg.norm([*docs, query], axis=1), 1.0, atol=1e-5)


def test_normalize_false_is_passed_through(tiny_bert: str) -> None:
    raw = BGEEmbeddings(model_name=tiny_bert, device="cpu", normalize=False)
    assert abs(np.linalg.norm(raw.embed_query(QUERY)) - 1.0) > 1e-3


def test_shares_weights_with_core(emb: BGEEmbeddings, bert_embedder: BGEEmbedder) -> None:
    other = BGEEmbeddings(model_name=emb.model_name, device="cpu", batch_size=2)
    assert emb.embedder.tokenizer is bert_embedder.tokenizer
    assert other.embedder.tokenizer is bert_embedder.tokenizer


def test_fields_alias_and_forbid_extra(tiny_bert: str) -> None:
    emb = BGEEmbeddings(model=tiny_bert, device="cpu", batch_size=8)
    assert emb.model_name == tiny_bert
    assert emb.batch_size == 8
    with pytest.raises(ValidationError, match="devices"):
        BGEEmbeddings(model_name=tiny_bert, devices="cpu")
    with pytest.raises(ValidationError, match="pooling"):
        BGEEmbeddings(model_name=tiny_bert, pooling="max")
    with pytest.raises(ValidationError, match="batch_size"):
        BGEEmbeddings(model_name=tiny_bert, batch_size=0)


def test_empty_and_bad_input(emb: BGEEmbeddings) -> None:
    assert emb.embed_documents([]) == []
    with pytest.raises(TypeError, match=r"documents\[1\] must be a str"):
        emb.embed_documents(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="single str"):
        emb.embed_documents("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a str"):
        emb.embed_query(None)  # type: ignore[arg-type]


def test_missing_model_error_names_model_and_reason(tmp_path: Path) -> None:
    missing = str(tmp_path / "gone" / "bge-small-en-v1.5")
    with pytest.raises(OSError, match="does not exist") as info:
        BGEEmbeddings(model_name=missing, device="cpu")
    assert missing in str(info.value)
    broken = tmp_path / "bge-base-en-v1.5"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(OSError, match="not a valid JSON") as info:
        BGEEmbeddings(model_name=str(broken), device="cpu")
    assert str(broken) in str(info.value)


async def test_async_matches_sync(emb: BGEEmbeddings) -> None:
    assert await emb.aembed_documents(DOCS) == emb.embed_documents(DOCS)
    assert await emb.aembed_query(QUERY) == emb.embed_query(QUERY)


async def test_async_does_not_block_the_event_loop(emb: BGEEmbeddings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real = emb.embedder.encode_documents
    worker: list[threading.Thread] = []

    def slow_encode(texts: list[str]) -> np.ndarray:
        worker.append(threading.current_thread())
        time.sleep(0.5)
        return real(texts)

    monkeypatch.setattr(emb.embedder, "encode_documents", slow_encode)
    vectors, ticks = await ticks_during(emb.aembed_documents(DOCS))
    assert len(vectors) == len(DOCS)
    assert worker[0] is not threading.main_thread()
    assert ticks >= 10, f"event loop ran only {ticks} ticks during a 0.5 s embedding"


def test_in_memory_vector_store(minilm: BGEEmbeddings) -> None:
    docs = [Document(page_content=t, metadata={"i": i}, id=f"d{i}") for i, t in enumerate(DOCS)]
    store = InMemoryVectorStore(embedding=minilm)
    assert store.add_documents(docs) == ["d0", "d1", "d2"]
    hits = store.similarity_search_with_score(QUERY, k=2)
    assert [d.id for d, _ in hits][0] == "d0"
    assert hits[0][0].metadata == {"i": 0}
    assert store.store["d0"]["vector"] == minilm.embed_documents(DOCS[:1])[0]
    assert hits[0][1] == pytest.approx(float(np.dot(minilm.embed_query(QUERY),
                                                    store.store["d0"]["vector"])), abs=1e-5)
    assert store.similarity_search("capital city of France", k=1)[0].id == "d1"


def test_missing_langchain_core_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("bge_integrations.langchain")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain_core", None)
    with pytest.raises(ImportError, match=r"pip install bge-integrations\[langchain\]"):
        importlib.import_module("bge_integrations.langchain")
