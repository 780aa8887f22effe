"""Client mode: the core's embedders answered by a ``bge-integrations serve`` server.

Needs the ``client`` extra (httpx): ``pip install "bge-integrations[client]"``.

Example:
    >>> from bge_integrations.client import RemoteEmbedder
    >>> emb = RemoteEmbedder("http://127.0.0.1:8080", "bge-small-en-v1.5")  # doctest: +SKIP
"""

from .embedders import RemoteEmbedder, RemoteM3Embedder
from .http import ServiceClient, ServiceError

__all__ = ["RemoteEmbedder", "RemoteM3Embedder", "ServiceClient", "ServiceError"]
