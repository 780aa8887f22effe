"""The embedding service: an OpenAI-compatible ASGI app over the core, and its Ray Serve form.

Needs the ``server`` extra: ``pip install "bge-integrations[server]"``.

Example:
    >>> from bge_integrations.server import create_app
    >>> app = create_app(["BAAI/bge-small-en-v1.5"])  # serve it with uvicorn
"""

from .app import ServerSettings, create_app
from .errors import APIError
from .models import MATRYOSHKA_MODELS, ServedModel
from .ray import ray_app
from .run import BackgroundServer, serve

__all__ = ["create_app", "ServerSettings", "ServedModel", "APIError", "MATRYOSHKA_MODELS",
           "serve", "BackgroundServer", "ray_app"]
