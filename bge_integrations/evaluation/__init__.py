"""Retrieval evaluation and fusion tuning on your own judged queries (extra ``[eval]``).

* :func:`load_beir` reads a BEIR-layout dataset; plain dicts work too: queries
  ``{qid: text}``, qrels ``{qid: {doc_id: grade}}``.
* :func:`evaluate` scores an index or retriever per mode (dense, sparse, ColBERT, fusion),
  optionally reranked: nDCG, MRR, Recall and MAP at every cutoff, computed by ``ranx``, with
  per-query values and significance tests (:meth:`Report.compare`).
* :func:`tune` picks the fusion weights and RRF constant on a dev split and reports the
  held-out test score; its result is the search keywords (``index.search(q, **best)``).
* :func:`sts_retrieval_dir` is a small shipped set built from the STS benchmark.

Example:
    >>> from bge_integrations.evaluation import evaluate, load_beir, sts_retrieval_dir
    >>> data = load_beir(sts_retrieval_dir())
    >>> report = evaluate(index, data.queries, data.qrels)  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
"""

from .data import BeirData, load_beir, sts_retrieval_dir, write_beir
from .evaluate import evaluate
from .report import Report
from .targets import MODE_SETTINGS
from .tune import TuneResult, tune

__all__ = ["load_beir", "BeirData", "write_beir", "sts_retrieval_dir", "evaluate", "Report",
           "tune", "TuneResult", "MODE_SETTINGS"]
