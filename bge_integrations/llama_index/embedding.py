"""``BGEEmbedding``: any registered BGE dense model as a LlamaIndex ``BaseEmbedding``."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field

from ..adapter_options import EmbedderOptions
from ..core.embedder import DEFAULT_MODEL, BGEEmbedder

__all__ = ["BGEEmbedding"]


class BGEEmbedding(EmbedderOptions, BaseEmbedding):
    """BGE dense embeddings (v1/v1.5, bge-m3 dense, bge-en-icl, E5, ...) for LlamaIndex.

    Queries get the model's instruction (or the ICL few-shot prompt); documents are embedded
    as they are. The core options (``device``, ``dtype``, ``pooling``, ``query_instruction``,
    ``batch_size``, ...) mean what they mean for ``BGEEmbedder``. ``embed_batch_size`` is how
    many texts LlamaIndex hands over per call (one callback event each); ``batch_size`` is how
    many of those go through the model per forward pass.

    Weights are shared through the core's model cache; ``to_dict`` / ``from_dict``,
    ``pickle`` and ``copy.deepcopy`` carry only the configuration: a restored instance loads
    (or reuses) the same weights. Changing a field (``emb.normalize = False``,
    ``emb.model_copy(update={...})``) takes effect at once.

    Example:
        >>> from llama_index.core import Settings
        >>> emb = BGEEmbedding(model_name="BAAI/bge-base-en-v1.5")  # doctest: +SKIP
        >>> Settings.embed_model = emb  # doctest: +SKIP
        >>> len(emb.get_query_embedding("what is BGE?"))  # doctest: +SKIP
        768
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=("pydantic_model_",))

    model_name: str = Field(default=DEFAULT_MODEL,
                            description="Hub id or local directory of the BGE model.")

    def __init__(self, **data: Any) -> None:
        """Validate the options and load (or reuse) the model.

        Args:
            **data: ``model_name``, the core options and ``BaseEmbedding``'s fields.
        """
        super().__init__(**data)
        self._core = self._new_core()

    def _new_core(self) -> BGEEmbedder:
        return self.build_embedder(self.model_name)

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialization."""
        return "BGEEmbedding"

    @property
    def embedder(self) -> BGEEmbedder:
        """The core embedder doing the work."""
        return self._core

    def get_text_embedding_batch(self, texts: list[str], show_progress: bool = False,
                                 **kwargs: Any) -> list[Embedding]:
        """Embed documents ``embed_batch_size`` at a time; the whole input is checked first
        (types, and ``max_texts_per_call`` against the whole call, not each chunk)."""
        return super().get_text_embedding_batch(
            self._checked(texts), show_progress=show_progress, **kwargs)

    async def aget_text_embedding_batch(self, texts: list[str], show_progress: bool = False,
                                        **kwargs: Any) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`; each chunk runs in a worker thread."""
        return await super().aget_text_embedding_batch(
            self._checked(texts), show_progress=show_progress, **kwargs)

    def _get_query_embedding(self, query: str) -> Embedding:
        return self.embedder.encode_queries([query])[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self.embedder.encode_documents([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.embedder.encode_documents(texts).tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
