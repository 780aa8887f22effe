"""BGE-M3: dense, sparse and ColBERT outputs and all scores against independent reference math."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from helpers import assert_sparse_close
from transformers import AutoModel, AutoTokenizer

from bge_integrations import BGEEmbedder, BGEM3Embedder, M3Output

QUERIES = ["what is BGE-M3?", "panda panda bear", ""]
PASSAGES = [
    "BGE-M3 gives dense, sparse and ColBERT vectors from one forward pass.",
    "The giant panda is a bear species endemic to China. The panda eats bamboo.",
    "Paris",
    "Hybrid search fuses dense, sparse and multi-vector scores. " * 5,
]


def reference_m3(path: str, texts: list[str], max_length: int = 8192) -> dict:
    """BGE-M3 inference recomputed from the paper / FlagEmbedding: one padded batch."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    hidden_size = model.config.hidden_size
    colbert = torch.nn.Linear(hidden_size, hidden_size)
    colbert.load_state_dict(torch.load(os.path.join(path, "colbert_linear.pt"),
                                       weights_only=True))
    sparse = torch.nn.Linear(hidden_size, 1)
    sparse.load_state_dict(torch.load(os.path.join(path, "sparse_linear.pt"), weights_only=True))
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
        dense = torch.nn.functional.normalize(h[:, 0], dim=-1).numpy()
        weights = torch.relu(sparse(h)).squeeze(-1)
        vocab = torch.zeros(len(texts), len(tok))
        vocab = vocab.scatter_reduce(-1, batch["input_ids"], weights, reduce="amax")
        vocab[:, [tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id]] = 0
        cvecs = colbert(h[:, 1:]) * batch["attention_mask"][:, 1:, None].float()
        cvecs = torch.nn.functional.normalize(cvecs, dim=-1).numpy()
    n_tokens = batch["attention_mask"].sum(1).numpy()
    return {
        "dense": dense,
        "sparse": [{int(i): float(row[i]) for i in np.nonzero(row)[0]} for row in vocab.numpy()],
        "colbert": [cvecs[i, : n_tokens[i] - 1] for i in range(len(texts))],
    }


def ref_lexical(q: dict, p: dict) -> float:
    return sum(w * p[t] for t, w in q.items() if t in p)


def ref_colbert(q: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([max(float(qv @ pv) for pv in p) for qv in q]))


def test_outputs_match_reference(m3: BGEM3Embedder, tiny_m3: str) -> None:
    out = m3.encode_documents(PASSAGES, dense=True, sparse=True, colbert=True)
    ref = reference_m3(tiny_m3, PASSAGES)
    np.testing.assert_allclose(out.dense, ref["dense"], atol=1e-5)
    assert out.dense.dtype == np.float32
    assert_sparse_close(out.sparse, ref["sparse"])
    for got, want, text in zip(out.colbert, ref["colbert"], PASSAGES, strict=True):
        assert got.shape == want.shape
        assert got.shape[0] == len(m3.tokenizer(text)["input_ids"]) - 1
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_sparse_drops_special_tokens_and_keeps_the_max_of_repeats(m3: BGEM3Embedder,
                                                                 tiny_m3: str) -> None:
    out = m3.encode(["panda panda panda bear"], dense=False, sparse=True)
    weights = out.sparse[0]
    tok = m3.tokenizer
    special = {tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
    assert not special & set(weights)
    assert all(w > 0 and isinstance(k, int) for k, w in weights.items())
    assert out.dense is None and out.colbert is None
    ids = tok("panda panda panda bear")["input_ids"]
    assert len(ids) > len(set(ids))  # the text repeats tokens
    assert set(weights) <= set(ids) - special
    assert_sparse_close(out.sparse, reference_m3(tiny_m3, ["panda panda panda bear"])["sparse"])


def test_only_requested_heads_run(m3: BGEM3Embedder) -> None:
    out = m3.encode_queries(["a"], dense=False, sparse=False, colbert=True)
    assert out.dense is None and out.sparse is None and len(out.colbert) == 1
    with pytest.raises(ValueError, match="at least one output"):
        m3.encode(["a"], dense=False, sparse=False, colbert=False)


def test_order_independence(m3: BGEM3Embedder) -> None:
    small_batches = BGEM3Embedder(m3.model_name, device="cpu", max_batch_tokens=32)
    together = m3.encode(PASSAGES + QUERIES, colbert=True)
    alone = [small_batches.encode([t], colbert=True) for t in PASSAGES + QUERIES]
    for i, single in enumerate(alone):
        np.testing.assert_allclose(together.dense[i], single.dense[0], atol=1e-5)
        assert_sparse_close([together.sparse[i]], single.sparse)
        np.testing.assert_allclose(together.colbert[i], single.colbert[0], atol=1e-5)


def test_all_five_scores_match_reference(m3: BGEM3Embedder, tiny_m3: str) -> None:
    pairs = [(q, p) for q in QUERIES for p in PASSAGES]
    weights = (0.4, 0.2, 0.4)
    scores = m3.compute_score(pairs, weights=weights)
    rq, rp = reference_m3(tiny_m3, QUERIES), reference_m3(tiny_m3, PASSAGES)
    for n, (q, p) in enumerate(pairs):
        i, j = QUERIES.index(q), PASSAGES.index(p)
        d = float(rq["dense"][i] @ rp["dense"][j])
        s = ref_lexical(rq["sparse"][i], rp["sparse"][j])
        c = ref_colbert(rq["colbert"][i], rp["colbert"][j])
        assert scores["dense"][n] == pytest.approx(d, abs=1e-5)
        assert scores["sparse"][n] == pytest.approx(s, abs=1e-5)
        assert scores["colbert"][n] == pytest.approx(c, abs=1e-5)
        assert scores["sparse+dense"][n] == pytest.approx((0.2 * s + 0.4 * d) / 0.6, abs=1e-5)
        assert scores["colbert+sparse+dense"][n] == pytest.approx(
            (0.4 * c + 0.2 * s + 0.4 * d) / 1.0, abs=1e-5)
    single = m3.compute_score((QUERIES[0], PASSAGES[0]), weights=(1, 1, 1))
    assert isinstance(single["dense"], float)
    assert single["colbert+sparse+dense"] == pytest.approx(
        (single["dense"] + single["sparse"] + single["colbert"]) / 3, abs=1e-6)


def test_batched_scores_equal_pairwise_scores(m3: BGEM3Embedder) -> None:
    q = m3.encode_queries(QUERIES, colbert=True)
    p = m3.encode_documents(PASSAGES, colbert=True)
    lex = m3.lexical_score(q.sparse, p.sparse)
    col = m3.colbert_score(q.colbert, p.colbert)
    matrices = m3.score_outputs(q, p)
    assert lex.shape == col.shape == (len(QUERIES), len(PASSAGES))
    for i in range(len(QUERIES)):
        for j in range(len(PASSAGES)):
            assert lex[i, j] == pytest.approx(m3.lexical_score(q.sparse[i], p.sparse[j]), abs=1e-6)
            assert col[i, j] == pytest.approx(m3.colbert_score(q.colbert[i], p.colbert[j]),
                                              abs=1e-6)
            assert col[i, j] == pytest.approx(ref_colbert(q.colbert[i], p.colbert[j]), abs=1e-5)
            assert matrices["dense"][i, j] == pytest.approx(float(q.dense[i] @ p.dense[j]),
                                                            abs=1e-6)


def test_colbert_chunking_gives_the_same_matrix() -> None:
    from bge_integrations.core.scores import colbert_scores

    rng = np.random.default_rng(0)
    qs = [rng.standard_normal((rng.integers(1, 6), 8)).astype(np.float32) for _ in range(4)]
    ps = [rng.standard_normal((rng.integers(1, 9), 8)).astype(np.float32) for _ in range(7)]
    full = colbert_scores(qs, ps)
    np.testing.assert_allclose(colbert_scores(qs, ps, chunk_elems=10), full, atol=1e-6)
    for i, q in enumerate(qs):
        for j, p in enumerate(ps):
            assert full[i, j] == pytest.approx(ref_colbert(q, p), abs=1e-5)


def test_sparse_as_csr_and_index_value_arrays(m3: BGEM3Embedder) -> None:
    out = m3.encode(PASSAGES)
    csr = out.sparse_csr(m3.vocab_size)
    assert isinstance(csr, sp.csr_matrix) and csr.shape == (len(PASSAGES), m3.vocab_size)
    for row, vec in enumerate(out.sparse):
        assert csr[row, list(vec)].toarray().ravel() == pytest.approx(list(vec.values()))
        idx, val = out.sparse_arrays()[row]
        assert list(idx) == sorted(vec) and idx.dtype == np.int64 and val.dtype == np.float32
        assert dict(zip(idx.tolist(), val.tolist())) == pytest.approx(vec)
    with pytest.raises(ValueError, match="no sparse part"):
        M3Output(dense=out.dense).sparse_arrays()


def test_convert_to_tokens(m3: BGEM3Embedder) -> None:
    out = m3.encode(["panda bear"], dense=False)
    tokens = m3.convert_to_tokens(out.sparse[0])
    assert set(tokens.values()) == set(out.sparse[0].values())
    assert all(isinstance(t, str) for t in tokens)
    assert m3.convert_to_tokens(out.sparse) == [tokens]


def test_empty_inputs_and_bad_inputs(m3: BGEM3Embedder) -> None:
    out = m3.encode_documents([], colbert=True)
    assert out.dense.shape == (0, m3.dim) and out.sparse == [] and out.colbert == []
    empty = m3.encode([""], colbert=True)
    assert empty.colbert[0].shape == (1, m3.dim)  # "</s>" after CLS
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        m3.encode(["a", None])
    with pytest.raises(TypeError, match="single str"):
        m3.encode_queries("a query")


def test_score_input_errors(m3: BGEM3Embedder) -> None:
    a = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="dimensions differ"):
        m3.colbert_score(a, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="non-empty 2-D"):
        m3.colbert_score(np.zeros((0, 4), np.float32), a)
    with pytest.raises(ValueError, match="weights"):
        m3.compute_score([("a", "b")], weights=(1, 1))
    with pytest.raises(ValueError, match="weights"):
        m3.compute_score([("a", "b")], weights=(0, 0, 0))
    with pytest.raises(TypeError, match="pairs"):
        m3.compute_score(["not a pair"])
    with pytest.raises(TypeError, match="two sparse dicts"):
        m3.lexical_score({1: 1.0}, [{1: 1.0}])
    assert m3.compute_score([]) == {k: [] for k in
                                    ("dense", "sparse", "colbert", "sparse+dense",
                                     "colbert+sparse+dense")}


def test_missing_head_file_is_a_clear_error(tiny_m3_no_heads: str) -> None:
    m3 = BGEM3Embedder(tiny_m3_no_heads, device="cpu")
    assert m3.encode(["dense only works"], sparse=False).dense.shape == (1, m3.dim)
    with pytest.raises(FileNotFoundError, match="sparse_linear.pt"):
        m3.encode(["x"], sparse=True)
    with pytest.raises(FileNotFoundError, match="colbert_linear.pt"):
        m3.encode(["x"], sparse=False, colbert=True)


def test_head_with_wrong_shape_is_rejected(tiny_m3: str, tmp_path) -> None:
    bad = tmp_path / "bge-m3-bad"
    shutil.copytree(tiny_m3, bad)
    torch.save(torch.nn.Linear(7, 1).state_dict(), bad / "sparse_linear.pt")
    with pytest.raises(ValueError, match="Linear"):
        BGEM3Embedder(str(bad), device="cpu").encode(["x"])


def test_long_inputs_default_to_8192_tokens(m3: BGEM3Embedder) -> None:
    assert m3.passage_max_length == 8192 and m3.query_max_length == 512
    long_text = "panda " * 9000
    out = m3.encode_documents([long_text], sparse=False, colbert=True)
    assert out.colbert[0].shape[0] == 8191
    assert m3.encode_queries([long_text], sparse=False, colbert=True).colbert[0].shape[0] == 511


def test_dense_embedder_on_m3_gives_the_cls_vector(m3: BGEM3Embedder, tiny_m3: str) -> None:
    dense = BGEEmbedder(tiny_m3, device="cpu")
    assert dense.spec.query_instruction is None and dense.spec.pooling.value == "cls"
    np.testing.assert_allclose(dense.encode_queries(QUERIES), m3.encode_queries(QUERIES).dense,
                               atol=1e-6)


def test_half_precision_heads_follow_the_backbone_dtype(tiny_m3: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without native bf16 warns
        m3_bf16 = BGEM3Embedder(tiny_m3, device="cpu", dtype="bfloat16")
    out = m3_bf16.encode(["panda bear"], colbert=True)
    full = BGEM3Embedder(tiny_m3, device="cpu").encode(["panda bear"], colbert=True)
    assert out.dense.dtype == np.float32 and out.colbert[0].dtype == np.float32
    np.testing.assert_allclose(out.dense, full.dense, atol=5e-2)
