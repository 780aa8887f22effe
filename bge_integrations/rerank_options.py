"""BGEReranker's options as pydantic fields, shared by the LangChain and LlamaIndex rerankers.

Field names equal :class:`~bge_integrations.BGEReranker`'s keywords, so
``BGERerank(model_name=..., max_length=...)`` means exactly what the core means.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .client.options import CLIENT_FIELDS, ClientOptions
from .core.rerank import DEFAULT_RERANKER, BGEReranker

__all__ = ["RerankerOptions", "DEFAULT_RERANKER"]


class RerankerOptions(ClientOptions):
    """The core reranker options (see :class:`~bge_integrations.BGEReranker`), and client
    mode's (``base_url``: a ``bge-integrations serve`` server scores instead)."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(default=None, description="'encoder', 'llm', 'layerwise' or "
                             "'lightweight'; only for models not in the registry.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda:0', ...")
    dtype: str = Field(default="auto",
                       description="'auto', 'float32', 'float16', 'bfloat16', 'int8'.")
    batch_size: int = Field(default=128, gt=0, description="Most pairs per forward pass.")
    max_batch_tokens: int | None = Field(default=None, gt=0,
                                         description="Most padded tokens per forward pass.")
    max_length: int = Field(default=512, gt=0, description="Token limit of a pair.")
    query_max_length: int | None = Field(default=None, gt=0,
                                         description="Query token limit (None: 3/4 of it).")
    normalize: bool = Field(default=False, description="Sigmoid of the scores (0..1).")
    prompt: str | None = Field(default=None, description="LLM rerankers' task prompt.")
    cutoff_layers: list[int] | None = Field(
        default=None, description="Layerwise / lightweight: the layers to score at.")
    compress_ratio: int | None = Field(default=None, description="Lightweight: 1, 2, 4 or 8.")
    compress_layers: list[int] | None = Field(
        default=None, description="Lightweight: layers before which passages are compressed.")
    query_instruction: str | None = Field(default=None, description="Text before queries.")
    passage_instruction: str | None = Field(default=None, description="Text before passages.")
    backend: Literal["torch", "onnx", "openvino", "auto"] = Field(
        default="torch", description="What runs the model: 'torch', or for encoder rerankers "
        "'onnx' / 'openvino' (CPU) or 'auto'.")
    trust_remote_code: bool = Field(default=False, description="Run the checkpoint's own code.")
    show_progress: bool = Field(default=False, description="Show a progress bar.")
    num_workers: int | None = Field(default=None, gt=0,
                                    description="CPU batches run side by side.")

    def reranker_options(self) -> dict[str, Any]:
        """The option values as keyword arguments of :class:`BGEReranker`."""
        return {name: getattr(self, name) for name in RerankerOptions.model_fields
                if name not in CLIENT_FIELDS}

    def build_reranker(self, model_name: str) -> BGEReranker:
        """A reranker with these options (weights shared through the model cache), or with
        ``base_url`` a :class:`~bge_integrations.client.RemoteReranker` (``normalize`` is
        sent with each request; the other options are the server's)."""
        if self.base_url is not None:
            from .client.reranker import RemoteReranker

            core = set(self.reranker_options()) - {"normalize"}
            return self.remote(RemoteReranker, model_name, core, normalize=self.normalize)
        return BGEReranker(model_name, **self.reranker_options())
