"""Ray is an optional dependency: import it here, with a hint naming the extra when missing."""

from __future__ import annotations

from types import ModuleType

__all__ = ["require_ray"]


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data loaded, or an ``ImportError`` naming the extra.

    Example:
        >>> require_ray().__name__  # doctest: +SKIP
        'ray'
    """
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data ships in ray[data], not in plain ray
    except ImportError as exc:
        msg = ("bge_integrations.distributed needs Ray Data, which is not installed "
               f"({exc}); install it with: pip install 'bge-integrations[ray]'.")
        raise ImportError(msg) from None
    return ray
