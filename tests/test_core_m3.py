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
        (single["dense"] + single["sparse"] + single["colbert"]) / 3, abs=1e-5)


def test_batched_scores_equal_pairwise_scores(m3: BGEM3Embedder) -> None:
    q = m3.encode_queries(QUERIES, colbert=True)
    p = m3.encode_documents(PASSAGES, colbert=True)
    lex = m3.lexical_score(q.sparse, p.sparse)
    col = m3.colbert_score(q.colbert, p.colbert)
    matrices = m3.score_outputs(q, p)
    assert lex.shape == col.shape == (len(QUERIES), len(PASSAGES))
    for i in range(len(QUERIES)):
        for j in range(len(PASSAGES)):
            assert lex[i, j] == pytest.approx(m3.lexical_score(q.sparse[i], p.sparse[j]),
                                              rel=1e-5, abs=1e-7)
            assert col[i, j] == pytest.approx(m3.colbert_score(q.colbert[i], p.colbert[j]),
                                              abs=1e-5)
            assert col[i, j] == pytest.approx(ref_colbert(q.colbert[i], p.colbert[j]), abs=1e-5)
            assert matrices["dense"][i, j] == pytest.approx(float(q.dense[i] @ p.dense[j]),
                                                            abs=1e-5)


def test_colbert_chunking_gives_the_same_matrix() -> None:
    from bge_integrations.core.scores import colbert_scores

    rng = np.random.default_rng(0)
    qs = [rng.standard_normal((rng.integers(1, 6), 8)).astype(np.float32) for _ in range(4)]
    ps = [rng.standard_normal((rng.integers(1, 9), 8)).astype(np.float32) for _ in range(7)]
    full = colbert_scores(qs, ps)
    # unnormalised random vectors: the tolerance scales with the scores' size
    np.testing.assert_allclose(colbert_scores(qs, ps, chunk_elems=10), full, rtol=1e-5,
                               atol=1e-6 * float(np.abs(full).max()))
    for i, q in enumerate(qs):
        for j, p in enumerate(ps):
            assert full[i, j] == pytest.approx(ref_colbert(q, p), rel=1e-5, abs=1e-6)


def test_sparse_as_csr_and_index_value_arrays(m3: BGEM3Embedder) -> None:
    out = m3.encode(PASSAGES)
    csr = out.sparse_csr(m3.vocab_size)
    assert isinstance(csr, sp.csr_matrix) and csr.shape == (len(PASSAGES), m3.vocab_size)
    for row, vec in enumerate(out.sparse):
        assert csr[row, list(vec)].toarray().ravel() == pytest.approx(list(vec.values()))
        idx, val = out.sparse_arrays()[row]
        assert list(idx) == sorted(vec) and idx.dtype == np.int64 and val.dtype == np.float32
        assert dict(zip(idx.tolist(), val.tolist(), strict=False)) == pytest.approx(vec)
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


def test_a_checkpoint_without_heads_is_refused_at_construction(tiny_m3_no_heads: str,
                                                              tiny_m3: str, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="not a BGE-M3 checkpoint.*colbert_linear.pt.*"
                                                "sparse_linear.pt.*BGEEmbedder"):
        BGEM3Embedder(tiny_m3_no_heads, device="cpu")
    one_head = tmp_path / "bge-m3"
    shutil.copytree(tiny_m3, one_head)
    (one_head / "colbert_linear.pt").unlink()
    sparse_only = BGEM3Embedder(str(one_head), device="cpu")  # the outputs it has still work
    assert len(sparse_only.encode(["x"], sparse=True).sparse) == 1
    with pytest.raises(FileNotFoundError, match="needs 'colbert_linear.pt'.*colbert=False"):
        sparse_only.encode(["x"], colbert=True)
    # the dense CLS vector of such a checkpoint stays reachable, as the message says
    dense = BGEEmbedder(tiny_m3_no_heads, pooling="cls", device="cpu")
    assert dense.encode(["dense only works"]).shape == (1, dense.dim)


def _with_head(tiny_m3: str, tmp_path, name: str, state: object, *, deflate: bool = False
               ) -> str:
    """A copy of the tiny M3 whose ``name`` head file holds ``state``."""
    import zipfile

    folder = tmp_path / "bge-m3"
    shutil.copytree(tiny_m3, folder)
    path = folder / name
    torch.save(state, path)
    if deflate:  # the same archive, compressed: a small file that unpacks large
        plain = zipfile.ZipFile(path)
        entries = [(info.filename, plain.read(info.filename)) for info in plain.infolist()]
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
            for filename, data in entries:
                out.writestr(filename, data)
    return str(folder)


@pytest.mark.parametrize(("name", "state", "match"), [
    ("sparse_linear.pt", torch.nn.Linear(7, 1).state_dict(), r"Linear\(32, 1\)"),
    ("sparse_linear.pt", torch.nn.Linear(32, 2).state_dict(), r"Linear\(32, 1\)"),
    ("colbert_linear.pt", torch.nn.Linear(32, 64).state_dict(), r"Linear\(32, <= 32\)"),
    ("colbert_linear.pt", {"weight": torch.ones(32, 32), "extra": torch.ones(1)}, "extra"),
    ("colbert_linear.pt", {"weight": torch.ones(32, 32, dtype=torch.int64)}, "Linear"),
    ("colbert_linear.pt", {"weight": torch.ones(32, 32), "bias": torch.ones(31)}, "Linear"),
    ("colbert_linear.pt", [torch.ones(32, 32)], "Linear"),
    # Linear(32, 4194304) in a file of a few hundred bytes (stride-0 views of one number):
    # refused from the shapes read, before anything of that size exists
    ("colbert_linear.pt", {"weight": torch.zeros(1, 1).expand(4_194_304, 32),
                           "bias": torch.zeros(1).expand(4_194_304)}, r"\(4194304, 32\)"),
])
def test_head_files_are_checked_against_the_backbone(tiny_m3: str, tmp_path, name: str,
                                                     state: object, match: str) -> None:
    m3 = BGEM3Embedder(_with_head(tiny_m3, tmp_path, name, state), device="cpu")
    with pytest.raises(ValueError, match=match):  # before any text runs
        m3.encode([], sparse=True, colbert=True)


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(tiny_m3: str, tmp_path) -> None:
    folder = tmp_path / "bge-m3"
    shutil.copytree(tiny_m3, folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_m3)
    rows = AutoModel.from_pretrained(tiny_m3).config.vocab_size
    tokenizer.add_tokens([f"newtoken{i}" for i in range(5)])  # ids past the table
    tokenizer.save_pretrained(folder)
    with pytest.raises(ValueError, match=f"tokenizer has {rows + 5} tokens but the backbone's "
                                         f"embedding table has {rows} rows"):
        BGEM3Embedder(str(folder), device="cpu")


def test_a_compressed_head_that_unpacks_large_is_refused_by_its_size(tiny_m3: str,
                                                                     tmp_path) -> None:
    big = torch.nn.Linear(32, 1 << 16).state_dict()  # 8 MiB of tensors, deflated to a few KiB
    for tensor in big.values():
        tensor.zero_()
    folder = _with_head(tiny_m3, tmp_path, "colbert_linear.pt", big, deflate=True)
    assert os.path.getsize(os.path.join(folder, "colbert_linear.pt")) < 100_000
    with pytest.raises(ValueError, match="bytes of data, more than a head of this model's "
                                         r"width \(32\) needs"):
        BGEM3Embedder(folder, device="cpu").encode(["x"], colbert=True)


def test_a_compressed_head_of_the_right_size_still_loads(tiny_m3: str, tmp_path) -> None:
    state = torch.load(os.path.join(tiny_m3, "colbert_linear.pt"), weights_only=True)
    folder = _with_head(tiny_m3, tmp_path, "colbert_linear.pt", state, deflate=True)
    got = BGEM3Embedder(folder, device="cpu").encode(["panda"], colbert=True).colbert[0]
    want = BGEM3Embedder(tiny_m3, device="cpu").encode(["panda"], colbert=True).colbert[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_heads_ignore_another_threads_default_dtype(tiny_m3: str, tmp_path) -> None:
    """A thread inside a bfloat16 ``from_pretrained`` flips torch's process-wide default
    dtype; float32 heads built meanwhile must hold the file's exact float32 values."""
    import threading

    folder = tmp_path / "bge-m3"
    shutil.copytree(tiny_m3, folder)  # a new path: a new cache entry, heads built afresh
    inside, leave = threading.Event(), threading.Event()

    def bf16_loader() -> None:
        torch.set_default_dtype(torch.bfloat16)
        inside.set()
        leave.wait(60)
        torch.set_default_dtype(torch.float32)

    thread = threading.Thread(target=bf16_loader)
    thread.start()
    inside.wait(60)
    try:
        m3 = BGEM3Embedder(str(folder), device="cpu", dtype="float32")
        heads = {name: m3._device_heads(name)[torch.device("cpu")]
                 for name in ("sparse", "colbert")}  # built now, under the bf16 default
    finally:
        leave.set()
        thread.join()
    assert torch.get_default_dtype() == torch.float32
    for name, head in heads.items():
        want = torch.load(folder / f"{name}_linear.pt", weights_only=True)
        assert head.weight.dtype == torch.float32 and not head.weight.requires_grad
        assert torch.equal(head.weight, want["weight"]) and torch.equal(head.bias, want["bias"])


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
                               atol=1e-5)


def test_half_precision_heads_follow_the_backbone_dtype(tiny_m3: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without native bf16 warns
        m3_bf16 = BGEM3Embedder(tiny_m3, device="cpu", dtype="bfloat16")
    out = m3_bf16.encode(["panda bear"], colbert=True)
    full = BGEM3Embedder(tiny_m3, device="cpu").encode(["panda bear"], colbert=True)
    assert out.dense.dtype == np.float32 and out.colbert[0].dtype == np.float32
    np.testing.assert_allclose(out.dense, full.dense, atol=5e-2)
