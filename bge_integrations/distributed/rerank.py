"""rerank_dataset: reranker scores of (query, passage) rows of a Ray Dataset, one model per actor.

Each actor loads a :class:`~bge_integrations.BGEReranker` once and scores the pairs of every
batch it is handed with ``compute_score``: a row's score is exactly what one process gives
for the same pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from . import columns as C
from ._ray import require_ray
from .actors import (
    ON_ERROR,
    check_choice,
    check_columns,
    check_model_name,
    check_options,
    map_with_actors,
    screen_rows,
)

if TYPE_CHECKING:
    import ray.data

__all__ = ["rerank_dataset", "RerankWorker", "SCORE"]

#: the default name of the column rerank_dataset adds
SCORE = "score"


class RerankWorker:
    """Ray Data callable class: Arrow batch in, the same batch plus a score column out.

    Args:
        model: reranker hub id or local directory, loaded once per actor.
        query_column: the query column.
        passage_column: the passage column.
        score_column: the column to add: float32, or one float32 per layer (a list) when the
            reranker scores at several ``cutoff_layers``.
        id_column: the column naming rows in error messages.
        collect_errors: a bad row gets an ``error`` instead of failing the job.
        options: keyword options of ``BGEReranker``.
    """

    def __init__(self, model: str, *, query_column: str, passage_column: str,
                 score_column: str, id_column: str, collect_errors: bool,
                 options: Mapping[str, Any]) -> None:
        from ..core.rerank import BGEReranker

        self._reranker = BGEReranker(model, **dict(options))
        self._columns = (query_column, passage_column)
        self._score = score_column
        self._id_column = id_column
        self._collect = collect_errors

    def __call__(self, batch: pa.Table) -> pa.Table:
        good, errors = screen_rows(batch, self._columns, self._id_column, self._collect)
        queries, passages = (batch.column(c).to_pylist() for c in self._columns)
        scores = self._reranker.compute_score([(queries[i], passages[i]) for i in good])
        valid = np.zeros(len(batch), dtype=bool)
        valid[good] = True
        if scores.ndim == 1:
            full = np.zeros(len(batch), np.float32)
            full[good] = scores
            column = pa.array(full, mask=~valid)
        else:  # one row of scores per cutoff layer
            full = np.zeros((len(batch), scores.shape[0]), np.float32)
            full[good] = scores.T
            column = C.dense_column(full, valid)
        batch = batch.append_column(self._score, column)
        if self._collect:
            batch = batch.append_column(C.ERROR, pa.array(errors, type=pa.string()))
        return batch


def rerank_dataset(ds: ray.data.Dataset, model: str, *, query_column: str = "query",
                   passage_column: str = "passage", score_column: str = SCORE,
                   concurrency: int | tuple[int, int] | None = None, batch_size: int = 256,
                   num_cpus: float | None = None, num_gpus: float | None = None,
                   on_error: str = "raise", id_column: str = "id",
                   ray_options: Mapping[str, Any] | None = None,
                   **reranker_options: Any) -> ray.data.Dataset:
    """Add a reranker's score of each row's (query, passage) pair to a Ray Dataset.

    One :class:`~bge_integrations.BGEReranker` per actor; every input column is kept. Scores
    are raw logits, or sigmoids with ``normalize=True``; with several ``cutoff_layers`` the
    column holds one score per layer.

    Args:
        ds: the input dataset.
        model: reranker hub id or local directory (e.g. ``BAAI/bge-reranker-v2-m3``).
        query_column: the query column.
        passage_column: the passage column.
        score_column: the column to add.
        concurrency: actors: ``n``, ``(min, max)`` to autoscale, ``None`` for 1 to as many
            as the cluster fits.
        batch_size: rows handed to an actor per call.
        num_cpus: CPUs reserved per actor.
        num_gpus: GPUs per actor.
        on_error: ``"raise"`` (a None or non-str text fails the job, naming the row's id) or
            ``"collect"`` (such rows get an ``error`` and a null score).
        id_column: the column naming rows in error messages.
        ray_options: more keyword options of Ray's ``map_batches`` for the actors.
        **reranker_options: options of ``BGEReranker`` (``normalize``, ``max_length``,
            ``dtype``, ``cutoff_layers``, ...).

    Returns:
        The lazy dataset with ``score_column`` (and ``error``) added.

    Example:
        >>> pairs = ray.data.from_items([{"id": "1", "query": "what is a panda?",  # doctest: +SKIP
        ...                               "passage": "The giant panda is a bear."}])
        >>> rerank_dataset(pairs, "BAAI/bge-reranker-v2-m3").take(1)[0]["score"]  # doctest: +SKIP
        5.26...
    """
    require_ray()
    from ..core.rerank import BGEReranker

    check_model_name(model)
    check_choice("on_error", on_error, ON_ERROR)
    check_options(BGEReranker, model, reranker_options)
    check_columns(ds, {"query_column": query_column, "passage_column": passage_column},
                  (score_column, *([C.ERROR] if on_error == "collect" else [])))
    return map_with_actors(
        ds, RerankWorker, (model,),
        {"query_column": query_column, "passage_column": passage_column,
         "score_column": score_column, "id_column": id_column,
         "collect_errors": on_error == "collect", "options": dict(reranker_options)},
        batch_size=batch_size, concurrency=concurrency, num_cpus=num_cpus, num_gpus=num_gpus,
        ray_options=ray_options)
