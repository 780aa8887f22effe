"""write_index: an embedded dataset goes into HybridIndex / DenseIndex through add_embeddings
and searches exactly like an index built with add; vectors of another model are refused."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("ray.data")

from bge_integrations import BGEEmbedder, BGEM3Embedder, DenseIndex, HybridIndex  # noqa: E402
from bge_integrations.distributed import columns as C  # noqa: E402
from bge_integrations.distributed import write_index  # noqa: E402

TEXTS = [f"note {i}: " + " ".join(f"term{(i * 3 + j) % 19}" for j in range(i % 7 + 2))
         for i in range(25)]
IDS = [f"n{i}" for i in range(len(TEXTS))]
METAS = [{"group": i % 3} for i in range(len(TEXTS))]


def dataset(ray, dense: np.ndarray, out=None, *, colbert: bool = True, tokens: bool = True):
    n = len(TEXTS)
    table = pa.table({"id": IDS, "text": TEXTS, "group": [m["group"] for m in METAS]})
    table = table.append_column(C.EMBEDDING, C.dense_column(dense, np.ones(n, bool)))
    if out is not None:
        for name, col in zip((C.SPARSE_INDICES, C.SPARSE_VALUES), C.sparse_columns(out.sparse),
                             strict=True):
            table = table.append_column(name, col)
        if colbert:
            table = table.append_column(C.COLBERT, C.colbert_column(out.colbert, dense.shape[1],
                                                                    np.float32))
    if tokens:
        table = table.append_column(C.NUM_TOKENS, pa.array([2] * n, pa.int32()))
    return ray.data.from_arrow([table.slice(0, 10), table.slice(10, 10), table.slice(20)])


def assert_same_search(ours, reference, queries=("term4 term7", "note 12")) -> None:
    for query in queries:
        got, want = ours.search(query, k=6), reference.search(query, k=6)
        assert [h.id for h in got] == [h.id for h in want]
        assert [h.metadata for h in got] == [h.metadata for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5,
                                   rtol=0)


def test_hybrid_index_from_dataset(ray_cluster, m3: BGEM3Embedder) -> None:
    out = m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    index = HybridIndex(m3)
    summary = write_index(dataset(ray_cluster, out.dense, out), index, batch_size=7)
    assert (summary.rows, summary.tokens, len(index)) == (25, 50, 25)
    reference = HybridIndex(m3)
    reference.add(TEXTS, metadatas=METAS, ids=IDS)
    assert_same_search(index, reference)


def test_dense_index_from_dataset(ray_cluster, bert_embedder: BGEEmbedder) -> None:
    index = DenseIndex(bert_embedder)
    summary = write_index(dataset(ray_cluster, bert_embedder.encode_documents(TEXTS),
                                  tokens=False), index)
    assert (summary.rows, summary.tokens) == (25, None)
    reference = DenseIndex(bert_embedder)
    reference.add(TEXTS, metadatas=METAS, ids=IDS)
    assert_same_search(index, reference)


def test_other_models_vectors_and_missing_columns_are_refused(
        ray_cluster, m3: BGEM3Embedder, bert_embedder: BGEEmbedder) -> None:
    out = m3.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    index = HybridIndex(m3)
    with pytest.raises(ValueError, match="not made by this index's model"):
        write_index(dataset(ray_cluster, bert_embedder.encode_documents(TEXTS), out), index)
    with pytest.raises(ValueError, match=r"no 'colbert' column\(s\) for this HybridIndex \(embed "
                                         r"with colbert=True"):
        write_index(dataset(ray_cluster, out.dense, out, colbert=False), index)
    with pytest.raises(ValueError, match="no 'sparse_indices', 'sparse_values', 'colbert' column"):
        write_index(dataset(ray_cluster, out.dense), index)
    assert len(index) == 0
    assert len(HybridIndex(m3, store_colbert=False)) == 0
    light = HybridIndex(m3, store_colbert=False)
    write_index(dataset(ray_cluster, out.dense, out, colbert=False), light)
    assert len(light) == 25
