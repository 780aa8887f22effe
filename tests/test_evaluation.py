"""Retrieval evaluation and fusion tuning: metric values (by hand and against ranx / pytrec_eval),
every index backend and both retrievers, batching (counted model calls), reranking, bad input,
the BEIR loader and the shipped STS-B set."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ranx")

from bge_integrations import BGEEmbedder, BGEM3Embedder, DenseIndex, HybridIndex  # noqa: E402
from bge_integrations.evaluation import (  # noqa: E402
    evaluate,
    load_beir,
    sts_retrieval_dir,
    tune,
    write_beir,
)
from bge_integrations.evaluation.metrics import Judgments, metric_names  # noqa: E402
from bge_integrations.evaluation.sts import build_sts_retrieval  # noqa: E402
from bge_integrations.evaluation.tune import simplex, split_queries  # noqa: E402
from bge_integrations.retrieval import Hit  # noqa: E402

DATA = Path(__file__).parent / "data"
ALL_METRICS = metric_names((1, 3, 5, 10, 100))


# -- a fake index: exact rankings, no model -------------------------------------------------
@dataclass
class FakeDenseIndex:
    """Returns fixed rankings per query text (a DenseIndex-shaped search_many)."""

    rankings: dict[str, list[str]]

    def search_many(self, queries: Sequence[str], k: int = 10, filter: object = None
                    ) -> list[list[Hit]]:
        return [[Hit(d, d, {}, float(-i), {"dense": float(-i)})
                 for i, d in enumerate(self.rankings[q][:k])] for q in queries]


def test_metric_values_by_hand() -> None:
    # q1: relevant d1 (grade 1) and d2 (grade 2), ranked [d3, d1, d2]; q2: d9 not retrieved
    index = FakeDenseIndex({"one": ["d3", "d1", "d2"], "two": ["d4", "d5"]})
    report = evaluate(index, {"q1": "one", "q2": "two"},
                      {"q1": {"d1": 1, "d2": 2}, "q2": {"d9": 1}}, k=(1, 3, 10))
    m = report.metrics["dense"]
    assert list(report.metrics) == ["dense"]
    dcg = 1 / math.log2(3) + 2 / math.log2(4)  # ranx: linear gains (trec_eval's nDCG)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert report.per_query["dense"]["ndcg@3"]["q1"] == pytest.approx(dcg / idcg)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg / 2)
    assert m["ndcg@1"] == 0.0
    assert m["mrr@10"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["mrr@1"] == 0.0
    assert m["recall@1"] == 0.0
    assert m["recall@3"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["map@10"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 0) / 2)
    assert report.ranked["dense"]["q1"] == ["d3", "d1", "d2"]


def test_ties_keep_the_index_order() -> None:
    """ranx re-sorts runs by score: equal scores must not re-order what the index ranked."""

    class Tied(FakeDenseIndex):
        def search_many(self, queries, k=10, filter=None):
            return [[Hit(d, d, {}, 1.0, {"dense": 1.0}) for d in self.rankings[q][:k]]
                    for q in queries]

    report = evaluate(Tied({"a": ["x", "y", "rel"]}), {"q": "a"}, {"q": {"rel": 1}}, k=1)
    assert report.metrics["dense"]["mrr@1"] == 0.0
    assert report.per_query["dense"]["mrr@1"] == {"q": 0.0}


def _random_case(seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    docs = [f"doc{i}" for i in range(60)]
    qrels = {f"q{i}": {docs[j]: int(rng.integers(1, 4)) for j in rng.choice(60, 3, False)}
             for i in range(25)}
    ranked = {q: [docs[j] for j in rng.permutation(60)[:40]] for q in qrels}
    return qrels, ranked


def test_array_path_equals_ranx_objects_and_pytrec_eval() -> None:
    """Our ranx array-form scoring equals ranx's own API and ir-measures (pytrec_eval)."""
    import ir_measures
    import ranx

    qrels, ranked = _random_case()
    names = metric_names((1, 5, 10, 20))
    means, per_query = Judgments(qrels).score(ranked, names)
    run = {q: {d: float(len(ids) - i) for i, d in enumerate(ids)} for q, ids in ranked.items()}
    reference = ranx.evaluate(qrels, run, names)  # ranx's dict API (no typed-dict compile)
    for name in names:
        assert means[name] == pytest.approx(float(reference[name]), abs=1e-12), name
    measures = {"ndcg": ir_measures.nDCG, "mrr": ir_measures.RR, "recall": ir_measures.R,
                "map": ir_measures.AP}
    for name in names:
        metric, cutoff = name.split("@")
        measure = measures[metric] @ int(cutoff)
        trec = {m.query_id: m.value for m in ir_measures.iter_calc([measure], qrels, run)}
        for q in qrels:
            assert per_query[name][q] == pytest.approx(trec[q], abs=1e-9), (name, q)


# -- real indexes on tiny models ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sts() -> object:
    """A slice of the shipped STS-B set: 60 documents, the judged queries among them."""
    data = load_beir(sts_retrieval_dir(), split="test")
    ids, texts = data.documents()
    judged = {q: j for q, j in data.qrels.items() if set(j) <= set(ids[:200])}
    keep = sorted({d for j in judged.values() for d in j} | set(ids[:60]))
    qrels = dict(list(judged.items())[:24])
    corpus = {d: texts[ids.index(d)] for d in keep}
    return {"corpus": corpus, "queries": {q: data.queries[q] for q in qrels}, "qrels": qrels}


class Counting:
    """Counts encode_queries calls (and texts) of an embedder instance."""

    def __init__(self, embedder: object, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[int] = []
        original = embedder.encode_queries

        def encode_queries(texts, *args, **kwargs):
            self.calls.append(len(texts))
            return original(texts, *args, **kwargs)

        monkeypatch.setattr(embedder, "encode_queries", encode_queries)


@pytest.fixture(scope="module")
def m3_model(tiny_m3: str) -> BGEM3Embedder:
    return BGEM3Embedder(tiny_m3, device="cpu")


@pytest.fixture(scope="module")
def hybrid(m3_model: BGEM3Embedder, sts: dict) -> HybridIndex:
    index = HybridIndex(m3_model)
    index.add(list(sts["corpus"].values()), ids=list(sts["corpus"]))
    return index


def test_hybrid_index_every_mode_batched(hybrid: HybridIndex, m3_model: BGEM3Embedder,
                                         sts: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counting(m3_model, monkeypatch)
    queries = {**sts["queries"], "unjudged": "never searched"}
    report = evaluate(hybrid, queries, sts["qrels"], k=(1, 10, 20))
    n = len(sts["qrels"])
    assert report.names == ["dense", "sparse", "colbert", "hybrid", "hybrid-rrf"]
    assert counter.calls == [n] * 5  # one model call per setting, all queries at once
    assert set(report.metrics["hybrid"]) == set(metric_names((1, 10, 20)))
    assert all(0 <= v <= 1 for m in report.metrics.values() for v in m.values())
    assert set(report.per_query["colbert"]["ndcg@10"]) == set(sts["qrels"])
    # each setting's run is exactly what the index returns for the same batch of queries
    texts = [sts["queries"][q] for q in sts["qrels"]]
    for name, kwargs in report.settings.items():
        hits = hybrid.search_many(texts, k=20, **kwargs)
        assert [report.ranked[name][q] for q in sts["qrels"]] == [
            [h.id for h in row] for row in hits], name
    assert report.metrics["dense"]["recall@20"] == pytest.approx(np.mean(
        [len(set(report.ranked["dense"][q]) & set(j)) / len(j)
         for q, j in sts["qrels"].items()]))


def test_report_compare_and_json(hybrid: HybridIndex, sts: dict, tmp_path: Path) -> None:
    report = evaluate(hybrid, sts["queries"], sts["qrels"], k=(1, 10),
                      modes=["dense", "hybrid-rrf"])
    compared = report.compare("ndcg@10", stat_test="fisher").to_dict()
    p = compared["dense"]["comparisons"]["hybrid-rrf"]["ndcg@10"]
    assert 0 <= p <= 1
    from scipy.stats import ttest_rel

    a = [report.per_query["dense"]["ndcg@10"][q] for q in sts["qrels"]]
    b = [report.per_query["hybrid-rrf"]["ndcg@10"][q] for q in sts["qrels"]]
    student = report.compare("ndcg@10").to_dict()["dense"]["comparisons"]["hybrid-rrf"]
    expected = ttest_rel(a, b).pvalue if a != b else 1.0
    assert student["ndcg@10"] == pytest.approx(expected, rel=1e-6)
    report.save(tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["metrics"]["dense"]["ndcg@10"] == report.metrics["dense"]["ndcg@10"]
    assert "hybrid-rrf" in saved["significance"]["p_values"]["dense"]
    assert "ndcg@10" in report.table(["ndcg@10"]).splitlines()[0]
    with pytest.raises(ValueError, match="stat_test"):
        report.compare(stat_test="wilcoxon")


def test_tune_embeds_once_and_returns_search_kwargs(hybrid: HybridIndex, m3_model: BGEM3Embedder,
                                                    sts: dict,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counting(m3_model, monkeypatch)
    best = tune(hybrid, sts["queries"], sts["qrels"], metric="ndcg@10", split=0.5, seed=1)
    dev, test = set(best.dev_queries), set(best.test_queries)
    assert not dev & test and dev | test == set(sts["qrels"])
    assert len(best.grid) > 100  # coarse + refined weighted, RRF x constants, refined RRF
    # one pool search over the dev queries, then the chosen setting on dev and on test
    assert counter.calls == [len(dev), len(dev), len(test)]
    assert set(best) == {"mode", "weights", "fusion"} and best["mode"] == "hybrid"
    assert abs(sum(best["weights"]) - 1) < 1e-6
    assert max(g["score"] for g in best.grid) == max(
        g["score"] for g in best.grid if g["weights"] == best["weights"]
        and g["fusion"] == best["fusion"])
    hybrid_rrf_k = hybrid.rrf_k
    if best.rrf_k is not None:
        hybrid.rrf_k = best.rrf_k
    try:
        check = evaluate(hybrid, sts["queries"], {q: sts["qrels"][q] for q in test},
                         k=10, modes={"tuned": dict(best)})
    finally:
        hybrid.rrf_k = hybrid_rrf_k
    assert check.metrics["tuned"]["ndcg@10"] == pytest.approx(best.test_score)
    assert hybrid.rrf_k == hybrid_rrf_k  # tune put the index's constant back
    query = next(iter(sts["queries"].values()))
    assert hybrid.search(query, k=3, **best)  # the result is search keywords
    from bge_integrations.langchain import BGEM3Retriever as LCRetriever
    from bge_integrations.llama_index import BGEM3Retriever as LIRetriever

    assert len(LCRetriever(index=hybrid, k=3, **best).invoke(query)) == 3
    assert len(LCRetriever(index=hybrid, k=3).invoke(query, **best)) == 3
    assert len(LIRetriever(hybrid, similarity_top_k=3, **best).retrieve(query)) == 3
    json.dumps(best.to_dict())


def test_tune_on_explicit_splits_without_colbert(m3_model: BGEM3Embedder, sts: dict) -> None:
    index = HybridIndex(m3_model, store_colbert=False)
    index.add(list(sts["corpus"].values()), ids=list(sts["corpus"]))
    qids = sorted(sts["qrels"])
    best = tune(index, sts["queries"], sts["qrels"], metric="recall@10",
                split=(qids[:12], qids[12:]), rrf=False)
    assert best["fusion"] == "weighted" and best.rrf_k is None
    assert all(g["weights"][2] == 0 for g in best.grid)
    assert best.dev_queries == qids[:12] and best.test_queries == qids[12:]
    with pytest.raises(ValueError, match="cannot serve.*dense, sparse, hybrid, hybrid-rrf"):
        evaluate(index, sts["queries"], sts["qrels"], modes=["colbert"])


def test_qdrant_index(m3_model: BGEM3Embedder, sts: dict, hybrid: HybridIndex) -> None:
    pytest.importorskip("qdrant_client")
    from bge_integrations.retrieval import QdrantHybridIndex

    index = QdrantHybridIndex(m3_model, location=":memory:")
    index.add(list(sts["corpus"].values()), ids=list(sts["corpus"]))
    report = evaluate(index, sts["queries"], sts["qrels"], k=(1, 10))
    embedded = evaluate(hybrid, sts["queries"], sts["qrels"], k=(1, 10))
    assert report.names == embedded.names
    for name in ("dense", "sparse"):  # exact searches on both backends: the same rankings,
        # but for near-equal scores of the tiny random model swapping places
        assert report.metrics[name] == pytest.approx(embedded.metrics[name], abs=0.01)
    best = tune(index, sts["queries"], sts["qrels"], split=0.5)
    assert best["fusion"] in ("weighted", "rrf")
    with pytest.raises(ValueError, match="not in the index"):
        evaluate(index, sts["queries"], {**sts["qrels"], next(iter(sts["qrels"])): {"zz": 1}})


def test_dense_index_and_its_modes(bert_embedder: BGEEmbedder, sts: dict) -> None:
    index = DenseIndex(bert_embedder)
    index.add(list(sts["corpus"].values()), ids=list(sts["corpus"]))
    report = evaluate(index, sts["queries"], sts["qrels"], k=10)
    assert report.names == ["dense"]
    texts = [sts["queries"][q] for q in sts["qrels"]]
    assert [report.ranked["dense"][q] for q in sts["qrels"]] == [
        [h.id for h in row] for row in index.search_many(texts, k=10)]
    with pytest.raises(ValueError, match="mode 'sparse'.*it serves: dense"):
        evaluate(index, sts["queries"], sts["qrels"], modes=["dense", "sparse"])
    with pytest.raises(ValueError, match="no weights to tune"):
        tune(index, sts["queries"], sts["qrels"])


def test_retrievers_through_their_settings(hybrid: HybridIndex, sts: dict) -> None:
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

    from bge_integrations.langchain import BGEM3Retriever as LCRetriever
    from bge_integrations.llama_index import BGEM3Retriever as LIRetriever

    def one(retriever: object, q: str) -> list[str]:  # a batch of one query, as invoke embeds
        report = evaluate(retriever, {q: sts["queries"][q]}, {q: sts["qrels"][q]}, k=5)
        assert report.names == ["retriever"]
        return report.ranked["retriever"][q]

    lc = LCRetriever(index=hybrid, k=2, mode="sparse")
    assert evaluate(lc, sts["queries"], sts["qrels"], k=(1, 5)).names == ["retriever"]
    for q, text in list(sts["queries"].items())[:3]:
        assert one(lc, q) == [d.id for d in lc.invoke(text, k=5)]
    li = LIRetriever(hybrid, similarity_top_k=5, mode="hybrid", weights=(0.6, 0.1, 0.3),
                     fusion="rrf")
    for q, text in list(sts["queries"].items())[:3]:
        assert one(li, q) == [n.node.node_id for n in li.retrieve(text)]
    # a retriever's filter applies to every mode asked for: nothing matches -> all zero
    li.filters = MetadataFilters(filters=[MetadataFilter(key="lang", value="xx")])
    report = evaluate(li, sts["queries"], sts["qrels"], k=5, modes=["dense", "hybrid"])
    assert report.metrics["dense"]["recall@5"] == 0.0 == report.metrics["hybrid"]["recall@5"]


# -- reranking ---------------------------------------------------------------------------------
class OverlapReranker:
    """A duck-typed reranker: score = shared lowercase words (it only has ``rerank``)."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, query: str, doc: str) -> float:
        return float(len(set(query.lower().split()) & set(doc.lower().split())))

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None
               ) -> list[tuple[int, float]]:
        self.calls += 1
        scored = sorted(((i, self.score(query, d)) for i, d in enumerate(documents)),
                        key=lambda p: -p[1])
        return scored[:top_n] if top_n is not None else scored


class BatchReranker(OverlapReranker):
    """Also has ``compute_score``: evaluation gives it every pair at once."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def compute_score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        self.batches.append(len(pairs))
        return np.array([self.score(q, d) for q, d in pairs])


def test_rerank_duck_typed(hybrid: HybridIndex, sts: dict) -> None:
    reranker = OverlapReranker()
    report = evaluate(hybrid, sts["queries"], sts["qrels"], k=(1, 10),
                      modes=["dense", "sparse"], rerank=reranker, rerank_depth=(5, 20))
    assert report.names == ["dense", "sparse", "dense+rerank@5", "dense+rerank@20",
                            "sparse+rerank@5", "sparse+rerank@20"]
    assert reranker.calls == len(sts["qrels"])  # once per query for both modes and depths
    q, text = next(iter(sts["queries"].items()))
    base = report.ranked["dense"][q]
    hits = {h.id: h.text for h in hybrid.search(text, k=20, mode="dense")}
    expected = sorted(base[:5], key=lambda d: -reranker.score(text, hits[d])) + base[5:]
    assert report.ranked["dense+rerank@5"][q] == expected
    assert report.settings["dense+rerank@20"] == {"mode": "dense", "rerank_depth": 20}
    batched = BatchReranker()
    again = evaluate(hybrid, sts["queries"], sts["qrels"], k=(1, 10), modes=["dense"],
                     rerank=batched, rerank_depth=20)
    assert batched.calls == 0 and len(batched.batches) == 1
    assert again.metrics["dense+rerank"] == report.metrics["dense+rerank@20"]
    with pytest.raises(TypeError, match="rerank"):
        evaluate(hybrid, sts["queries"], sts["qrels"], rerank=object())


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input(hybrid: HybridIndex, sts: dict) -> None:
    queries, qrels = sts["queries"], sts["qrels"]
    with pytest.raises(ValueError, match=r"query id\(s\) that are not in queries: 'nope'"):
        evaluate(hybrid, queries, {**qrels, "nope": {"d0001": 1}})
    bad_docs = {q: {**j, f"missing-{i}": 1} for i, (q, j) in enumerate(qrels.items())}
    with pytest.raises(ValueError, match=fr"{len(qrels)} document id\(s\) that are not in the "
                                         fr"index: 'missing-0', 'missing-1', .* and "
                                         fr"{len(qrels) - 5} more"):
        evaluate(hybrid, queries, bad_docs)
    for empty in ({}, {"q": {}}, {next(iter(qrels)): {"d0001": 0}}):
        with pytest.raises(ValueError, match="qrels are empty"):
            evaluate(hybrid, queries, empty)
    for k in (0, -1, (10, 0), ()):
        with pytest.raises(ValueError, match="k must be positive"):
            evaluate(hybrid, queries, qrels, k=k)
    with pytest.raises(ValueError, match="unknown mode 'bm25'; valid modes: dense, sparse"):
        evaluate(hybrid, queries, qrels, modes=["bm25"])
    with pytest.raises(ValueError, match="int grade"):
        evaluate(hybrid, queries, {next(iter(qrels)): {"d0001": "1"}})
    with pytest.raises(TypeError, match="cannot evaluate a dict"):
        evaluate({}, queries, qrels)
    with pytest.raises(ValueError, match="metric 'ndcg10'"):
        tune(hybrid, queries, qrels, metric="ndcg10")
    with pytest.raises(ValueError, match="in both"):
        tune(hybrid, queries, qrels, split=(list(qrels)[:3], list(qrels)[2:]))


def test_split_and_simplex() -> None:
    assert len(simplex(0.1)) == 66 and len(simplex(0.1, dims=2)) == 11
    assert all(abs(sum(w) - 1) < 1e-9 for w in simplex(0.2))
    dev, test = split_queries([f"q{i}" for i in range(10)], 0.3, seed=0)
    assert len(dev) == 3 and len(test) == 7 and not set(dev) & set(test)
    assert split_queries([f"q{i}" for i in range(10)], 0.3, seed=0) == (dev, test)
    with pytest.raises(ValueError, match="empty"):
        split_queries(["a", "b"], 0.1)


# -- data ----------------------------------------------------------------------------------------
def test_load_beir_and_errors(tmp_path: Path) -> None:
    write_beir(tmp_path / "set", {"d1": {"title": "Paris", "text": "is in France"},
                                  "d2": {"title": "", "text": "Pandas eat bamboo"}},
               {"q1": "where is Paris?", "q2": "food of pandas"},
               {"test": {"q1": {"d1": 1}}, "dev": {"q2": {"d2": 2}}})
    data = load_beir(tmp_path / "set", split="dev")
    assert data.qrels == {"q2": {"d2": 2}} and data.queries["q1"] == "where is Paris?"
    assert data.documents() == (["d1", "d2"], ["Paris is in France", "Pandas eat bamboo"])
    with pytest.raises(FileNotFoundError, match="splits found: dev, test"):
        load_beir(tmp_path / "set", split="train")
    (tmp_path / "set" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td9\t1\n")
    with pytest.raises(ValueError, match="not in corpus.jsonl: 'd9'"):
        load_beir(tmp_path / "set")
    (tmp_path / "set" / "qrels" / "test.tsv").write_text("q1\td1\tmaybe\n")
    with pytest.raises(ValueError, match="line 1: expected"):
        load_beir(tmp_path / "set")


def test_shipped_sts_set_is_what_the_builder_makes(tmp_path: Path) -> None:
    counts = build_sts_retrieval(DATA / "sts-dev.csv", tmp_path / "sts")
    assert counts == {"documents": 1467, "queries": 262, "dev": 131, "test": 131}
    shipped = sts_retrieval_dir()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/dev.tsv", "qrels/test.tsv"):
        assert (tmp_path / "sts" / name).read_bytes() == (shipped / name).read_bytes(), name
    assert (shipped / "LICENSE.txt").read_text() == (DATA / "STS-LICENSE.txt").read_text()
    dev, test = load_beir(shipped, "dev"), load_beir(shipped, "test")
    assert not dev.qrels.keys() & test.qrels.keys()


# -- command line ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory: pytest.TempPathFactory, sts: dict) -> Path:
    """The STS slice in BEIR layout, with a dev split (11 queries) and a test split."""
    folder = tmp_path_factory.mktemp("beir") / "sts-slice"
    qids = sorted(sts["qrels"])
    write_beir(folder, {d: {"title": "", "text": t} for d, t in sts["corpus"].items()},
               sts["queries"], {"dev": {q: sts["qrels"][q] for q in qids[:11]},
                                "test": {q: sts["qrels"][q] for q in qids[11:]}})
    return folder


def test_cli_eval_tune_writes_json_and_png(beir_dir: Path, tiny_m3: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from bge_integrations.cli import main

    out = tmp_path / "report"
    assert main(["eval", str(beir_dir), "--model", tiny_m3, "--device", "cpu", "--tune",
                 "-k", "1,10", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0].split() == ["setting", "ndcg@10", "mrr@10", "map@10", "recall@10"]
    assert [line.split()[0] for line in lines[1:7]] == [
        "dense", "sparse", "colbert", "hybrid", "hybrid-rrf", "tuned"]
    assert "Significance (ranx, paired t-test" in printed.out
    assert "tuned on qrels/dev.tsv (11 queries)" in printed.err
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["queries"] == len(sts_qrels := saved["per_query"]["dense"]["ndcg@10"])
    assert sorted(sts_qrels) == sorted(load_beir(beir_dir, "test").qrels)
    assert saved["tuning"]["test_score"] == pytest.approx(saved["metrics"]["tuned"]["ndcg@10"])
    assert saved["tuning"]["dev_queries"] == 11 and saved["settings"]["tuned"]["mode"] == "hybrid"
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_cli_eval_dense_model_and_errors(beir_dir: Path, tiny_bert: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from bge_integrations.cli import main

    assert main(["eval", str(beir_dir), "--model", tiny_bert, "--device", "cpu", "-k", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["setting", "dense"]
    for args, message in ((["--tune"], "no weights to tune"),
                          (["--modes", "dense,bm25"], "unknown mode 'bm25'"),
                          (["--split", "train"], "splits found: dev, test")):
        assert main(["eval", str(beir_dir), "--model", tiny_bert, *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert [line for line in err if "error:" in line] == err[-1:], err
        assert message in err[-1] and "indexed" not in " ".join(err), err  # before indexing


@pytest.mark.slow
def test_minilm_numbers_in_the_docs(minilm_dir: str) -> None:
    """docs/evaluation.md records the real all-MiniLM-L6-v2's scores on the shipped set."""
    data = load_beir(sts_retrieval_dir(), split="test")
    ids, texts = data.documents()
    index = DenseIndex(BGEEmbedder(minilm_dir, pooling="mean", device="cpu"))
    index.add(texts, ids=ids)
    m = evaluate(index, data.queries, data.qrels).metrics["dense"]
    row = " | ".join(f"{m[name]:.4f}" for name in ("ndcg@10", "mrr@10", "map@10", "recall@1",
                                                   "recall@10", "recall@100"))
    docs = (Path(__file__).parent.parent / "docs" / "evaluation.md").read_text()
    assert f"| test ({len(data.qrels)}) | {row} |" in docs


def test_ten_thousand_queries_are_searched_in_blocks() -> None:
    """A 10k-query run is a handful of search_many calls (one model call each), not 10k."""

    class Recording(FakeDenseIndex):
        def __init__(self) -> None:
            super().__init__({})
            self.calls: list[int] = []

        def search_many(self, queries, k=10, filter=None):
            self.calls.append(len(queries))
            return [[Hit(f"d{q}", "", {}, 1.0, {"dense": 1.0})] for q in queries]

    index = Recording()
    queries = {f"{i}": f"{i}" for i in range(10_000)}
    report = evaluate(index, queries, {q: {f"d{q}": 1} for q in queries}, k=1)
    assert index.calls == [1024] * 9 + [784]
    assert report.metrics["dense"]["mrr@1"] == 1.0


def test_any_langchain_or_llama_index_retriever(tiny_bert: str, sts: dict) -> None:
    """Other frameworks' retrievers run through their own public interface."""
    from langchain_core.vectorstores import InMemoryVectorStore
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from bge_integrations.langchain import BGEEmbeddings
    from bge_integrations.llama_index import BGEEmbedding

    store = InMemoryVectorStore(BGEEmbeddings(model_name=tiny_bert, device="cpu"))
    store.add_texts(list(sts["corpus"].values()), ids=list(sts["corpus"]))
    lc = store.as_retriever(search_kwargs={"k": 10})
    report = evaluate(lc, sts["queries"], sts["qrels"], k=(1, 10))
    assert report.names == ["retriever"]
    q, text = next(iter(sts["queries"].items()))
    assert report.ranked["retriever"][q] == [d.id for d in lc.invoke(text)]
    nodes = [TextNode(id_=d, text=t) for d, t in sts["corpus"].items()]
    li = VectorStoreIndex(nodes, embed_model=BGEEmbedding(model_name=tiny_bert, device="cpu")
                          ).as_retriever(similarity_top_k=10)
    report = evaluate(li, sts["queries"], sts["qrels"], k=10, rerank=OverlapReranker(),
                      rerank_depth=5)
    assert report.names == ["retriever", "retriever+rerank"]
    assert report.ranked["retriever"][q] == [n.node.node_id for n in li.retrieve(text)]
    with pytest.raises(ValueError, match="its own settings only"):
        evaluate(li, sts["queries"], sts["qrels"], modes=["dense"])
    with pytest.raises(ValueError, match="no weights to tune"):
        tune(li, sts["queries"], sts["qrels"])
    store.add_texts(["a text without the id the qrels use"])  # fresh uuid ids: still fine
    assert evaluate(lc, sts["queries"], sts["qrels"], k=1).names == ["retriever"]


def test_bge_reranker(hybrid: HybridIndex, tiny_reranker: str, sts: dict, beir_dir: Path,
                      tiny_m3: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bge_integrations import BGEReranker
    from bge_integrations.cli import main
    from bge_integrations.langchain import BGEM3Retriever

    reranker = BGEReranker(tiny_reranker, device="cpu")
    report = evaluate(hybrid, sts["queries"], sts["qrels"], k=(1, 10), modes=["dense"],
                      rerank=reranker, rerank_depth=10)
    assert report.names == ["dense", "dense+rerank"]
    q, text = next(iter(sts["queries"].items()))
    hits = hybrid.search_many([sts["queries"][x] for x in sts["qrels"]], k=10, mode="dense")[0]
    order = reranker.rerank(text, [h.text for h in hits], top_n=None)
    assert report.ranked["dense+rerank"][q] == [hits[i].id for i, _ in order]
    # a retriever that reranks runs as it is: its results are what invoke returns
    retriever = BGEM3Retriever(index=hybrid, k=5, mode="dense", rerank=reranker, candidates=8)
    one = evaluate(retriever, {q: text}, {q: sts["qrels"][q]}, k=5)
    assert one.ranked["retriever"][q] == [d.id for d in retriever.invoke(text)]
    assert main(["eval", str(beir_dir), "--model", tiny_m3, "--device", "cpu", "--modes",
                 "dense,hybrid", "-k", "10", "--rerank", tiny_reranker, "--rerank-depth",
                 "20"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:5]]
    assert names == ["dense", "hybrid", "dense+rerank", "hybrid+rerank"]
