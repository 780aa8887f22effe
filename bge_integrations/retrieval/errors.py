"""The errors of saved indexes: damaged or foreign files, and the wrong model."""

from __future__ import annotations

__all__ = ["IndexFileError", "IndexNotFoundError", "ModelMismatchError"]


class IndexFileError(ValueError):
    """A saved index is missing, corrupted, truncated, crafted, or in an unknown format."""


class IndexNotFoundError(IndexFileError, FileNotFoundError):
    """The directory holds no saved index at all (no manifest); also a ``FileNotFoundError``."""


class ModelMismatchError(ValueError):
    """The embedder given to ``load`` is not the model that built the index."""
