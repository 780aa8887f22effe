"""BGERerank: any BGE reranker as a LangChain document compressor.

Example:
    >>> from langchain_classic.retrievers import ContextualCompressionRetriever  # doctest: +SKIP
    >>> from bge_integrations.langchain import BGERerank
    >>> compressor = BGERerank(model_name="BAAI/bge-reranker-v2-m3", top_n=3)  # doctest: +SKIP
    >>> retriever = ContextualCompressionRetriever(  # doctest: +SKIP
    ...     base_compressor=compressor, base_retriever=vectorstore.as_retriever(k=20))
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

from ..core.rerank import BGEReranker
from ..rerank_options import DEFAULT_RERANKER, RerankerOptions

__all__ = ["BGERerank"]


class BGERerank(RerankerOptions, BaseDocumentCompressor):
    """Reranks retrieved documents with a BGE reranker, best first.

    Each returned document is a copy whose ``metadata["relevance_score"]`` holds its score
    (raw logit, or 0..1 with ``normalize=True``). Every core option of
    :class:`~bge_integrations.BGEReranker` is a field of the same name.

    Example:
        >>> from langchain_core.documents import Document
        >>> rerank = BGERerank(model_name="BAAI/bge-reranker-v2-m3", top_n=1)  # doctest: +SKIP
        >>> docs = [Document(page_content="Paris"), Document(page_content="Pandas are bears.")]
        >>> rerank.compress_documents(docs, "what is a panda?")[0].page_content  # doctest: +SKIP
        'Pandas are bears.'
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=(),
                              arbitrary_types_allowed=True)

    model_name: str = Field(default=DEFAULT_RERANKER, alias="model")
    """Hub id or local directory of the reranker."""
    top_n: int | None = Field(default=3, ge=1)
    """Documents to keep (``None``: all, reordered)."""

    _reranker: BGEReranker = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        """Validate the options and load the model (or reuse it from the model cache)."""
        super().__init__(**kwargs)
        self._reranker = self.build_reranker(self.model_name)

    @property
    def reranker(self) -> BGEReranker:
        """The core reranker doing the work."""
        return self._reranker

    def compress_documents(self, documents: Sequence[Document], query: str,
                           callbacks: Callbacks | None = None) -> Sequence[Document]:
        """The ``top_n`` most relevant documents to ``query``, best first, with their score
        in ``metadata["relevance_score"]``."""
        del callbacks
        docs = list(documents)
        ranked = self._reranker.rerank(query, [d.page_content for d in docs], top_n=self.top_n)
        return [Document(page_content=docs[i].page_content, id=docs[i].id,
                         metadata={**docs[i].metadata, "relevance_score": score})
                for i, score in ranked]

    async def acompress_documents(self, documents: Sequence[Document], query: str,
                                  callbacks: Callbacks | None = None) -> Sequence[Document]:
        """:meth:`compress_documents` in a worker thread, leaving the event loop free."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)
