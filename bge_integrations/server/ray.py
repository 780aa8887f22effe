"""The same app as a Ray Serve deployment: replicas, autoscaling, GPUs per replica."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .app import ServerSettings, create_app
from .models import ServedModel

__all__ = ["ray_app"]


def ray_app(models: Sequence[ServedModel | str], *, settings: ServerSettings | None = None,
            num_replicas: int | None = 1, autoscaling_config: Mapping[str, Any] | None = None,
            num_gpus_per_replica: float = 0.0, num_cpus_per_replica: float = 1.0,
            max_ongoing_requests: int = 256, name: str = "bge-integrations") -> Any:
    """A bound Ray Serve application serving :func:`create_app`'s app on each replica.

    Each replica loads the models once (at its start) and batches its own concurrent
    requests; Ray's proxy spreads requests over the replicas.

    Args:
        models: hub ids / local directories, or :class:`ServedModel` rows.
        settings: limits, API key, batching of every replica.
        num_replicas: fixed replica count (``None`` with ``autoscaling_config``).
        autoscaling_config: Ray Serve autoscaling, e.g. ``{"min_replicas": 1,
            "max_replicas": 4, "target_ongoing_requests": 64}``; replaces ``num_replicas``.
        num_gpus_per_replica: GPUs each replica reserves (its models then run there).
        num_cpus_per_replica: CPUs each replica reserves.
        max_ongoing_requests: requests a replica takes at once (they share batches).
        name: the deployment's name.

    Example:
        >>> from ray import serve  # doctest: +SKIP
        >>> serve.run(ray_app(["BAAI/bge-m3"], num_replicas=2, num_gpus_per_replica=1))
        ... # doctest: +SKIP
    """
    from ray import serve

    if autoscaling_config is not None and num_replicas not in (None, 1):
        msg = ("pass either num_replicas or autoscaling_config (its min_replicas/max_replicas "
               "set the count), not both.")
        raise ValueError(msg)
    if num_replicas is not None and (not isinstance(num_replicas, int) or num_replicas <= 0):
        msg = f"num_replicas must be a positive int, got {num_replicas!r}."
        raise ValueError(msg)
    app = create_app(models, settings)
    options: dict[str, Any] = {
        "name": name,
        "max_ongoing_requests": max_ongoing_requests,
        "ray_actor_options": {"num_gpus": num_gpus_per_replica,
                              "num_cpus": num_cpus_per_replica},
    }
    if autoscaling_config is not None:
        options["autoscaling_config"] = dict(autoscaling_config)
    else:
        options["num_replicas"] = num_replicas

    @serve.deployment(**options)
    @serve.ingress(app)
    class BGEService:
        """One replica: the app (its lifespan loads the models)."""

    return BGEService.bind()
