"""embed_dataset: BGE embeddings as new columns of a Ray Dataset, one model per actor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.embedder import BGEEmbedder
from ..core.m3 import BGEM3Embedder
from ..core.m3_heads import is_m3_model
from . import columns as C
from ._ray import require_ray
from .actors import (
    ON_ERROR,
    check_choice,
    check_columns,
    check_model_name,
    check_options,
    map_with_actors,
)
from .worker import EmbedWorker, Outputs

if TYPE_CHECKING:
    import ray.data

__all__ = ["embed_dataset"]

SIDES = ("document", "query")
OUTPUT_DTYPES = ("float32", "float16")


def _outputs(model: str, *, side: str, dense: bool, sparse: bool | None, colbert: bool,
             output_dtype: str, token_counts: bool, on_error: str) -> Outputs:
    check_choice("side", side, SIDES)
    check_choice("on_error", on_error, ON_ERROR)
    check_choice("output_dtype", output_dtype, OUTPUT_DTYPES)
    m3 = is_m3_model(model)
    if not m3 and (sparse or colbert):
        asked = [name for name, on in (("sparse", sparse), ("colbert", colbert)) if on]
        msg = (f"{' and '.join(asked)} outputs need a BGE-M3 model; {model!r} is a dense "
               f"model: drop {', '.join(f'{a}=True' for a in asked)}.")
        raise ValueError(msg)
    sparse = m3 if sparse is None else bool(sparse)
    if not (dense or sparse or colbert):
        msg = "request at least one output: dense=True, sparse=True or colbert=True."
        raise ValueError(msg)
    return Outputs(m3=m3, side=side, dense=bool(dense), sparse=sparse, colbert=bool(colbert),
                   output_dtype=output_dtype, token_counts=bool(token_counts),
                   collect_errors=on_error == "collect")


def embed_dataset(ds: ray.data.Dataset, model: str, *, column: str = "text",
                  side: str = "document", dense: bool = True, sparse: bool | None = None,
                  colbert: bool = False, concurrency: int | tuple[int, int] | None = None,
                  batch_size: int = 256, num_cpus: float | None = None,
                  num_gpus: float | None = None, on_error: str = "raise",
                  id_column: str = "id", output_dtype: str = "float32",
                  token_counts: bool = False,
                  ray_options: Mapping[str, Any] | None = None,
                  **core_options: Any) -> ray.data.Dataset:
    """Add BGE embeddings of a text column to a Ray Dataset, one model per actor.

    Each actor of a pool loads ``model`` once and runs the core embedder on the batches it is
    handed, so every row gets what one-process ``encode_documents`` (or ``encode_queries``)
    gives for its text, whatever the block size, number of actors or row order. An actor that
    dies (a lost node, an out-of-memory kill) is restarted by Ray and its batches are retried
    (Ray Data's defaults for actor pools), so each row comes out once. Every input
    column (ids, metadata) is kept untouched; the new columns are laid out as described in
    :mod:`bge_integrations.distributed.columns`. Lazy, like every Ray Dataset transform: the
    work runs when the result is consumed (written, iterated, materialized).

    Args:
        ds: the input dataset.
        model: hub id or local directory (loaded by each actor; BGE-M3 models are detected
            from the registry or their head files).
        column: the text column.
        side: ``"document"`` (no instruction) or ``"query"`` (instruction applied).
        dense: add ``embedding``.
        sparse: add ``sparse_indices`` / ``sparse_values``; ``None`` means on for BGE-M3.
        colbert: add ``colbert`` (BGE-M3 only; large: one vector per token).
        concurrency: actors: ``n``, ``(min, max)`` to autoscale, ``None`` for 1 to as many as
            the cluster fits.
        batch_size: rows handed to an actor per call; its engine splits them into
            length-sorted forward passes (core option ``max_batch_tokens``).
        num_cpus: CPUs reserved per actor (Ray's default: 1); torch uses that many threads.
        num_gpus: GPUs per actor (e.g. ``1``; fractions share a GPU).
        on_error: ``"raise"``: a row whose text is None or not a str fails the job with a
            message naming its id; ``"collect"``: such rows get an ``error`` column and null
            outputs, the others are embedded.
        id_column: the column naming rows in error messages.
        output_dtype: ``"float32"`` or ``"float16"`` (half the size) for dense and ColBERT.
        token_counts: add ``num_tokens`` (the tokens each text fed the model).
        ray_options: more keyword options of Ray's ``map_batches`` for the actors
            (``memory``, ``resources``, ``runtime_env``, ``accelerator_type``, ...).
        **core_options: options of ``BGEEmbedder`` / ``BGEM3Embedder`` (``dtype``,
            ``passage_max_length``, ``pooling``, ``max_batch_tokens``, ...).

    Returns:
        The lazy dataset with the output columns added.

    Raises:
        ImportError: Ray Data is not installed (``pip install 'bge-integrations[ray]'``).
        ValueError: ``column`` is missing (the message lists the columns), an output column
            already exists, or an option is out of range.
        TypeError: an unknown core option.

    Example:
        >>> import ray
        >>> ds = ray.data.from_items([{"id": "1", "text": "BGE-M3 is multilingual."}])
        >>> out = embed_dataset(ds, "BAAI/bge-m3", colbert=True)  # doctest: +SKIP
        >>> sorted(out.take(1)[0])  # doctest: +SKIP
        ['colbert', 'embedding', 'id', 'sparse_indices', 'sparse_values', 'text']
    """
    require_ray()
    check_model_name(model)
    outputs = _outputs(model, side=side, dense=dense, sparse=sparse, colbert=colbert,
                       output_dtype=output_dtype, token_counts=token_counts, on_error=on_error)
    check_options(BGEM3Embedder if outputs.m3 else BGEEmbedder, model, core_options)
    check_columns(ds, {"column": column}, C.OUTPUT_COLUMNS)
    return map_with_actors(
        ds, EmbedWorker, (model, outputs),
        {"column": column, "id_column": id_column, "core_options": dict(core_options)},
        batch_size=batch_size, concurrency=concurrency, num_cpus=num_cpus, num_gpus=num_gpus,
        ray_options=ray_options)
