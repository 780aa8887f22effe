"""Parity: our embeddings equal the reference math recomputed independently, within 1e-5.

The reference here is written from FlagEmbedding 1.4.2's behaviour, not from our code: the
tokenizer pads a whole batch, the backbone runs once, pooling and normalization are spelled out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from bge_integrations import BGEEmbedder

EN = "Represent this sentence for searching relevant passages: "
QUERIES = ["what is a panda?", "", "hybrid search with dense and sparse scores " * 3]
PASSAGES = [
    "The giant panda is a bear species endemic to China.",
    "Paris is the capital of France.",
    "x",
    "Vector databases store embeddings. " * 40,  # longer than the max length: truncated
]


def reference(path: str, texts: list[str], pooling: str, max_length: int = 512,
              tokenized: list[list[int]] | None = None) -> np.ndarray:
    """Plain transformers forward on one padded batch + explicit pooling + L2 norm."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    if tokenized is None:
        batch = tok(texts, padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
    else:
        batch = tok.pad({"input_ids": tokenized}, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"]
    if pooling == "cls":
        vecs = hidden[:, 0]
    elif pooling == "mean":
        vecs = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    else:  # last real token, whichever side the padding is on
        if tok.padding_side == "left":
            vecs = hidden[:, -1]
        else:
            vecs = hidden[torch.arange(len(hidden)), mask.sum(1) - 1]
    vecs = vecs / vecs.norm(dim=-1, keepdim=True)
    return vecs.numpy()


def test_bge_v15_queries_get_the_instruction_and_cls_pooling(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", batch_size=2, max_batch_tokens=64)
    assert emb.spec.query_instruction == EN
    got = emb.encode_queries(QUERIES)
    want = reference(tiny_bert, [EN + q for q in QUERIES], "cls")
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_bge_v15_documents_get_no_instruction(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", passage_max_length=48)
    got = emb.encode_documents(PASSAGES)
    np.testing.assert_allclose(got, reference(tiny_bert, PASSAGES, "cls", max_length=48),
                               atol=1e-5)
    np.testing.assert_allclose(emb.encode(PASSAGES, max_length=48), got, atol=1e-5)


def test_unnormalized_output_is_the_raw_pooled_state(tiny_bert: str) -> None:
    emb = BGEEmbedder(tiny_bert, device="cpu", normalize=False)
    got = emb.encode(["a b c"])
    assert not np.isclose(np.linalg.norm(got), 1.0)
    np.testing.assert_allclose(got / np.linalg.norm(got), reference(tiny_bert, ["a b c"], "cls"),
                               atol=1e-5)


def test_real_minilm_mean_pooling(minilm_dir: str) -> None:
    emb = BGEEmbedder(minilm_dir, pooling="mean", device="cpu")
    np.testing.assert_allclose(emb.encode_documents(PASSAGES[:3]),
                               reference(minilm_dir, PASSAGES[:3], "mean"), atol=1e-5)
    assert emb.dim == 384


def test_mean_pooling_of_half_precision_states_sums_in_float32() -> None:
    """As FlagEmbedding: a float16 sum over 600 tokens would be off by ~5e-4 here."""
    from bge_integrations.core.pooling import pool
    from bge_integrations.core.registry import Pooling

    hidden = (torch.randn(2, 600, 8, generator=torch.Generator().manual_seed(0)) * 30).half()
    mask = torch.ones(2, 600, dtype=torch.long)
    mask[1, 300:] = 0
    got = pool(hidden, mask, Pooling.MEAN)
    assert got.dtype == torch.float32
    want = (hidden.double() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(got.double(), want, atol=1e-6 * float(want.abs().max()),
                               rtol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_mistral", "tiny_icl"])
def test_decoder_last_token_pooling_left_and_right_padding(
        fixture: str, request: pytest.FixtureRequest, tmp_path) -> None:
    """An unregistered decoder (copied under a new name) with explicit last-token pooling."""
    import shutil

    path = str(tmp_path / "my-decoder")
    shutil.copytree(request.getfixturevalue(fixture), path)
    emb = BGEEmbedder(path, pooling="last_token", query_instruction="Find passages",
                      query_instruction_format="Instruct: {}\nQuery: {}", device="cpu",
                      max_batch_tokens=64)
    assert emb.tokenizer.padding_side == ("left" if fixture == "tiny_icl" else "right")
    got = emb.encode_queries(QUERIES)
    want = reference(path, [f"Instruct: Find passages\nQuery: {q}" for q in QUERIES],
                     "last_token")
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_e5_mistral_registry_prompt(tiny_mistral: str) -> None:
    emb = BGEEmbedder(tiny_mistral, device="cpu")  # basename e5-mistral-7b-instruct
    task = "Given a web search query, retrieve relevant passages that answer the query"
    want = reference(tiny_mistral, [f"Instruct: {task}\nQuery: {q}" for q in QUERIES],
                     "last_token")
    np.testing.assert_allclose(emb.encode_queries(QUERIES), want, atol=1e-5)
    np.testing.assert_allclose(emb.encode_documents(PASSAGES[:2]),
                               reference(tiny_mistral, PASSAGES[:2], "last_token"), atol=1e-5)


ICL_EXAMPLES = [
    {"instruct": "Given a web search query, retrieve relevant passages that answer the query.",
     "query": "what is a panda?", "response": "The giant panda is a bear species."},
    {"query": "capital of France", "response": "Paris is the capital of France."},
]
ICL_TASK = "Given a web search query, retrieve relevant passages that answer the query."


def icl_reference_ids(path: str, queries: list[str], max_length: int) -> list[list[int]]:
    """FlagICLModel.encode_queries_single_device's tokenization, step by step."""
    tok = AutoTokenizer.from_pretrained(path)
    prefix = (
        f"<instruct>{ICL_TASK}\n<query>what is a panda?\n<response>The giant panda is a bear "
        f"species.\n\n<instruct>{ICL_TASK}\n<query>capital of France\n<response>Paris is the "
        "capital of France.\n\n"
    )
    bodies = [f"<instruct>{ICL_TASK}\n<query>{q}" for q in queries]
    len_bos = len(tok("<s>", add_special_tokens=False)["input_ids"])
    len_tail = len(tok("\n<response></s>", add_special_tokens=False)["input_ids"])
    ids = tok(bodies, truncation=True, max_length=max_length - len_bos - len_tail,
              add_special_tokens=False)["input_ids"]
    decoded = tok.batch_decode(ids)
    new_max = (len(tok(prefix, add_special_tokens=False)["input_ids"])
               + len(tok("\n<response>", add_special_tokens=False)["input_ids"])
               + max_length + 8) // 8 * 8 + 8
    return tok([prefix + d + "\n<response>" for d in decoded], truncation=True,
               max_length=new_max)["input_ids"]


def test_icl_prompt_tokens_and_vectors(tiny_icl: str) -> None:
    emb = BGEEmbedder(tiny_icl, device="cpu", examples=ICL_EXAMPLES, query_max_length=24)
    queries = ["what is BGE and how does it embed text for retrieval?", "panda"]
    ref_ids = icl_reference_ids(tiny_icl, queries, 24)
    assert emb._query_token_ids(queries) == ref_ids
    np.testing.assert_allclose(emb.encode_queries(queries),
                               reference(tiny_icl, [], "last_token", tokenized=ref_ids),
                               atol=1e-5)
    # documents are plain text
    np.testing.assert_allclose(emb.encode_documents(PASSAGES[:2]),
                               reference(tiny_icl, PASSAGES[:2], "last_token"), atol=1e-5)


def test_icl_decode_round_trip_is_applied(tiny_icl: str) -> None:
    """Skipping the decode round trip gives other tokens for text the tokenizer normalizes."""
    emb = BGEEmbedder(tiny_icl, device="cpu")
    query = "spaces   and\ttabs  matter"
    ids = emb._query_token_ids([query])[0]
    tok = emb.tokenizer
    direct = tok(f"<instruct>{ICL_TASK}\n<query>{query}\n<response>")["input_ids"]
    decoded_body = tok.batch_decode(
        tok([f"<instruct>{ICL_TASK}\n<query>{query}"], add_special_tokens=False)["input_ids"])[0]
    assert decoded_body != f"<instruct>{ICL_TASK}\n<query>{query}"  # a tab becomes <unk>
    assert ids == tok(decoded_body + "\n<response>")["input_ids"]
    assert ids != direct


def test_set_examples_changes_only_queries(tiny_icl: str) -> None:
    emb = BGEEmbedder(tiny_icl, device="cpu")
    plain_q, plain_d = emb.encode_queries(["panda"]), emb.encode_documents(["panda"])
    emb.set_examples(ICL_EXAMPLES)
    assert not np.allclose(emb.encode_queries(["panda"]), plain_q, atol=1e-4)
    np.testing.assert_allclose(emb.encode_documents(["panda"]), plain_d, atol=1e-5)
    emb.set_examples(None)
    np.testing.assert_allclose(emb.encode_queries(["panda"]), plain_q, atol=1e-5)


def test_examples_on_a_non_icl_model_is_an_error(tiny_bert: str) -> None:
    with pytest.raises(ValueError, match="family 'icl'"):
        BGEEmbedder(tiny_bert, device="cpu", examples=ICL_EXAMPLES)


def test_e5_passage_prefix(tiny_bert: str, tmp_path) -> None:
    import shutil

    e5_dir = tmp_path / "e5-small-v2"
    shutil.copytree(tiny_bert, e5_dir)
    emb = BGEEmbedder(str(e5_dir), device="cpu")
    np.testing.assert_allclose(emb.encode_documents(["panda"]),
                               reference(str(e5_dir), ["passage: panda"], "mean"), atol=1e-5)
    np.testing.assert_allclose(emb.encode_queries(["panda"]),
                               reference(str(e5_dir), ["query: panda"], "mean"), atol=1e-5)


def test_batch_neighbours_do_not_change_results(tiny_bert: str) -> None:
    texts = [("word " * n).strip() for n in range(1, 40)]
    emb = BGEEmbedder(tiny_bert, device="cpu", max_batch_tokens=128)
    together = emb.encode(texts)
    alone = np.stack([emb.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
