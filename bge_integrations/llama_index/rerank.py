"""BGERerank: any BGE reranker as a LlamaIndex node postprocessor.

Example:
    >>> from bge_integrations.llama_index import BGERerank
    >>> rerank = BGERerank(model_name="BAAI/bge-reranker-v2-m3", top_n=3)  # doctest: +SKIP
    >>> engine = index.as_query_engine(similarity_top_k=20,  # doctest: +SKIP
    ...                                node_postprocessors=[rerank])
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from ..core.rerank import BGEReranker
from ..rerank_options import DEFAULT_RERANKER, RerankerOptions

__all__ = ["BGERerank"]

dispatcher = get_dispatcher(__name__)


class BGERerank(RerankerOptions, BaseNodePostprocessor):
    """Reranks retrieved nodes with a BGE reranker, best first; ``NodeWithScore.score`` becomes
    the reranker's score. Emits LlamaIndex's ``ReRankStartEvent`` / ``ReRankEndEvent`` and the
    ``RERANKING`` callback event, like its built-in rerankers.

    Every core option of :class:`~bge_integrations.BGEReranker` is a field of the same name.

    Example:
        >>> from llama_index.core.schema import NodeWithScore, TextNode
        >>> rerank = BGERerank(model_name="BAAI/bge-reranker-v2-m3", top_n=1)  # doctest: +SKIP
        >>> nodes = [NodeWithScore(node=TextNode(text="Pandas are bears."))]
        >>> rerank.postprocess_nodes(nodes, query_str="what is a panda?")  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=(),
                              arbitrary_types_allowed=True)

    model_name: str = Field(default=DEFAULT_RERANKER, alias="model",
                            description="Hub id or local directory of the reranker.")
    top_n: int | None = Field(default=3, ge=1,
                              description="Nodes to keep (None: all, reordered).")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retriever's score in metadata['retrieval_score'].")

    _reranker: BGEReranker = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        """Validate the options and load the model (or reuse it from the model cache)."""
        super().__init__(**kwargs)
        self._reranker = self.build_reranker(self.model_name)

    @classmethod
    def class_name(cls) -> str:
        return "BGERerank"

    @property
    def reranker(self) -> BGEReranker:
        """The core reranker doing the work."""
        return self._reranker

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n or 0,
                                          model_name=self.model_name))
        if query_bundle is None:
            msg = "BGERerank needs the query: pass query_str= or query_bundle=."
            raise ValueError(msg)
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={EventPayload.NODES: nodes, EventPayload.MODEL_NAME: self.model_name,
                     EventPayload.QUERY_STR: query_bundle.query_str,
                     EventPayload.TOP_K: self.top_n},
        ) as event:
            ranked = self._reranker.rerank(query_bundle.query_str, texts, top_n=self.top_n)
            new_nodes = []
            for i, score in ranked:
                node = nodes[i]
                if self.keep_retrieval_score:
                    node.node.metadata["retrieval_score"] = node.score
                new_nodes.append(NodeWithScore(node=node.node, score=score))
            event.on_end(payload={EventPayload.NODES: new_nodes})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))
        return new_nodes
