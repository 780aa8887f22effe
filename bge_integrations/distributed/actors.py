"""What embed_dataset and rerank_dataset share: argument checks and the actor-pool map."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import ray.data

__all__ = ["actor_pool", "dataset_columns", "check_choice", "check_columns", "check_options",
           "check_model_name", "map_with_actors", "screen_rows", "ON_ERROR"]

ON_ERROR = ("raise", "collect")


def dataset_columns(ds: ray.data.Dataset) -> list[str]:
    """The column names of ``ds`` (Ray reads one block when the schema is not known yet)."""
    schema = ds.schema()
    return list(schema.names) if schema is not None else []


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        msg = f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}."
        raise ValueError(msg)


def check_columns(ds: ray.data.Dataset, inputs: Mapping[str, str], adds: Sequence[str]
                  ) -> None:
    """Each ``inputs`` column (keyword -> column) exists and no ``adds`` column does yet."""
    names = dataset_columns(ds)
    if not names:
        return
    for keyword, column in inputs.items():
        if column not in names:
            msg = (f"the dataset has no {column!r} column to read; its columns are: "
                   f"{', '.join(names)}. Pass {keyword}=<the column>.")
            raise ValueError(msg)
    clash = [n for n in adds if n in names]
    if clash:
        msg = (f"the dataset already has column(s) {', '.join(clash)}, which this step adds; "
               "rename or drop them first (ds.rename_columns / ds.drop_columns).")
        raise ValueError(msg)


def check_model_name(model: object) -> None:
    """Actors load their own copy of the model: it is passed by name, never as an object."""
    if not isinstance(model, str):
        msg = (f"model must be a hub id or a local directory (a str): each actor loads its own "
               f"copy; got {type(model).__name__}.")
        raise TypeError(msg)


def check_options(cls: type, model: str, options: Mapping[str, Any]) -> None:
    """Unknown option names of the core class fail here, on the driver, not in every actor."""
    if "batch_size" in options:
        msg = ("batch_size is the rows handed to an actor per call; the engine inside each "
               "actor splits them into forward passes by max_batch_tokens.")
        raise TypeError(msg)
    try:
        inspect.signature(cls).bind(model, **options)
    except TypeError:
        valid = [p for p in list(inspect.signature(cls).parameters)[1:] if p != "batch_size"]
        unknown = sorted(set(options) - set(valid))
        msg = (f"unknown option(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
               f"valid: {', '.join(valid)}.")
        raise TypeError(msg) from None


def actor_pool(concurrency: int | tuple[int, int] | None) -> Any:
    """Ray's ``ActorPoolStrategy`` for ``concurrency``: n actors, or ``(min, max)``."""
    from ray.data import ActorPoolStrategy

    if concurrency is None:
        return ActorPoolStrategy(min_size=1, max_size=None)
    if isinstance(concurrency, int) and not isinstance(concurrency, bool) and concurrency > 0:
        return ActorPoolStrategy(size=concurrency)
    if (isinstance(concurrency, tuple) and len(concurrency) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) for c in concurrency)
            and 0 < concurrency[0] <= concurrency[1]):
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    msg = (f"concurrency must be a positive int (that many actors), a (min, max) tuple of them "
           f"(an autoscaling pool) or None (1 to as many as fit), got {concurrency!r}.")
    raise ValueError(msg)


def map_with_actors(ds: ray.data.Dataset, worker: type, args: tuple, kwargs: Mapping[str, Any],
                    *, batch_size: int, concurrency: int | tuple[int, int] | None,
                    num_cpus: float | None, num_gpus: float | None,
                    ray_options: Mapping[str, Any] | None) -> ray.data.Dataset:
    """``ds.map_batches`` with an actor pool of ``worker(*args, **kwargs)``, Arrow batches.

    Ray Data restarts a dead actor and retries the batches it held (its defaults for actor
    pools), so each row comes out once.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        msg = f"batch_size must be a positive int (rows per actor call), got {batch_size!r}."
        raise ValueError(msg)
    options = dict(ray_options or {})
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    if num_gpus is not None:
        options["num_gpus"] = num_gpus
    return ds.map_batches(worker, fn_constructor_args=args, fn_constructor_kwargs=dict(kwargs),
                          batch_format="pyarrow", batch_size=batch_size,
                          compute=actor_pool(concurrency), zero_copy_batch=True, **options)


def _problem(value: object) -> str | None:
    """Why ``value`` cannot be fed to a model as text, or None."""
    if not isinstance(value, str):
        return f"holds {type(value).__name__} {value!r:.60}, not a str"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"is not valid Unicode (a lone surrogate at position {exc.start})"
    return None


def _row_name(batch: pa.Table, i: int, id_column: str) -> str:
    if id_column in batch.column_names:
        return f"{id_column}={batch.column(id_column)[i].as_py()!r}"
    return f"#{i} of its batch (no {id_column!r} column to name it)"


def screen_rows(batch: pa.Table, columns: Sequence[str], id_column: str, collect: bool
                ) -> tuple[list[int], list[str | None]]:
    """The rows whose ``columns`` all hold valid text, and each row's error (None if good).

    Raises:
        ValueError: a bad row when not ``collect``; the message names it by ``id_column``.
    """
    errors: list[str | None] = [None] * len(batch)
    for column in columns:
        for i, value in enumerate(batch.column(column).to_pylist()):
            problem = _problem(value) if errors[i] is None else None
            if problem is not None:
                errors[i] = f"row {_row_name(batch, i, id_column)}: column {column!r} {problem}"
    bad = [e for e in errors if e is not None]
    if bad and not collect:
        msg = (f"{bad[0]}; fix the input, or pass on_error='collect' to route such rows to an "
               f"'error' column ({len(bad)} bad rows in this batch).")
        raise ValueError(msg)
    return [i for i, e in enumerate(errors) if e is None], errors
