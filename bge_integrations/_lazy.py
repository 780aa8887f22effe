"""What the framework adapter packages share: an install hint and lazily imported classes.

``bge_integrations.langchain`` and ``bge_integrations.llama_index`` first check that their
framework is installed (an ``ImportError`` then names the ``pip install`` extra) and define
their classes in submodules that are imported on first attribute access, so importing the
package imports neither the framework nor torch (the first class used does).

Example:
    >>> require("no_such_module", package="no-such", extra="x", user="demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ImportError: demo needs no-such, which is not installed; ... `pip install bge-integrations[x]`.
    >>> require("json", package="json", extra="x", user="demo")  # installed: nothing happens
    >>> __getattr__, __dir__ = lazy_exports("json", {"JSONDecoder": "decoder"}, ["JSONDecoder"])
    >>> __getattr__("JSONDecoder").__module__
    'json.decoder'
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["require", "lazy_exports"]


def require(module: str, *, package: str, extra: str, user: str) -> None:
    """Check that ``module`` is installed, without importing it (``llama_index.core`` alone
    takes seconds: it is imported by the first class that uses it); if it is missing, raise an
    ``ImportError`` naming the extra to install.

    Args:
        module: the import name (``"langchain_core"``).
        package: the distribution that provides it (``"langchain-core"``).
        extra: the bge-integrations extra that installs it (``"langchain"``).
        user: the module that needs it, for the message.
    """
    if not _installed(module):
        msg = (f"{user} needs {package}, which is not installed; install it with "
               f"`pip install bge-integrations[{extra}]`.")
        raise ImportError(msg)


def _installed(module: str) -> bool:
    if module in sys.modules:  # None there means "blocked": importing it would fail
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing or blocked parent package
        return False


def lazy_exports(module: str, exports: Mapping[str, str], names: Sequence[str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package with lazy classes.

    Args:
        module: the package's ``__name__``.
        exports: public name -> the submodule (relative to ``module``) that defines it.
        names: the package's ``__all__``.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", module), name)
        msg = f"module {module!r} has no attribute {name!r}"
        raise AttributeError(msg)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[module])) | set(names))

    return __getattr__, __dir__
