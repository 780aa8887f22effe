"""Client-mode fields for the adapters: with ``base_url`` set, an adapter's core object is a
remote one (:mod:`bge_integrations.client`) and the server's model does the work."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field, SecretStr

__all__ = ["ClientOptions", "CLIENT_FIELDS"]

#: the fields below; they configure the connection, not the core object
CLIENT_FIELDS = ("base_url", "api_key", "timeout", "max_retries")


class ClientOptions(BaseModel):
    """``base_url``, ``api_key``, ``timeout``, ``max_retries`` (client mode).

    Example:
        >>> from bge_integrations.langchain import BGEEmbeddings
        >>> emb = BGEEmbeddings(model_name="bge-small-en-v1.5",
        ...                     base_url="http://127.0.0.1:8080")  # doctest: +SKIP
    """

    base_url: str | None = Field(
        default=None, description="Client mode: a `bge-integrations serve` server, e.g. "
                                  "'http://127.0.0.1:8080'; the model runs there.")
    api_key: SecretStr | None = Field(
        default=None, description="The server's API key (default: $BGE_INTEGRATIONS_API_KEY).")
    timeout: float = Field(default=60.0, gt=0, description="Client mode: seconds per "
                                                           "connect / read.")
    max_retries: int = Field(default=3, ge=0, description="Client mode: retries of connection "
                                                          "failures.")

    def remote(self, cls: type, model_name: str, core_fields: Iterable[str],
               **passed: Any) -> Any:
        """The remote core object ``cls(base_url, model_name, ..., **passed)``.

        ``core_fields`` are options of the in-process core object; in client mode they must
        keep their defaults (``passed`` ones travel with every request instead).

        Raises:
            ValueError: a core option was set: the server's own options apply in client mode.
        """
        fields = type(self).model_fields
        changed = sorted(name for name in core_fields if getattr(self, name)
                         != fields[name].get_default(call_default_factory=True))
        if changed:
            msg = (f"with base_url the server's model options apply; {', '.join(changed)} "
                   "cannot be set here. Drop them, or set them on the server.")
            raise ValueError(msg)
        key = self.api_key.get_secret_value() if self.api_key is not None else None
        return cls(self.base_url, model_name, api_key=key, timeout=self.timeout,
                   max_retries=self.max_retries, **passed)
