"""BGEReranker: the pair layouts and scores recomputed independently, options and bad input.

The references below spell out FlagEmbedding 1.4.2's rules with plain transformers calls
(tokenize each side without special tokens, cut the query to 3/4 of max_length, join, cut the
passage only, one padded forward pass, sigmoid on request); they share no code with ours.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import llm_pair_ids
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from bge_integrations import BGEReranker, RerankerSpec, list_rerankers, register_reranker
from bge_integrations.core.rerank_registry import get_reranker

PAIRS = [
    ("what is a panda?", "The giant panda is a bear species endemic to China."),
    ("hi", "Paris is the capital of France. " * 30),  # over max_length: the passage is cut
    ("", "x"),  # empty query: still a finite score
    ("Paris " * 40, "capital"),  # over query_max_length: the query is cut
    ("what is a panda?", ""),
]
PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer "
          "to the query by providing a prediction of either 'Yes' or 'No'.")


def encoder_reference(path: str, pairs: list[tuple[str, str]], max_length: int = 512,
                      query_max_length: int | None = None) -> np.ndarray:
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    q_max = query_max_length or max_length * 3 // 4
    cls, sep = tok.convert_tokens_to_ids("<s>"), tok.convert_tokens_to_ids("</s>")
    rows = []
    for q, p in pairs:
        q_ids = tok(q, add_special_tokens=False, truncation=True, max_length=q_max)["input_ids"]
        p_ids = tok(p, add_special_tokens=False, truncation=True,
                    max_length=max_length)["input_ids"]
        excess = len(q_ids) + len(p_ids) + 4 - max_length
        if 0 < excess < len(p_ids):
            p_ids = p_ids[:-excess]
        rows.append([cls, *q_ids, sep, sep, *p_ids, sep])
    batch = tok.pad({"input_ids": rows}, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.view(-1).numpy()


def llm_reference(path: str, pairs: list[tuple[str, str]], max_length: int = 512,
                  prompt: str = PROMPT) -> np.ndarray:
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    yes = tok("Yes", add_special_tokens=False)["input_ids"][0]
    scores = []
    for q, p in pairs:
        ids = torch.tensor([llm_pair_ids(tok, q, p, max_length, prompt)[0]])
        with torch.no_grad():
            scores.append(float(model(input_ids=ids).logits[0, -1, yes]))
    return np.array(scores)


def test_encoder_scores_equal_the_reference(tiny_reranker: str) -> None:
    rr = BGEReranker(tiny_reranker, device="cpu", max_length=24)
    got = rr.compute_score(PAIRS)
    assert got.dtype == np.float32 and got.shape == (len(PAIRS),)
    np.testing.assert_allclose(got, encoder_reference(tiny_reranker, PAIRS, 24), atol=1e-5)
    np.testing.assert_allclose(rr.compute_score(PAIRS, query_max_length=5),
                               encoder_reference(tiny_reranker, PAIRS, 24, 5), atol=1e-5)


def test_normalize_is_the_sigmoid_of_the_logit(reranker: BGEReranker) -> None:
    raw = reranker.compute_score(PAIRS).astype(np.float64)
    np.testing.assert_allclose(reranker.compute_score(PAIRS, normalize=True),
                               1 / (1 + np.exp(-raw)), atol=1e-7)


def test_scores_do_not_depend_on_batching(tiny_reranker: str) -> None:
    one = BGEReranker(tiny_reranker, device="cpu", batch_size=1, num_workers=1)
    many = BGEReranker(tiny_reranker, device="cpu", max_batch_tokens=64, num_workers=2)
    np.testing.assert_allclose(one.compute_score(PAIRS), many.compute_score(PAIRS), atol=1e-5)


def test_llm_layout_and_yes_logit_equal_the_reference(tiny_llm_reranker: str) -> None:
    rr = BGEReranker(tiny_llm_reranker, device="cpu", max_length=20)
    assert rr.kind.value == "llm"
    np.testing.assert_allclose(rr.compute_score(PAIRS),
                               llm_reference(tiny_llm_reranker, PAIRS, 20), atol=1e-5)
    custom = "Is B relevant to A?"
    np.testing.assert_allclose(rr.compute_score(PAIRS[:2], prompt=custom),
                               llm_reference(tiny_llm_reranker, PAIRS[:2], 20, custom),
                               atol=1e-5)


def test_rerank_orders_best_first_and_cuts_top_n(reranker: BGEReranker) -> None:
    docs = [p for _, p in PAIRS]
    scores = reranker.compute_score([("what is a panda?", d) for d in docs])
    ranked = reranker.rerank("what is a panda?", docs)
    assert [i for i, _ in ranked] == list(np.argsort(-scores, kind="stable"))
    np.testing.assert_allclose([s for _, s in ranked], np.sort(scores)[::-1], atol=1e-6)
    assert reranker.rerank("what is a panda?", docs, top_n=2) == ranked[:2]
    assert reranker.rerank("q", []) == []


def test_one_pair_as_a_tuple_gives_one_score(reranker: BGEReranker) -> None:
    one = reranker.compute_score(PAIRS[0])
    assert one.shape == (1,)
    np.testing.assert_allclose(one, reranker.compute_score([PAIRS[0]]), atol=1e-6)


def test_empty_input_gives_an_empty_array(reranker: BGEReranker) -> None:
    out = reranker.compute_score([])
    assert out.shape == (0,) and out.dtype == np.float32


@pytest.mark.parametrize("bad", [["q", "p"], [("q", "p"), None], [("q", 3)], [("q", "p", "r")]])
def test_bad_pairs_name_the_index(reranker: BGEReranker, bad: list) -> None:
    index = 0 if bad == ["q", "p"] or bad[0] != ("q", "p") else 1
    with pytest.raises(TypeError, match=rf"pairs\[{index}\]"):
        reranker.compute_score(bad)


@pytest.mark.parametrize("bad", ["just a string", None, 5])
def test_bad_containers_are_type_errors(reranker: BGEReranker, bad: object) -> None:
    with pytest.raises(TypeError, match="pairs must be a list"):
        reranker.compute_score(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("top_n", [0, -1, 1.5, True])
def test_top_n_below_one_is_a_value_error(reranker: BGEReranker, top_n: object) -> None:
    with pytest.raises(ValueError, match="top_n"):
        reranker.rerank("q", ["a"], top_n=top_n)  # type: ignore[arg-type]


def test_rerank_rejects_a_bare_string_of_documents(reranker: BGEReranker) -> None:
    with pytest.raises(TypeError, match="documents"):
        reranker.rerank("q", "one document")  # type: ignore[arg-type]


def test_unknown_model_without_kind_says_how_to_register(tmp_path) -> None:
    with pytest.raises(KeyError, match="register_reranker"):
        BGEReranker(str(tmp_path / "my-own-reranker"))


def test_unknown_model_with_kind_loads(tiny_dir, tiny_reranker: str) -> None:
    import shutil

    copy = tiny_dir / "acme-cross-encoder"
    if not copy.exists():
        shutil.copytree(tiny_reranker, copy)
    rr = BGEReranker(str(copy), kind="encoder", device="cpu")
    np.testing.assert_allclose(rr.compute_score(PAIRS[:2]),
                               encoder_reference(str(copy), PAIRS[:2]), atol=1e-5)


def test_registry_has_every_flagembedding_reranker() -> None:
    names = {s.name.split("/")[-1] for s in list_rerankers()}
    assert {"bge-reranker-base", "bge-reranker-large", "bge-reranker-v2-m3",
            "bge-reranker-v2-gemma", "bge-reranker-v2-minicpm-layerwise",
            "bge-reranker-v2.5-gemma2-lightweight", "jina-reranker-v2-base-multilingual",
            "gte-multilingual-reranker-base", "bce-reranker-base_v1",
            "jina-reranker-v1-turbo-en"} <= names
    assert get_reranker("BAAI/bge-reranker-v2-gemma").query_instruction == "A: "
    with pytest.raises(ValueError, match="already registered"):
        register_reranker(RerankerSpec("BAAI/bge-reranker-base"))
    with pytest.raises(ValueError, match="valid values"):
        RerankerSpec("x", kind="nope")  # type: ignore[arg-type]


def test_remote_code_rerankers_need_the_opt_in() -> None:
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        BGEReranker("jinaai/jina-reranker-v2-base-multilingual")


def test_bad_options(tiny_reranker: str) -> None:
    with pytest.raises(ValueError, match="backend"):
        BGEReranker(tiny_reranker, backend="tensorrt", device="cpu")
    with pytest.raises(ValueError, match="cutoff_layers apply"):
        BGEReranker(tiny_reranker, device="cpu", cutoff_layers=[2])
    with pytest.raises(ValueError, match="max_length"):
        BGEReranker(tiny_reranker, device="cpu", max_length=0)


def test_int8_scores_stay_close(tiny_reranker: str, reranker: BGEReranker) -> None:
    int8 = BGEReranker(tiny_reranker, device="cpu", dtype="int8")
    np.testing.assert_allclose(int8.compute_score(PAIRS), reranker.compute_score(PAIRS),
                               atol=0.05)
