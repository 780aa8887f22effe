"""What a checkpoint says about itself: length settings, position limits, names, bad folders."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from bge_integrations import BGEEmbedder, BGEM3Embedder, ModelNotFoundError
from bge_integrations.core.checkpoint import own_max_length, position_limit
from bge_integrations.core.registry import EN_INSTRUCTION, resolve_spec
from bge_integrations.core.resolve import UnknownModelError


def _copy(src: str, dst: Path, **config: object) -> str:
    shutil.copytree(src, dst)
    if config:
        path = dst / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return str(dst)


# -- #17 item 4: the checkpoint's own length settings ----------------------------------------
def test_minilm_by_path_truncates_at_its_own_256_like_sentence_transformers(
        minilm_dir: str) -> None:
    from sentence_transformers import SentenceTransformer

    emb = BGEEmbedder(minilm_dir, pooling="mean", device="cpu")
    assert (emb.query_max_length, emb.passage_max_length) == (256, 256)
    text = " ".join(f"Sentence {i} talks about pandas, bamboo and the forests of Sichuan."
                    for i in range(34))
    assert 450 < len(emb.tokenizer(text, verbose=False)["input_ids"]) < 512
    st = SentenceTransformer(minilm_dir, device="cpu")
    want = st.encode([text], normalize_embeddings=True)
    got = emb.encode_documents([text])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert float(got[0] @ want[0]) > 0.99999
    by_id = BGEEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    np.testing.assert_allclose(by_id.encode_documents([text]), got, atol=1e-5)


def test_length_defaults_registry_then_checkpoint_then_512(tiny_bert: str, tmp_path: Path
                                                           ) -> None:
    own = Path(_copy(tiny_bert, tmp_path / "own-lengths"))
    (own / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    assert own_max_length(own) == 64
    emb = BGEEmbedder(str(own), pooling="cls", device="cpu")
    assert (emb.query_max_length, emb.passage_max_length) == (64, 64)
    assert emb.encode_documents(["panda " * 300]).shape == (1, emb.dim)
    # the tokenizer's model_max_length when sentence-transformers says nothing
    (own / "sentence_bert_config.json").unlink()
    tok = json.loads((own / "tokenizer_config.json").read_text())
    (own / "tokenizer_config.json").write_text(json.dumps({**tok, "model_max_length": 128}))
    assert own_max_length(own) == 128
    # transformers' "no limit" marker is not a limit
    (own / "tokenizer_config.json").write_text(json.dumps({**tok, "model_max_length": 1e30}))
    assert own_max_length(own) is None
    assert BGEEmbedder(str(own), pooling="cls", device="cpu").passage_max_length == 512
    # a registered name keeps the registry's length, explicit values win over everything
    assert BGEEmbedder(tiny_bert, device="cpu").passage_max_length == 512
    assert BGEEmbedder(tiny_bert, device="cpu", query_max_length=32).query_max_length == 32


# -- #17 item 5: lengths beyond the position table fail at load time --------------------------
def test_position_limits_from_the_config() -> None:
    assert position_limit({"model_type": "bert", "max_position_embeddings": 512}) == 512
    assert position_limit({"model_type": "xlm-roberta", "max_position_embeddings": 514,
                           "pad_token_id": 1}) == 512
    assert position_limit({"model_type": "roberta", "max_position_embeddings": 514}) == 512
    assert position_limit({"model_type": "mistral", "max_position_embeddings": 4096,
                           "rope_theta": 10000.0}) is None
    assert position_limit({"model_type": "bert", "max_position_embeddings": 512,
                           "position_embedding_type": "relative_key"}) is None
    assert position_limit({"model_type": "t5"}) is None


def test_lengths_beyond_the_positions_are_refused_at_construction(tiny_bert: str,
                                                                  tiny_m3: str) -> None:
    with pytest.raises(ValueError, match=r"passage_max_length=4096 exceeds .* 512 tokens"):
        BGEEmbedder(tiny_bert, device="cpu", passage_max_length=4096)
    with pytest.raises(ValueError, match="query_max_length=513"):
        BGEEmbedder(tiny_bert, device="cpu", query_max_length=513)
    emb = BGEEmbedder(tiny_bert, device="cpu", passage_max_length=512)
    with pytest.raises(ValueError, match="max_length=600 exceeds"):
        emb.encode(["a"], max_length=600)
    # XLM-R style: 8194 positions with padding index 1 hold 8192 tokens
    assert BGEM3Embedder(tiny_m3, device="cpu", passage_max_length=8192).passage_max_length \
        == 8192
    with pytest.raises(ValueError, match="passage_max_length=8193 exceeds .* 8192 tokens"):
        BGEM3Embedder(tiny_m3, device="cpu", passage_max_length=8193)


def test_a_registry_default_is_cut_to_a_smaller_copy(tiny_m3: str, tmp_path: Path) -> None:
    from transformers import AutoConfig, XLMRobertaModel

    small = Path(_copy(tiny_m3, tmp_path / "bge-m3"))  # registry: 8192 tokens
    config = AutoConfig.from_pretrained(tiny_m3)
    config.max_position_embeddings = 130
    XLMRobertaModel(config).save_pretrained(small)
    m3 = BGEM3Embedder(str(small), device="cpu")
    assert (m3.query_max_length, m3.passage_max_length) == (128, 128)
    out = m3.encode_documents(["panda " * 500], colbert=True)
    assert out.colbert[0].shape[0] == 127 and np.isfinite(out.dense).all()


# -- #17 item 6 and #16 "Also": names that are wrong, padded, or folders that are not models ---
def test_a_typo_names_the_close_registry_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnknownModelError, match=r"Did you mean 'BAAI/bge-small-en-v1.5'\?") \
            as info:
        BGEEmbedder("BAAI/bge-smal-en-v1.5")
    assert isinstance(info.value, ModelNotFoundError)
    assert str(info.value).startswith("Unknown model 'BAAI/bge-smal-en-v1.5'")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="Did you mean 'BAAI/bge-small-en-v1.5'"):
        BGEEmbedder("BAAI/bge-smal-en-v1.5", pooling="cls")


def test_names_with_surrounding_spaces_are_looked_up_stripped(
        monkeypatch: pytest.MonkeyPatch, minilm_dir: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = BGEEmbedder(" sentence-transformers/all-MiniLM-L6-v2 ", device="cpu")
    assert emb.spec.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert emb.passage_max_length == 256 and emb.dim == 384
    with pytest.raises(UnknownModelError, match="Did you mean 'BAAI/bge-small-en-v1.5'"):
        BGEEmbedder("  BAAI/bge-smal-en-v1.5 ")


def test_a_folder_that_is_not_a_model_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    with pytest.raises(ModelNotFoundError, match="no config.json in .*notes"):
        BGEEmbedder(str(tmp_path / "notes"), pooling="cls")
    with pytest.raises(ModelNotFoundError, match="no config.json in"):
        BGEEmbedder(str(tmp_path / "notes"))
    (tmp_path / "bge-small-en-v1.5").mkdir()  # a registered name, but an empty folder
    with pytest.raises(ModelNotFoundError, match="no config.json in"):
        BGEEmbedder(str(tmp_path / "bge-small-en-v1.5"))


def test_a_renamed_local_copy_is_recognised_by_the_name_it_records(tiny_bert: str,
                                                                   tmp_path: Path) -> None:
    saved = _copy(tiny_bert, tmp_path / "my-encoder", _name_or_path="BAAI/bge-small-en-v1.5")
    spec = resolve_spec(saved)
    assert spec.name == "BAAI/bge-small-en-v1.5" and spec.query_instruction == EN_INSTRUCTION
    emb = BGEEmbedder(saved, device="cpu")
    np.testing.assert_allclose(emb.encode_queries(["panda"]),
                               emb.encode([EN_INSTRUCTION + "panda"]), atol=1e-5)
    snapshot = tmp_path / "hub" / "models--BAAI--bge-base-en-v1.5" / "snapshots" / "0123abc"
    _copy(tiny_bert, snapshot)
    assert resolve_spec(str(snapshot)).name == "BAAI/bge-base-en-v1.5"


def test_an_unrecognised_copy_is_told_what_was_not_applied(tiny_bert: str, tmp_path: Path
                                                           ) -> None:
    copy = _copy(tiny_bert, tmp_path / "bge-small-en-v1.5-copy")
    with pytest.raises(UnknownModelError, match=r"no registry settings \(pooling, query "
                                                r"instruction\).*register_model\(get_spec\("
                                                r"'BAAI/bge-small-en-v1.5'\)"):
        BGEEmbedder(copy)
    with pytest.warns(UserWarning, match="queries get no instruction"):
        BGEEmbedder(copy, pooling="cls", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every setting given: nothing lost, nothing said
        BGEEmbedder(copy, pooling="cls", query_instruction=EN_INSTRUCTION, device="cpu")
        BGEEmbedder(_copy(tiny_bert, tmp_path / "unrelated"), pooling="cls", device="cpu")
