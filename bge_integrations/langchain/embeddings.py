"""BGEEmbeddings: any registered BGE (or other) embedding model as a LangChain ``Embeddings``."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import ConfigDict, Field

from ..adapter_options import EmbedderOptions
from ..core.embedder import DEFAULT_MODEL, BGEEmbedder

__all__ = ["BGEEmbeddings"]


class BGEEmbeddings(EmbedderOptions, Embeddings):
    """Dense embeddings from a BGE model, with the model's own instruction and pooling.

    The core registry supplies pooling and query instruction per model (CLS and the English
    instruction for ``bge-*-en-v1.5``, no instruction for ``bge-m3``, last-token pooling and
    the ICL prompt for ``bge-en-icl``); every field overrides it. Queries get the instruction,
    documents never do. Output is L2-normalized unless ``normalize=False``. Weights load once
    per (model, device, dtype) and are shared with every other adapter on the same model.

    Changing a field (``emb.normalize = False``, ``emb.model_copy(update={...})``) takes effect
    at once. ``pickle`` and ``copy.deepcopy`` carry the fields only; the copy loads the
    weights from its own process's model cache.

    Example:
        >>> from bge_integrations.langchain import BGEEmbeddings
        >>> emb = BGEEmbeddings(model_name="BAAI/bge-small-en-v1.5")  # doctest: +SKIP
        >>> len(emb.embed_query("what is a panda?"))  # doctest: +SKIP
        384
        >>> len(emb.embed_documents(["The giant panda is a bear."])[0])  # doctest: +SKIP
        384
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Hub id (e.g. ``"BAAI/bge-base-en-v1.5"``) or local directory of the model."""

    def __init__(self, **kwargs: Any) -> None:
        """Validate the options and load the model (or reuse it from the model cache)."""
        super().__init__(**kwargs)
        self._core = self._new_core()

    def _new_core(self) -> BGEEmbedder:
        return self.build_embedder(self.model_name)

    @property
    def embedder(self) -> BGEEmbedder:
        """The core embedder doing the work (for ``dim``, ``spec`` or numpy output)."""
        return self._core

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (no instruction).

        Args:
            texts: the documents to embed.

        Returns:
            One list of floats per document.
        """
        return self.embedder.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query (the model's instruction or ICL prompt applied).

        Args:
            text: the query.

        Returns:
            The query vector.
        """
        return self.embedder.encode_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages in a worker thread, leaving the event loop free."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed a query in a worker thread, leaving the event loop free."""
        return await asyncio.to_thread(self.embed_query, text)
