"""End to end: BGEEmbedding as LlamaIndex's embed model, in indexes, query engines, pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.ingestion import IngestionPipeline  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.schema import MetadataMode  # noqa: E402

from bge_integrations.llama_index import BGEEmbedding  # noqa: E402

FACTS = [
    "The giant panda is a bear native to the mountain forests of central China.",
    "Paris is the capital and largest city of France.",
    "Python is a high-level programming language created by Guido van Rossum.",
    "The Pacific Ocean is the largest and deepest ocean on Earth.",
]
DOCS = [Document(text=t, metadata={"topic": topic})
        for t, topic in zip(FACTS, ("animals", "geography", "software", "oceans"), strict=True)]


@pytest.fixture
def settings():
    """LlamaIndex's global Settings, restored after the test."""
    saved = dict(vars(Settings))
    yield Settings
    vars(Settings).clear()
    vars(Settings).update(saved)


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BGEEmbedding:
    return BGEEmbedding(model_name=minilm_dir, pooling="mean", device="cpu")


def test_settings_index_retriever_and_query_engine(settings, minilm: BGEEmbedding) -> None:
    settings.embed_model = minilm
    settings.llm = MockLLM()
    index = VectorStoreIndex.from_documents(DOCS)
    stored = [index.vector_store.get(n.node_id) for n in index.docstore.docs.values()]
    contents = [n.get_content(metadata_mode=MetadataMode.EMBED)
                for n in index.docstore.docs.values()]
    assert_close(np.asarray(stored, np.float32),
                               minilm.embedder.encode_documents(contents))

    hits = index.as_retriever(similarity_top_k=1).retrieve("Which animal lives in China?")
    assert hits[0].node.metadata["topic"] == "animals"
    query_vec = minilm.embedder.encode_queries(["Which animal lives in China?"])[0]
    assert hits[0].score == pytest.approx(float(query_vec @ np.asarray(stored[0])), abs=1e-5)

    response = index.as_query_engine(similarity_top_k=2).query("What is the capital of France?")
    assert str(response)  # MockLLM echoes a prompt-sized text
    assert response.source_nodes[0].node.metadata["topic"] == "geography"
    assert settings.embed_model is minilm


async def test_async_index_and_retrieval(settings, minilm: BGEEmbedding) -> None:
    settings.embed_model = minilm
    index = VectorStoreIndex.from_documents(DOCS, use_async=True)
    hits = await index.as_retriever(similarity_top_k=1).aretrieve("largest ocean")
    assert hits[0].node.metadata["topic"] == "oceans"


def test_ingestion_pipeline_with_a_splitter(minilm: BGEEmbedding) -> None:
    # paragraphs shorter than a chunk: the splitter packs paragraphs without its sentence model
    long_doc = Document(text="\n\n\n".join(FACTS * 3))
    splitter = SentenceSplitter(chunk_size=40, chunk_overlap=0)
    pipeline = IngestionPipeline(transformations=[splitter, minilm])
    nodes = pipeline.run(documents=[long_doc])
    assert len(nodes) == len(splitter.get_nodes_from_documents([long_doc])) > 2
    contents = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert_close(np.asarray([n.embedding for n in nodes], np.float32),
                               minilm.embedder.encode_documents(contents))


async def test_async_ingestion_pipeline(minilm: BGEEmbedding) -> None:
    splitter = SentenceSplitter(chunk_size=64, chunk_overlap=0)
    pipeline = IngestionPipeline(transformations=[splitter, minilm])
    nodes = await pipeline.arun(documents=DOCS)
    contents = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert_close(np.asarray([n.embedding for n in nodes], np.float32),
                               minilm.embedder.encode_documents(contents))


def test_settings_are_restored() -> None:
    assert not isinstance(vars(Settings).get("_embed_model"), BGEEmbedding)
