""":func:`evaluate`: nDCG, MRR, Recall and MAP of each retrieval mode (and fusion, and a
reranker) of an index or retriever on judged queries, computed by ranx.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .data import check_qrels, check_queries
from .metrics import Judgments, check_k, metric_names
from .report import Report
from .rerank import check_depths, check_reranker, rerank_runs
from .targets import as_target, check_doc_ids

__all__ = ["evaluate", "judged_queries"]


def judged_queries(queries: object, qrels: object) -> tuple[dict[str, str], dict[str, dict]]:
    """Checked ``(queries, qrels)`` restricted to the queries with a relevant document
    (grade > 0): no metric is defined for the others. Query ids come sorted, so a result
    does not depend on the order of the dicts (the model's float rounding can depend on a
    text's batch-mates, and near-equal scores then swap).

    Raises:
        ValueError: see :func:`~bge_integrations.evaluation.data.check_qrels`.
    """
    checked_queries = check_queries(queries)
    checked = check_qrels(qrels, checked_queries)
    kept = {q: checked[q] for q in sorted(checked) if any(g > 0 for g in checked[q].values())}
    return {q: checked_queries[q] for q in kept}, kept


def evaluate(index_or_retriever: Any, queries: Mapping[str, str],
             qrels: Mapping[str, Mapping[str, int]], *,
             k: int | Sequence[int] = (1, 3, 5, 10, 100), modes: Any = None,
             rerank: Any = None, rerank_depth: int | Sequence[int] = 100) -> Report:
    """Evaluate retrieval on judged queries, per mode (and fusion), optionally reranked.

    Each setting is one batched ``search_many`` over all judged queries at depth ``max(k)``
    (one model call per 1024 queries, never one per query); the ranked lists become ranx runs
    and ranx computes ``ndcg@k``, ``mrr@k``, ``recall@k`` and ``map@k`` for every cutoff.

    Args:
        index_or_retriever: a ``HybridIndex``, ``QdrantHybridIndex`` or ``DenseIndex``, or a
            LangChain / LlamaIndex ``BGEM3Retriever`` (searched with its own settings and
            filter; its ``k`` is replaced by ``max(k)``).
        queries: ``{qid: text}``; queries without judgments are not searched.
        qrels: ``{qid: {doc_id: grade}}``; grade > 0 is relevant (graded nDCG uses the
            grade); a query without any relevant document is left out (no metric is defined).
        k: the cutoffs.
        modes: ``None`` (every mode the index serves; a retriever's own setting), ``"all"``, a
            list of mode names (``"dense"``, ``"sparse"``, ``"colbert"``, ``"hybrid"``,
            ``"hybrid-rrf"``) or a dict of named search settings.
        rerank: a reranker (``rerank(query, documents, top_n)``, e.g. ``BGEReranker``): every
            setting is also evaluated reranked, as ``"<setting>+rerank"``.
        rerank_depth: how many retrieved documents the reranker re-orders; several depths
            give ``"<setting>+rerank@<depth>"`` each (the pairs are scored once).

    Returns:
        The :class:`~bge_integrations.evaluation.report.Report`.

    Raises:
        ValueError: empty qrels, qrels naming unknown query or document ids (a few listed),
            a cutoff <= 0, or a mode the index cannot serve (the message names those it can).

    Example:
        >>> from bge_integrations import BGEEmbedder, DenseIndex
        >>> from bge_integrations.evaluation import evaluate, load_beir, sts_retrieval_dir
        >>> data = load_beir(sts_retrieval_dir())
        >>> ids, texts = data.documents()
        >>> index = DenseIndex(BGEEmbedder("BAAI/bge-small-en-v1.5"))  # doctest: +SKIP
        >>> index.add(texts, ids=ids)  # doctest: +SKIP
        >>> evaluate(index, data.queries, data.qrels).metrics["dense"]["ndcg@10"]  # doctest: +SKIP
        0.87
    """
    cutoffs = check_k(k)
    depths = check_depths(rerank_depth)
    if rerank is not None:
        check_reranker(rerank)
    target = as_target(index_or_retriever)
    settings = target.settings(modes)
    judged_q, judged = judged_queries(queries, qrels)
    check_doc_ids(target, judged)
    qids, texts = list(judged_q), list(judged_q.values())
    depth = max(cutoffs[-1], max(depths) if rerank is not None else 0)
    ranked: dict[str, dict[str, list[str]]] = {}
    with_text: dict[str, dict[str, list[tuple[str, str]]]] = {}
    seconds: dict[str, float] = {}
    for name, kwargs in settings.items():
        start = time.perf_counter()
        hits = target.search(texts, depth, kwargs)
        seconds[name] = time.perf_counter() - start
        ranked[name] = {q: [h.id for h in row[:cutoffs[-1]]]
                        for q, row in zip(qids, hits, strict=True)}
        if rerank is not None:  # the reranker reads the texts
            with_text[name] = {q: [(h.id, h.text) for h in row]
                               for q, row in zip(qids, hits, strict=True)}
    reported = dict(settings)
    if rerank is not None:
        start = time.perf_counter()
        reranked = rerank_runs(rerank, judged_q, with_text, depths)
        elapsed = time.perf_counter() - start
        for name, runs in reranked.items():
            ranked[name] = {q: ids[:cutoffs[-1]] for q, ids in runs.items()}
            base, _, at = name.partition("+rerank")
            seconds[name] = seconds[base] + elapsed / len(reranked)
            reported[name] = {**settings[base], "rerank_depth": int(at[1:]) if at else depths[0]}
    return score_settings(judged, ranked, reported, cutoffs, seconds)


def score_settings(qrels: Mapping[str, Mapping[str, int]],
                   ranked: Mapping[str, Mapping[str, Sequence[str]]],
                   settings: Mapping[str, dict[str, Any]], cutoffs: tuple[int, ...],
                   seconds: Mapping[str, float]) -> Report:
    """A :class:`Report` of ranked document ids (setting -> qid -> ids), scored by ranx."""
    judgments = Judgments(qrels)
    names = metric_names(cutoffs)
    metrics, per_query = {}, {}
    for name, lists in ranked.items():
        metrics[name], per_query[name] = judgments.score(lists, names)
    return Report(metrics, per_query, dict(settings), cutoffs, dict(seconds),
                  {q: dict(j) for q, j in qrels.items()},
                  {name: {q: list(ids) for q, ids in lists.items()}
                   for name, lists in ranked.items()})
