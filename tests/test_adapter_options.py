"""Adapter options: named as the core's keywords, and a change after construction takes effect
(assignment and ``model_copy(update=...)`` rebuild the core object) or changes nothing."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
from helpers import SAMPLE_TEXTS, adapter_outputs, assert_close, assert_outputs_close
from langchain_core.embeddings import Embeddings
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding
from pydantic import BaseModel, ValidationError

from bge_integrations import BGEEmbedder, BGEM3Embedder, HybridIndex
from bge_integrations.adapter_options import EmbedderOptions, M3Options
from bge_integrations.client.options import CLIENT_FIELDS
from bge_integrations.langchain import BGEEmbeddings, BGEM3SparseEmbeddings
from bge_integrations.langchain import BGEM3Retriever as LangChainRetriever
from bge_integrations.llama_index import BGEEmbedding, BGEM3SparseEmbedding
from bge_integrations.llama_index import BGEM3Retriever as LlamaIndexRetriever

DENSE = [BGEEmbeddings, BGEEmbedding]
SPARSE = [BGEM3SparseEmbeddings, BGEM3SparseEmbedding]
#: fields an adapter inherits from its framework's base class (not core options)
FRAMEWORK_BASES: dict[type, type] = {BGEEmbeddings: Embeddings, BGEEmbedding: BaseEmbedding,
                                     BGEM3SparseEmbeddings: Embeddings,
                                     BGEM3SparseEmbedding: BaseSparseEmbedding}


def _core_keywords(core: type) -> set[str]:
    params = inspect.signature(core.__init__).parameters
    return {name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_option_fields_are_the_core_keywords() -> None:
    # client mode's fields (base_url, ...) configure the connection, not the core object
    assert set(EmbedderOptions.model_fields) - set(CLIENT_FIELDS) == _core_keywords(BGEEmbedder)
    assert set(M3Options.model_fields) - set(CLIENT_FIELDS) == _core_keywords(BGEM3Embedder)
    for adapter, framework in FRAMEWORK_BASES.items():
        options = EmbedderOptions if adapter in DENSE else M3Options
        framework_fields = set(framework.model_fields) if issubclass(framework, BaseModel) \
            else set()
        # every option, and nothing else but the framework's fields and model_name
        assert set(options.model_fields) <= set(adapter.model_fields), adapter.__name__
        extra = set(adapter.model_fields) - set(options.model_fields)
        assert extra <= framework_fields | {"model_name"}, adapter.__name__
        core = BGEEmbedder if adapter in DENSE else BGEM3Embedder
        for name, field in options.model_fields.items():  # ours win, with the core's defaults
            if name in CLIENT_FIELDS:
                continue
            default = inspect.signature(core).parameters[name].default
            assert adapter.model_fields[name].description == field.description, name
            assert adapter.model_fields[name].default == default == field.default, name
    retriever_options = set(inspect.signature(LlamaIndexRetriever.__init__).parameters)
    assert not retriever_options & set(M3Options.model_fields)  # from_nodes splits by name
    assert not set(LangChainRetriever.model_fields) & set(M3Options.model_fields)


@pytest.fixture(scope="module", params=DENSE + SPARSE, ids=lambda c: c.__name__)
def adapter(request: pytest.FixtureRequest, tiny_bert: str, tiny_m3: str) -> Any:
    model = tiny_bert if request.param in DENSE else tiny_m3
    return request.param(model_name=model, device="cpu")


def _fresh(adapter: Any, **changes: Any) -> Any:
    return type(adapter)(**{**adapter.configuration(), **changes})


def test_assignment_takes_effect(adapter: Any) -> None:
    adapter.normalize = False
    try:
        assert adapter.embedder.normalize is False
        if type(adapter) in DENSE:
            norms = np.linalg.norm(adapter_outputs(adapter)["document"], axis=1)
            assert not np.allclose(norms, 1.0, rtol=1e-3)
        assert_outputs_close(adapter_outputs(adapter), adapter_outputs(_fresh(adapter)))
        adapter.passage_max_length = 3
        assert adapter.embedder.passage_max_length == 3
        assert_outputs_close(adapter_outputs(adapter), adapter_outputs(_fresh(adapter)))
    finally:
        adapter.normalize, adapter.passage_max_length = True, None


def test_model_copy_update_takes_effect_in_the_copy_only(adapter: Any) -> None:
    before = adapter_outputs(adapter)
    copied = adapter.model_copy(update={"query_max_length": 2, "batch_size": 1})
    assert copied.embedder.query_max_length == 2 and copied.batch_size == 1
    assert adapter.embedder.query_max_length != 2 and adapter.batch_size != 1
    assert_outputs_close(adapter_outputs(copied), adapter_outputs(_fresh(copied)))
    assert_outputs_close(adapter_outputs(adapter), before)
    assert adapter.model_copy().embedder is adapter.embedder  # nothing changed: shared


def test_query_instruction_change_takes_effect(tiny_bert: str) -> None:
    for cls in DENSE:
        emb = cls(model_name=tiny_bert, device="cpu")
        plain = emb.model_copy(update={"query_instruction": ""})
        out = adapter_outputs(plain)
        assert_close(out["query"], out["document"])  # no instruction: queries are documents
        with_instruction = adapter_outputs(emb)
        assert not np.allclose(with_instruction["query"], with_instruction["document"],
                               atol=1e-3)
        emb.query_instruction = ""
        assert_close(adapter_outputs(emb)["query"], out["query"])


def test_rejected_change_changes_nothing(adapter: Any, tiny_dir: Any) -> None:
    before = adapter.configuration()
    core = adapter.embedder
    with pytest.raises(ValidationError, match="batch_size"):
        adapter.batch_size = 0
    with pytest.raises(ValidationError, match="unknown_option"):
        adapter.model_copy(update={"unknown_option": 1})
    with pytest.raises((OSError, ValueError, KeyError)):  # not a model: the rebuild fails
        adapter.model_name = str(tiny_dir)
    assert adapter.configuration() == before and adapter.embedder is core


def test_retriever_settings_take_effect(m3: BGEM3Embedder) -> None:
    index = HybridIndex(m3, store_colbert=False)
    index.add(SAMPLE_TEXTS + ["a third text"], ids=["a", "b", "c"])
    lc = LangChainRetriever(index=index, k=3)
    lc.k, lc.mode = 1, "sparse"
    docs = lc.invoke(SAMPLE_TEXTS[0])
    assert len(docs) == 1 and set(docs[0].metadata["bge_m3_scores"]) == {"sparse"}
    with pytest.raises(ValidationError, match="store_colbert"):
        lc.mode = "colbert"
    with pytest.raises(ValidationError, match="store_colbert"):
        lc.model_copy(update={"mode": "colbert"})
    assert lc.mode == "sparse" and lc.k == 1  # the rejected values changed nothing
    li = LlamaIndexRetriever(index, similarity_top_k=3)
    li.similarity_top_k, li.mode = 2, "dense"
    nodes = li.retrieve(SAMPLE_TEXTS[0])
    assert [n.node.node_id for n in nodes] == [h.id for h in index.search(
        SAMPLE_TEXTS[0], k=2, mode="dense")]
    assert isinstance(li, BaseRetriever)
