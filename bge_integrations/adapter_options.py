"""Core options as pydantic fields, shared by the LangChain and LlamaIndex adapters.

Field names equal ``BGEEmbedder``'s keyword names, so ``BGEEmbeddings(model_name=..., dtype=...)``
and ``BGEEmbedding(model_name=..., dtype=...)`` mean exactly what the core means.

The embedding adapters hold one core object built from these options, and keep it in step:

* it is built at construction, so a wrong model or option fails there, not at the first embed;
* assigning an option or ``model_name`` (``emb.normalize = False``), or
  ``model_copy(update={...})``, validates the new value and builds a new core object (the
  weights come from the model cache, so this is cheap); if that fails, nothing changes;
* ``pickle`` and ``copy.deepcopy`` carry the configuration only, never the weights: the copy
  loads them from its own process's model cache (or from disk);
* with ``base_url`` (client mode, :mod:`bge_integrations.client`) the core object is a remote
  one: a ``bge-integrations serve`` server runs the model, with its own options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr

from .client.options import CLIENT_FIELDS, ClientOptions
from .core.embedder import BGEEmbedder, ensure_registered
from .core.inputs import validate_texts
from .core.m3 import BGEM3Embedder
from .core.registry import ModelSpec, find_spec

__all__ = ["EmbedderOptions", "M3Options"]


class M3Options(ClientOptions):
    """Options of the BGE-M3 embedder (no pooling or instruction: BGE-M3 fixes them), and
    client mode's (``base_url``, ...)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # the core object of an adapter (``None`` for bare options); see the module docstring
    _core: Any = PrivateAttr(default=None)

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
    int8_calibration: list[str] | None = Field(
        default=None,
        description="Texts for static int8 scales (backend='openvino', dtype='int8').")

    def _checked(self, texts: object) -> list[str]:
        """A whole batch call's texts, checked before the framework cuts it into chunks:
        types, and ``max_texts_per_call`` against the whole call (as the core does)."""
        return validate_texts(texts, name="texts", max_texts=self.max_texts_per_call)

    def core_options(self) -> dict[str, Any]:
        """The option values as keyword arguments of the core embedder."""
        options_class = EmbedderOptions if isinstance(self, EmbedderOptions) else M3Options
        return {name: getattr(self, name) for name in options_class.model_fields
                if name not in CLIENT_FIELDS}

    def build_m3(self, model_name: str) -> BGEM3Embedder:
        """A BGE-M3 embedder with these options (weights are shared through the model cache),
        or with ``base_url`` a :class:`~bge_integrations.client.RemoteM3Embedder`."""
        if self.base_url is not None:
            from .client.embedders import RemoteM3Embedder

            return self.remote(RemoteM3Embedder, model_name, self.core_options())
        return BGEM3Embedder(model_name, **self.core_options())

    def build_sparse(self, model_name: str) -> BGEM3Embedder:
        """A BGE-M3 embedder with its sparse head loaded now, so that a checkpoint that is not
        BGE-M3 (no ``sparse_linear.pt``) fails here rather than at the first embed."""
        m3 = self.build_m3(model_name)
        m3.encode([], dense=False, sparse=True)  # an empty call loads and checks the head
        return m3

    # -- the adapter's core object, kept in step with the fields -------------------------------
    def _new_core(self) -> Any:
        """The core object the adapter's fields describe (adapters with a core override it)."""
        msg = f"{type(self).__name__} holds options only; it builds no core object."
        raise TypeError(msg)

    def _rebuilds_core(self, name: str) -> bool:
        options = EmbedderOptions if isinstance(self, EmbedderOptions) else M3Options
        return name == "model_name" or name in options.model_fields

    def __setattr__(self, name: str, value: Any) -> None:
        """Assign a field (validated); an option or ``model_name`` rebuilds the core object."""
        private = self.__pydantic_private__
        if private and private.get("_core") is not None and self._rebuilds_core(name):
            self._update({name: value})
        else:
            super().__setattr__(name, value)

    def _update(self, changes: Mapping[str, Any]) -> None:
        """Assign ``changes`` (validated), then rebuild the core object once if an option
        changed; if a value or the rebuild fails, every field keeps its old value."""
        old = dict(self.__dict__)
        try:
            for name, value in changes.items():
                super().__setattr__(name, value)
            if any(self._rebuilds_core(name) for name in changes):
                super().__setattr__("_core", self._new_core())
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(old)
            raise

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False
                   ) -> Any:
        """A copy; ``update`` values are validated and an option change takes effect in the
        copy (a new core object), the original unchanged. Without changed options the copies
        share the core object (and its weights)."""
        copied = super().model_copy(deep=deep)
        if update:
            copied._update(update)
        return copied

    def configuration(self) -> dict[str, Any]:
        """The fields that rebuild this adapter: ``type(adapter)(**adapter.configuration())``."""
        data = self.model_dump()
        data.pop("class_name", None)  # LlamaIndex's serialization tag, not a field
        return data

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle the configuration only (and the registry row of a model the user registered,
        which the other process may lack); unpickling loads (or reuses) the weights."""
        configuration = self.configuration()
        return _from_configuration, (type(self), configuration,
                                     find_spec(configuration["model_name"]))

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        """A new instance with the same configuration, sharing the cached weights."""
        return _from_configuration(type(self), self.configuration())


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
        """A dense embedder with these options (weights are shared through the model cache),
        or with ``base_url`` a :class:`~bge_integrations.client.RemoteEmbedder`."""
        if self.base_url is not None:
            from .client.embedders import RemoteEmbedder

            return self.remote(RemoteEmbedder, model_name, self.core_options())
        return BGEEmbedder(model_name, **self.core_options())


def _from_configuration(cls: type[M3Options], configuration: dict[str, Any],
                        registered: ModelSpec | None = None) -> M3Options:
    """Unpickle an adapter: construct it anew from its fields (registering the sender's
    registry row for its model first, if this process does not know the model)."""
    ensure_registered(registered)
    return cls(**configuration)
