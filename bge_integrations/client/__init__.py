"""Client mode: the core's embedders and reranker answered by a ``bge-integrations serve`` server.

Needs the ``client`` extra (httpx): ``pip install "bge-integrations[client]"``. The classes are
imported on first use, so the adapters can import :mod:`.options` without httpx.

Example:
    >>> from bge_integrations.client import RemoteEmbedder
    >>> emb = RemoteEmbedder("http://127.0.0.1:8080", "bge-small-en-v1.5")  # doctest: +SKIP
"""

from .._lazy import lazy_exports

__all__ = ["RemoteEmbedder", "RemoteM3Embedder", "RemoteReranker", "ServiceClient",
           "ServiceError", "ClientOptions"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "RemoteEmbedder": "embedders", "RemoteM3Embedder": "embedders", "RemoteReranker": "reranker",
    "ServiceClient": "http", "ServiceError": "http", "ClientOptions": "options"}, __all__)
