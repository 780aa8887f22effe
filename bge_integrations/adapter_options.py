"""Core options as pydantic fields, shared by the LangChain and LlamaIndex adapters.

Field names equal ``BGEEmbedder``'s keyword names, so ``BGEEmbeddings(model_name=..., dtype=...)``
and ``BGEEmbedding(model_name=..., dtype=...)`` mean exactly what the core means.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .core.embedder import BGEEmbedder
from .core.inputs import validate_texts
from .core.m3 import BGEM3Embedder

__all__ = ["EmbedderOptions", "M3Options"]


class M3Options(BaseModel):
    """Options of the BGE-M3 embedder (no pooling or instruction: BGE-M3 fixes them)."""

    model_config = ConfigDict(extra="forbid")

    device: str | list[str] = Field(
        default="auto",
        description="'auto' (cuda > mps > cpu), 'cpu', 'cuda:0', or a list: one replica each.")
    dtype: str = Field(default="auto",
                       description="'auto', 'float32', 'float16', 'bfloat16', 'int8'.")
    query_max_length: int | None = Field(default=None, gt=0, description="Query token limit.")
    passage_max_length: int | None = Field(default=None, gt=0, description="Passage token limit.")
    normalize: bool = Field(default=True, description="L2-normalize dense and ColBERT vectors.")
    batch_size: int = Field(default=256, gt=0, description="Most texts per forward pass.")
    max_batch_tokens: int | None = Field(default=None, gt=0,
                                         description="Most padded tokens per forward pass.")
    show_progress: bool = Field(default=False, description="Show a progress bar.")
    trust_remote_code: bool = Field(default=False, description="Run the checkpoint's own code.")
    max_texts_per_call: int | None = Field(default=None, gt=0,
                                           description="Reject calls with more texts.")
    max_tokens_per_call: int | None = Field(default=None, gt=0,
                                            description="Reject calls with more tokens.")
    num_workers: int | None = Field(
        default=None, gt=0,
        description="CPU batches run side by side (None: 2 when torch has 2+ threads).")
    backend: Literal["torch", "onnx", "openvino", "auto"] = Field(
        default="torch",
        description="What runs the backbone: 'torch', 'onnx', 'openvino' (CPU) or 'auto'.")

    def _checked(self, texts: object) -> list[str]:
        """A whole batch call's texts, checked before the framework cuts it into chunks:
        types, and ``max_texts_per_call`` against the whole call (as the core does)."""
        return validate_texts(texts, name="texts", max_texts=self.max_texts_per_call)

    def core_options(self) -> dict[str, Any]:
        """The option values as keyword arguments of the core embedder."""
        options_class = EmbedderOptions if isinstance(self, EmbedderOptions) else M3Options
        return {name: getattr(self, name) for name in options_class.model_fields}

    def build_m3(self, model_name: str) -> BGEM3Embedder:
        """A BGE-M3 embedder with these options (weights are shared through the model cache)."""
        return BGEM3Embedder(model_name, **self.core_options())


class EmbedderOptions(M3Options):
    """Options of the dense embedder: the M3 ones plus pooling, instruction and ICL examples."""

    pooling: Literal["cls", "mean", "last_token"] | None = Field(
        default=None, description="Override the registry's pooling (required for unknown models).")
    query_instruction: str | None = Field(
        default=None, description="Query instruction; None keeps the registry's, '' disables it.")
    query_instruction_format: str | None = Field(
        default=None, description="format(instruction, query) template, e.g. '{}{}'.")
    examples: list[dict[str, str]] | None = Field(
        default=None, description="ICL few-shot examples (instruct/query/response), bge-en-icl.")

    def build_embedder(self, model_name: str) -> BGEEmbedder:
        """A dense embedder with these options (weights are shared through the model cache)."""
        return BGEEmbedder(model_name, **self.core_options())
