"""``BGEM3Retriever``: a LlamaIndex retriever over the BGE-M3 hybrid index."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, Document, MetadataMode, NodeWithScore, QueryBundle
from llama_index.core.schema import TextNode
from llama_index.core.settings import Settings
from llama_index.core.vector_stores.types import MetadataFilters
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from ..adapter_options import M3Options
from ..core.rerank import BGEReranker
from ..core.scores import DEFAULT_WEIGHTS
from ..retrieval.contract import Hit, SearchRequest
from ..retrieval.filters import parse_filter
from ..retrieval.fusion import Fusion, RetrievalMode
from ..retrieval.rerank_step import check_rerank
from ..retrieval.index import HybridIndex
from .filters import to_index_filter

__all__ = ["BGEM3Retriever"]

#: metadata key under which a node's JSON is stored (LlamaIndex's vector store convention)
_NODE_CONTENT_KEY = "_node_content"


class BGEM3Retriever(BaseRetriever):
    """Dense, sparse, ColBERT or hybrid retrieval from a BGE-M3 ``HybridIndex``.

    Nodes are stored the way LlamaIndex's vector stores store them: the index embeds
    ``node.get_content(MetadataMode.EMBED)`` and keeps the node's metadata at the top level
    (so ``MetadataFilters`` apply to it) plus the node itself as JSON, so retrieval returns
    the original nodes. Documents added to the index directly (``index.add(texts, ...)``) come
    back as ``TextNode`` objects with the stored id, text and metadata.

    Args:
        index: a ``HybridIndex`` (or ``QdrantHybridIndex``).
        similarity_top_k: how many nodes to return.
        mode: ``"hybrid"``, ``"dense"``, ``"sparse"`` or ``"colbert"``.
        weights: (dense, sparse, colbert) weights of ``hybrid`` mode.
        fusion: ``"weighted"`` (score fusion) or ``"rrf"`` (reciprocal rank fusion).
        filters: metadata filters applied before ranking (see :func:`to_index_filter`).
        node_parser: splits documents passed to :meth:`insert` (default
            ``Settings.node_parser``, a ``SentenceSplitter``).
        callback_manager: LlamaIndex callbacks (retrieve events).
        verbose: print retrieval details.
        rerank: a ``BGEReranker`` that reorders the best ``candidates`` nodes.
        candidates: how many nodes the reranker sees.

    Example:
        >>> from llama_index.core import Document
        >>> retriever = BGEM3Retriever.from_documents(  # doctest: +SKIP
        ...     [Document(text="BGE-M3 is multilingual.")], model_name="BAAI/bge-m3")
        >>> retriever.retrieve("multilingual embeddings")[0].score  # doctest: +SKIP
        0.71
    """

    def __init__(self, index: HybridIndex, *, similarity_top_k: int = 4,
                 mode: str | RetrievalMode = RetrievalMode.HYBRID,
                 weights: Sequence[float] = DEFAULT_WEIGHTS,
                 fusion: str | Fusion = Fusion.WEIGHTED, filters: MetadataFilters | None = None,
                 node_parser: NodeParser | None = None,
                 callback_manager: CallbackManager | None = None, verbose: bool = False,
                 rerank: BGEReranker | None = None, candidates: int = 50) -> None:
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        check_rerank(rerank, candidates)
        self.rerank, self.candidates = rerank, candidates
        self.filters = filters
        request = SearchRequest.build([], k=similarity_top_k, mode=mode, weights=weights,
                                      fusion=fusion, has_colbert=index.store_colbert)
        self._index = index
        self._node_parser = node_parser or Settings.node_parser
        self.similarity_top_k = request.k
        self.mode = request.mode
        self.weights = request.weights
        self.fusion = request.fusion

    @classmethod
    def from_nodes(cls, nodes: Sequence[BaseNode], model_name: str = "BAAI/bge-m3", *,
                   index_kwargs: Mapping[str, Any] | None = None, **kwargs: Any
                   ) -> BGEM3Retriever:
        """A new ``HybridIndex`` holding ``nodes``, and a retriever over it.

        Args:
            nodes: the nodes to index.
            model_name: BGE-M3 hub id or local directory.
            index_kwargs: ``HybridIndex`` options (``store_colbert``, ``candidates``, ...).
            **kwargs: the retriever's arguments (``similarity_top_k``, ``mode``, ``weights``,
                ``fusion``, ``filters``, ``node_parser``, ...) and the BGE-M3 core options
                (``device``, ``dtype``, ``batch_size``, ...).

        Raises:
            TypeError: a keyword that is neither a retriever argument nor a core option.
        """
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in M3Options.model_fields}
        retriever_args = set(inspect.signature(cls.__init__).parameters) - {"self", "index"}
        unknown = set(kwargs) - retriever_args
        if unknown:
            valid = ", ".join(sorted(retriever_args | set(M3Options.model_fields)))
            msg = f"Unknown argument(s) {', '.join(sorted(unknown))}; valid: {valid}."
            raise TypeError(msg)
        m3 = M3Options(**options).build_m3(model_name)
        retriever = cls(HybridIndex(m3, **dict(index_kwargs or {})), **kwargs)
        retriever.insert_nodes(nodes)
        return retriever

    @classmethod
    def from_documents(cls, documents: Sequence[Document], model_name: str = "BAAI/bge-m3", *,
                       node_parser: NodeParser | None = None,
                       index_kwargs: Mapping[str, Any] | None = None, **kwargs: Any
                       ) -> BGEM3Retriever:
        """Split ``documents`` with ``node_parser`` and index the nodes (see :meth:`from_nodes`).

        Args:
            documents: the documents to split and index.
            model_name: BGE-M3 hub id or local directory.
            node_parser: the splitter (default ``Settings.node_parser``, a ``SentenceSplitter``);
                kept for later :meth:`insert` calls.
            index_kwargs: ``HybridIndex`` options.
            **kwargs: retriever arguments and BGE-M3 core options, as in :meth:`from_nodes`.
        """
        parser = node_parser or Settings.node_parser
        nodes = parser.get_nodes_from_documents(list(documents))
        return cls.from_nodes(nodes, model_name, index_kwargs=index_kwargs,
                              node_parser=parser, **kwargs)

    @property
    def index(self) -> HybridIndex:
        """The hybrid index searched."""
        return self._index

    @property
    def filters(self) -> MetadataFilters | None:
        """The metadata filters applied to every search; assigning new ones re-validates."""
        return self._filters

    @filters.setter
    def filters(self, filters: MetadataFilters | None) -> None:
        index_filter = to_index_filter(filters)
        parse_filter(index_filter)
        self._filters, self._index_filter = filters, index_filter

    @property
    def node_parser(self) -> NodeParser:
        """The splitter applied to documents passed to :meth:`insert`."""
        return self._node_parser

    # -- writing -----------------------------------------------------------------------------
    def insert(self, document: Document) -> list[str]:
        """Split one document with :attr:`node_parser` and index its nodes; returns their ids."""
        return self.insert_nodes(self._node_parser.get_nodes_from_documents([document]))

    def insert_nodes(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Index nodes (a node whose id is already indexed is replaced); returns their ids."""
        nodes = list(nodes)
        for i, node in enumerate(nodes):
            if not isinstance(node, BaseNode):
                msg = f"nodes[{i}] must be a llama_index node, got {type(node).__name__}."
                raise TypeError(msg)
        return self._index.add(
            [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes],
            metadatas=[node_to_metadata_dict(node) for node in nodes],
            ids=[node.node_id for node in nodes])

    def delete_nodes(self, node_ids: Sequence[str]) -> int:
        """Remove nodes by id (unknown ids are ignored); returns how many were removed."""
        return self._index.delete(node_ids)

    # -- reading -----------------------------------------------------------------------------
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._index.search(query_bundle.query_str, k=self.similarity_top_k,
                                  filter=self._index_filter, mode=self.mode,
                                  weights=self.weights, fusion=self.fusion,
                                  rerank=self.rerank, candidates=self.candidates)
        return [NodeWithScore(node=_to_node(hit), score=hit.score) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


def _to_node(hit: Hit) -> BaseNode:
    if _NODE_CONTENT_KEY in hit.metadata:
        return metadata_dict_to_node(hit.metadata)
    return TextNode(id_=hit.id, text=hit.text, metadata=hit.metadata)
