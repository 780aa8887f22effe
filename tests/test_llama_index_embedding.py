"""BGEEmbedding: LlamaIndex's BaseEmbedding contract on top of the core BGEEmbedder."""

from __future__ import annotations

import asyncio
import copy
import pickle
import time

import numpy as np
import pytest
from helpers import assert_close

pytest.importorskip("llama_index.core")

from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler  # noqa: E402
from llama_index.core.callbacks.schema import EventPayload  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.instrumentation.events.embedding import (  # noqa: E402
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.schema import MetadataMode, TextNode  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from bge_integrations import BGEEmbedder  # noqa: E402
from bge_integrations.core.registry import EN_INSTRUCTION  # noqa: E402
from bge_integrations.llama_index import BGEEmbedding  # noqa: E402
from bge_integrations.tiny_models import TINY_CORPUS  # noqa: E402

TEXTS = TINY_CORPUS[:12]
QUERIES = ["what is BGE?", "capital of France", "fast vector search"]
ICL_EXAMPLES = [{"instruct": "Given a question, retrieve passages that answer it.",
                 "query": "what is a panda?", "response": "The giant panda is a bear."}]


class _Recorder(BaseEventHandler):
    """Collects instrumentation events (attached to the root dispatcher for one test)."""

    events: list = []

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: object) -> None:
        self.events.append(event)


@pytest.fixture
def recorder():
    root = get_dispatcher()
    handler = _Recorder(events=[])
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


@pytest.fixture(scope="module")
def bert(tiny_bert: str) -> BGEEmbedding:
    return BGEEmbedding(model_name=tiny_bert, device="cpu")


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BGEEmbedding:
    return BGEEmbedding(model_name=minilm_dir, pooling="mean", device="cpu")


def _close(a: list[list[float]] | list[float], b: np.ndarray) -> None:
    assert_close(np.asarray(a, dtype=np.float32), b)


# -- parity with the core ------------------------------------------------------------------
@pytest.mark.parametrize("which", ["bert", "minilm"])
def test_vectors_equal_the_core(which: str, request: pytest.FixtureRequest) -> None:
    emb: BGEEmbedding = request.getfixturevalue(which)
    core = emb.embedder
    assert isinstance(core, BGEEmbedder)
    queries = [emb.get_query_embedding(q) for q in QUERIES]
    _close(queries, core.encode_queries(QUERIES))
    assert len(queries[0]) == core.dim
    documents = core.encode_documents(TEXTS)
    _close(emb.get_text_embedding(TEXTS[0]), documents[0])
    _close(emb.get_text_embedding_batch(TEXTS), documents)


def test_queries_get_the_instruction_documents_do_not(bert: BGEEmbedding,
                                                      bert_embedder: BGEEmbedder) -> None:
    assert bert.embedder.spec.query_instruction == EN_INSTRUCTION
    query = bert.get_query_embedding(QUERIES[0])
    _close(query, bert_embedder.encode([EN_INSTRUCTION + QUERIES[0]])[0])
    _close(bert.get_text_embedding(QUERIES[0]), bert_embedder.encode(QUERIES[:1])[0])
    assert not np.allclose(query, bert.get_text_embedding(QUERIES[0]), atol=1e-3)


def test_icl_queries_use_the_few_shot_prompt(tiny_icl: str) -> None:
    emb = BGEEmbedding(model_name=tiny_icl, device="cpu", examples=ICL_EXAMPLES)
    core = BGEEmbedder(tiny_icl, device="cpu", examples=ICL_EXAMPLES)
    plain = BGEEmbedder(tiny_icl, device="cpu")
    _close([emb.get_query_embedding(q) for q in QUERIES], core.encode_queries(QUERIES))
    assert not np.allclose(emb.get_query_embedding(QUERIES[0]),
                           plain.encode_queries(QUERIES[:1])[0], atol=1e-4)
    _close(emb.get_text_embedding_batch(TEXTS[:4]), core.encode_documents(TEXTS[:4]))


def test_core_options_are_forwarded(tiny_bert: str, bert_embedder: BGEEmbedder) -> None:
    emb = BGEEmbedding(model_name=tiny_bert, device="cpu", query_instruction="",
                       batch_size=3, passage_max_length=8, normalize=False)
    assert not emb.embedder.spec.query_instruction
    _close(emb.get_query_embedding(QUERIES[0]), emb.get_text_embedding(QUERIES[0]))
    reference = BGEEmbedder(tiny_bert, device="cpu", passage_max_length=8, normalize=False)
    _close(emb.get_text_embedding_batch(TEXTS), reference.encode_documents(TEXTS))
    assert emb.embedder._engine.batch_size == 3
    assert emb.embedder.tokenizer is bert_embedder.tokenizer  # one cached copy of the model


# -- batching ------------------------------------------------------------------------------
@pytest.mark.parametrize("embed_batch_size", [1, 10, len(TEXTS) + 5])
def test_embed_batch_size_chunks_the_calls(tiny_bert: str, bert_embedder: BGEEmbedder,
                                           embed_batch_size: int) -> None:
    handler = LlamaDebugHandler()
    emb = BGEEmbedding(model_name=tiny_bert, device="cpu", embed_batch_size=embed_batch_size,
                       callback_manager=CallbackManager([handler]))
    _close(emb.get_text_embedding_batch(TEXTS), bert_embedder.encode_documents(TEXTS))
    chunks = [end.payload[EventPayload.CHUNKS]
              for _, end in handler.get_event_pairs(CBEventType.EMBEDDING)]
    expected = [TEXTS[i:i + embed_batch_size] for i in range(0, len(TEXTS), embed_batch_size)]
    assert chunks == expected


async def test_async_batches_equal_sync(tiny_bert: str, bert_embedder: BGEEmbedder) -> None:
    handler = LlamaDebugHandler()
    emb = BGEEmbedding(model_name=tiny_bert, device="cpu", embed_batch_size=5,
                       callback_manager=CallbackManager([handler]))
    result = await emb.aget_text_embedding_batch(TEXTS)
    _close(result, bert_embedder.encode_documents(TEXTS))
    chunks = [end.payload[EventPayload.CHUNKS]
              for _, end in handler.get_event_pairs(CBEventType.EMBEDDING)]
    assert chunks == [TEXTS[:5], TEXTS[5:10], TEXTS[10:]]


# -- async ---------------------------------------------------------------------------------
async def test_async_equals_sync(bert: BGEEmbedding) -> None:
    assert await bert.aget_query_embedding(QUERIES[0]) == bert.get_query_embedding(QUERIES[0])
    assert await bert.aget_text_embedding(TEXTS[0]) == bert.get_text_embedding(TEXTS[0])
    _close(await bert.aget_text_embedding_batch(TEXTS),
           np.asarray(bert.get_text_embedding_batch(TEXTS), dtype=np.float32))
    assert await bert.aget_text_embedding_batch([]) == []


async def test_async_does_not_block_the_event_loop(tiny_bert: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    emb = BGEEmbedding(model_name=tiny_bert, device="cpu", embed_batch_size=4)
    for name in ("encode_queries", "encode_documents"):
        original = getattr(emb.embedder, name)

        def slow(texts: list[str], _original=original) -> np.ndarray:
            time.sleep(0.15)
            return _original(texts)

        monkeypatch.setattr(emb.embedder, name, slow)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        await emb.aget_query_embedding(QUERIES[0])
        await emb.aget_text_embedding(TEXTS[0])
        await emb.aget_text_embedding_batch(TEXTS)
    finally:
        done.set()
        await task
    assert ticks >= 10  # the loop kept running while the model worked in threads


# -- events --------------------------------------------------------------------------------
def test_callback_and_instrumentation_events_carry_chunks(tiny_bert: str,
                                                          recorder: _Recorder) -> None:
    handler = LlamaDebugHandler()
    emb = BGEEmbedding(model_name=tiny_bert, device="cpu", embed_batch_size=2,
                       callback_manager=CallbackManager([handler]))
    query = emb.get_query_embedding(QUERIES[0])
    emb.get_text_embedding_batch(TEXTS[:3])
    pairs = handler.get_event_pairs(CBEventType.EMBEDDING)
    assert [end.payload[EventPayload.CHUNKS] for _, end in pairs] == [
        QUERIES[:1], TEXTS[:2], TEXTS[2:3]]
    assert pairs[0][1].payload[EventPayload.EMBEDDINGS] == [query]
    assert pairs[0][0].payload[EventPayload.SERIALIZED]["class_name"] == "BGEEmbedding"
    starts = [e for e in recorder.events if isinstance(e, EmbeddingStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, EmbeddingEndEvent)]
    assert len(starts) == 3
    assert starts[0].model_dict["model_name"] == tiny_bert
    assert [e.chunks for e in ends] == [QUERIES[:1], TEXTS[:2], TEXTS[2:3]]


def test_transform_component_embeds_nodes(bert: BGEEmbedding) -> None:
    nodes = [TextNode(text=t, metadata={"n": i}) for i, t in enumerate(TEXTS[:3])]
    out = bert(nodes)
    contents = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    _close([n.embedding for n in out], bert.embedder.encode_documents(contents))


# -- serialization -------------------------------------------------------------------------
def test_to_dict_from_dict_round_trip(tiny_bert: str) -> None:
    emb = BGEEmbedding(model_name=tiny_bert, device="cpu", embed_batch_size=7,
                       query_instruction="Query: ", batch_size=5, query_max_length=32)
    data = emb.to_dict()
    assert data["class_name"] == "BGEEmbedding"
    assert {"model_name", "embed_batch_size", "query_instruction", "batch_size",
            "pooling", "device", "dtype"} <= set(data)
    restored = BGEEmbedding.from_dict(data)
    assert restored.to_dict() == data
    assert restored.embedder.spec == emb.embedder.spec
    assert restored.get_query_embedding("x") == emb.get_query_embedding("x")
    assert BGEEmbedding.from_json(emb.to_json()).to_dict() == data


def test_pickle_and_deepcopy_carry_configuration_not_weights(bert: BGEEmbedding) -> None:
    payload = pickle.dumps(bert)
    assert len(payload) < 4096
    for restored in (pickle.loads(payload), copy.deepcopy(bert)):
        assert restored is not bert and restored.to_dict() == bert.to_dict()
        assert restored.embedder.tokenizer is bert.embedder.tokenizer
        assert restored.get_text_embedding(TEXTS[0]) == bert.get_text_embedding(TEXTS[0])


# -- bad input -----------------------------------------------------------------------------
def test_empty_input(bert: BGEEmbedding) -> None:
    assert bert.get_text_embedding_batch([]) == []
    assert bert._get_text_embeddings([]) == []


@pytest.mark.parametrize("call", [
    lambda e: e.get_text_embedding_batch("one string"),
    lambda e: e.get_text_embedding_batch(["ok", 3]),
    lambda e: e.get_text_embedding_batch(None),
    lambda e: e.get_query_embedding(None),
    lambda e: e.get_text_embedding(b"bytes"),
])
def test_non_strings_raise_type_error(bert: BGEEmbedding, call) -> None:
    with pytest.raises(TypeError, match="str"):
        call(bert)


async def test_async_non_strings_raise_type_error(bert: BGEEmbedding) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        await bert.aget_text_embedding_batch(["ok", 1])
    with pytest.raises(TypeError):
        await bert.aget_query_embedding(7)


def test_bad_configuration(tiny_bert: str) -> None:
    with pytest.raises(ValidationError, match="devise"):
        BGEEmbedding(model_name=tiny_bert, devise="cpu")
    with pytest.raises(ValidationError):
        BGEEmbedding(model_name=tiny_bert, pooling="max")
    with pytest.raises(ValidationError):
        BGEEmbedding(model_name=tiny_bert, embed_batch_size=0)
    # the limit bounds a whole batch call, not each embed_batch_size chunk of it
    limited = BGEEmbedding(model_name=tiny_bert, device="cpu", max_texts_per_call=4,
                           embed_batch_size=2)
    with pytest.raises(ValueError, match="5 texts in one call exceed max_texts_per_call=4"):
        limited.get_text_embedding_batch([f"text {i}" for i in range(5)])
    assert len(limited.get_text_embedding_batch([f"text {i}" for i in range(4)])) == 4
    with pytest.raises(ValueError, match="icl"):
        BGEEmbedding(model_name=tiny_bert, device="cpu", examples=ICL_EXAMPLES)
