"""Client mode: the core embedders' methods, answered by a ``bge-integrations serve`` server.

:class:`RemoteEmbedder` mirrors ``BGEEmbedder`` and :class:`RemoteM3Embedder` mirrors
``BGEM3Embedder``: same method names, same arguments, same outputs (float32 vectors travel
as raw bytes, so they are the server's exact values). Texts are checked here as the core
checks them, then sent in requests of ``batch_size`` texts.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.inputs import validate_texts
from ..core.m3 import BGEM3Embedder, M3Output
from .http import RemoteModel

__all__ = ["RemoteEmbedder", "RemoteM3Embedder"]

_OUTPUT_DTYPES = {"float32": np.float32, "float16": np.float16}


def _floats(value: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)


class _Remote(RemoteModel):
    """What both remote embedders share: the model card and chunked calls."""

    _card: dict[str, Any] | None = None

    @property
    def card(self) -> dict[str, Any]:
        """The served model's ``/v1/models`` entry (asked once)."""
        if self._card is None:
            self._card = self.client.model_card(self.model_name)
        return self._card

    @property
    def dim(self) -> int:
        """Output dimension of the dense vector."""
        return int(self.card["dim"])

    def _items(self, path: str, texts: list[str], input_type: str,
               **fields: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        model = self.card["id"]
        for start in range(0, len(texts), self.batch_size):
            answer = self.client.post(path, {"model": model, "input": texts[start:start +
                                             self.batch_size], "input_type": input_type,
                                             "encoding_format": "base64", **fields})
            items.extend(sorted(answer["data"], key=lambda item: item["index"]))
        return items


class RemoteEmbedder(_Remote):
    """``BGEEmbedder``'s methods over HTTP: the server applies the model's instruction.

    Args:
        base_url: the server, e.g. ``"http://127.0.0.1:8080"``.
        model: a served model id (or its last path component); ``None`` when one is served.
        api_key: the server's key (default: ``$BGE_INTEGRATIONS_API_KEY``).
        timeout: seconds per connect / read.
        max_retries: retries of connection failures (never of requests the server got).
        batch_size: texts per request.

    Example:
        >>> emb = RemoteEmbedder("http://127.0.0.1:8080", "bge-small-en-v1.5")  # doctest: +SKIP
        >>> emb.encode_queries(["what is BGE?"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def encode_queries(self, queries: Sequence[str], *, output_dtype: str = "float32"
                       ) -> np.ndarray:
        """Embed search queries (the server applies the instruction / ICL prompt)."""
        return self._dense(queries, "queries", "query", output_dtype)

    def encode_documents(self, documents: Sequence[str], *, output_dtype: str = "float32"
                         ) -> np.ndarray:
        """Embed passages (no instruction)."""
        return self._dense(documents, "documents", "document", output_dtype)

    def encode(self, texts: Sequence[str], *, output_dtype: str = "float32") -> np.ndarray:
        """Embed texts as they are (no instruction, no prefix)."""
        return self._dense(texts, "texts", "raw", output_dtype)

    def _dense(self, texts: Sequence[str], name: str, input_type: str, output_dtype: str
               ) -> np.ndarray:
        if output_dtype not in _OUTPUT_DTYPES:
            msg = f"output_dtype must be one of {sorted(_OUTPUT_DTYPES)}, got {output_dtype!r}."
            raise ValueError(msg)
        checked = validate_texts(texts, name=name)
        if not checked:
            return np.zeros((0, self.dim), dtype=_OUTPUT_DTYPES[output_dtype])
        items = self._items("/v1/embeddings", checked, input_type)
        vectors = np.stack([_floats(item["embedding"]) for item in items])
        return vectors.astype(_OUTPUT_DTYPES[output_dtype], copy=False)


class RemoteM3Embedder(_Remote):
    """``BGEM3Embedder``'s methods over HTTP: dense, sparse and ColBERT in one request.

    Arguments as :class:`RemoteEmbedder`. Scores (``compute_score``, ``lexical_score``,
    ``colbert_score``, ``score_outputs``) are the core's, on the outputs the server sent.

    Example:
        >>> m3 = RemoteM3Embedder("http://127.0.0.1:8080", "bge-m3")  # doctest: +SKIP
        >>> out = m3.encode_documents(["BGE-M3 is multilingual."], colbert=True)  # doctest: +SKIP
        >>> out.dense.shape[0], len(out.sparse), len(out.colbert)  # doctest: +SKIP
        (1, 1, 1)
    """

    lexical_score = staticmethod(BGEM3Embedder.lexical_score)
    colbert_score = staticmethod(BGEM3Embedder.colbert_score)
    score_outputs = staticmethod(BGEM3Embedder.score_outputs)
    compute_score = BGEM3Embedder.compute_score  # encodes through this class's methods

    def encode_queries(self, queries: Sequence[str], *, dense: bool = True, sparse: bool = True,
                       colbert: bool = False) -> M3Output:
        """Encode queries (BGE-M3 uses no query instruction)."""
        return self._m3(queries, "queries", "query", dense, sparse, colbert)

    def encode_documents(self, documents: Sequence[str], *, dense: bool = True,
                         sparse: bool = True, colbert: bool = False) -> M3Output:
        """Encode passages."""
        return self._m3(documents, "documents", "document", dense, sparse, colbert)

    def encode(self, texts: Sequence[str], *, dense: bool = True, sparse: bool = True,
               colbert: bool = False) -> M3Output:
        """Encode texts as they are."""
        return self._m3(texts, "texts", "raw", dense, sparse, colbert)

    def _m3(self, texts: Sequence[str], name: str, input_type: str, dense: bool, sparse: bool,
            colbert: bool) -> M3Output:
        checked = validate_texts(texts, name=name)
        if not (dense or sparse or colbert):
            msg = "request at least one output: dense=True, sparse=True or colbert=True."
            raise ValueError(msg)
        if not checked:
            return M3Output(dense=np.zeros((0, self.dim), np.float32) if dense else None,
                            sparse=[] if sparse else None, colbert=[] if colbert else None)
        if colbert:
            items = self._items("/v1/embeddings/colbert", checked, input_type,
                                return_dense=dense, return_sparse=sparse)
        elif sparse:
            items = self._items("/v1/embeddings/sparse", checked, input_type,
                                return_dense=dense)
        else:
            items = self._items("/v1/embeddings", checked, input_type)
        return M3Output(
            dense=np.stack([_floats(i["dense" if sparse or colbert else "embedding"])
                            for i in items]) if dense else None,
            sparse=[_sparse(i["sparse"] if colbert else i) for i in items] if sparse else None,
            colbert=[_floats(i["embedding"]).reshape(i["shape"]) for i in items]
            if colbert else None)


def _sparse(item: dict[str, Any]) -> dict[int, float]:
    return {int(k): float(v) for k, v in zip(item["indices"], item["values"], strict=False)}
