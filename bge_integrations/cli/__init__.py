"""The ``bge-integrations`` command line: ``main`` (the console script) and its support modules.

* :mod:`.app`: the argument parser and the subcommands (``models``, ``embed``, ``index``,
  ``demo``);
* :mod:`.textio`: reading texts from .txt / .jsonl / .csv files, writing embeddings;
* :mod:`.indexes`: the right index for a model (hybrid for BGE-M3, dense otherwise), saved
  and reopened;
* :mod:`.demo`: the offline demo over the bundled corpus;
* :mod:`.model_table`: the registry as a terminal table or as ``docs/models.md``.

Example:
    $ bge-integrations demo --tiny
    $ python -m bge_integrations.cli models --markdown > docs/models.md
"""

from .app import build_parser, main

__all__ = ["main", "build_parser"]
