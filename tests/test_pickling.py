"""Core embedders and every embedding adapter pickle to their configuration, never the weights;
retrievers refuse with a TypeError that points to the index's save / load."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import adapter_outputs, assert_outputs_close

from bge_integrations import BGEEmbedder, BGEM3Embedder, HybridIndex, ModelSpec, register_model
from bge_integrations.langchain import BGEEmbeddings, BGEM3SparseEmbeddings
from bge_integrations.langchain import BGEM3Retriever as LangChainRetriever
from bge_integrations.llama_index import BGEEmbedding, BGEM3SparseEmbedding
from bge_integrations.llama_index import BGEM3Retriever as LlamaIndexRetriever

#: every picklable object kind: (name, factory(tiny_bert, tiny_m3))
FACTORIES: list[tuple[str, Callable[[str, str], Any]]] = [
    ("BGEEmbedder", lambda bert, m3: BGEEmbedder(bert, device="cpu", batch_size=3)),
    ("BGEM3Embedder", lambda bert, m3: BGEM3Embedder(m3, device="cpu", query_max_length=64)),
    ("langchain.BGEEmbeddings",
     lambda bert, m3: BGEEmbeddings(model_name=bert, device="cpu", query_instruction="Q: ")),
    ("langchain.BGEM3SparseEmbeddings",
     lambda bert, m3: BGEM3SparseEmbeddings(model_name=m3, device="cpu", batch_size=5)),
    ("llama_index.BGEEmbedding",
     lambda bert, m3: BGEEmbedding(model_name=bert, device="cpu", normalize=False,
                                   embed_batch_size=7)),
    ("llama_index.BGEM3SparseEmbedding",
     lambda bert, m3: BGEM3SparseEmbedding(model_name=m3, device="cpu", passage_max_length=32)),
]


@pytest.fixture(scope="module")
def objects(tiny_bert: str, tiny_m3: str) -> dict[str, Any]:
    return {name: make(tiny_bert, tiny_m3) for name, make in FACTORIES}


def _settings(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "configuration"):
        return obj.configuration()
    return {"model": obj.model_name, "normalize": obj.normalize,
            "query_max_length": obj.query_max_length,
            "passage_max_length": obj.passage_max_length, "spec": obj.spec}


def _weights_of(obj: Any) -> Any:
    """The loaded model's tokenizer: the same object exactly when the model cache shared it."""
    return getattr(obj, "embedder", obj).tokenizer


@pytest.mark.parametrize("name", [name for name, _ in FACTORIES])
def test_pickle_carries_configuration_not_weights(objects: dict[str, Any], name: str) -> None:
    obj = objects[name]
    data = pickle.dumps(obj)
    assert len(data) < 20_000  # the tiny model's weights alone are ~400 kB
    restored = pickle.loads(data)
    assert type(restored) is type(obj) and restored is not obj
    assert _settings(restored) == _settings(obj)
    assert _weights_of(restored) is _weights_of(obj)  # same process: the model cache's copy
    assert_outputs_close(adapter_outputs(restored), adapter_outputs(obj))


@pytest.mark.parametrize("name", [name for name, _ in FACTORIES])
def test_deepcopy_is_a_new_object_on_the_cached_weights(objects: dict[str, Any],
                                                        name: str) -> None:
    obj = objects[name]
    copied = copy.deepcopy(obj)
    assert copied is not obj and _settings(copied) == _settings(obj)
    assert _weights_of(copied) is _weights_of(obj)
    assert_outputs_close(adapter_outputs(copied), adapter_outputs(obj))


def test_pickle_keeps_settings_changed_after_construction(tiny_bert: str, tiny_icl: str) -> None:
    core = BGEEmbedder(tiny_bert, device="cpu")
    core.normalize = False
    restored = pickle.loads(pickle.dumps(core))
    assert restored.normalize is False
    assert_outputs_close(adapter_outputs(restored), adapter_outputs(core))
    icl = BGEEmbedder(tiny_icl, device="cpu")
    icl.set_examples([{"instruct": "Find it.", "query": "a", "response": "b"}])
    copied = copy.deepcopy(icl)
    assert_outputs_close(adapter_outputs(copied), adapter_outputs(icl))
    adapter = BGEEmbeddings(model_name=tiny_bert, device="cpu")
    adapter.query_instruction = ""
    assert pickle.loads(pickle.dumps(adapter)).query_instruction == ""


def test_spawned_worker_rebuilds_each_object_from_the_model_files(
        objects: dict[str, Any], tiny_bert: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``spawn`` pool (no memory shared with this process, no hub) gets every object by
    pickle and computes what it computes here, also on a model only this process registered
    (the pickle carries its registry row)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    custom = tmp_path / "pickle-custom-tiny"
    shutil.copytree(tiny_bert, custom)
    register_model(ModelSpec("acme/pickle-custom-tiny", pooling="mean",
                             query_instruction="custom: "), overwrite=True)
    objects = {**objects, "registered BGEEmbedder": BGEEmbedder(str(custom), device="cpu"),
               "registered BGEEmbeddings": BGEEmbeddings(model_name=str(custom), device="cpu")}
    expected = {name: adapter_outputs(obj) for name, obj in objects.items()}
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(adapter_outputs, list(objects.values()), chunksize=len(objects))
    for name, result in zip(objects, got, strict=True):
        assert_outputs_close(result, expected[name])


def test_retrievers_refuse_with_save_load_advice(m3: BGEM3Embedder) -> None:
    index = HybridIndex(m3)
    index.add(["a text", "another text"], ids=["a", "b"])
    for retriever in (LangChainRetriever(index=index, k=1),
                      LlamaIndexRetriever(index, similarity_top_k=1)):
        for action in (pickle.dumps, copy.deepcopy):
            with pytest.raises(TypeError, match=r"index\.save\(path\).*HybridIndex\.load"):
                action(retriever)
        shallow = copy.copy(retriever)
        assert shallow is not retriever and shallow.index is index
    with pytest.raises(TypeError, match="save"):
        LangChainRetriever(index=index).model_copy(deep=True)
    assert LangChainRetriever(index=index).model_copy(update={"k": 2}).index is index
