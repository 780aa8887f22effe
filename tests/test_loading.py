"""Model loading: quiet by default, no random weights, padding chosen by the pooling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from bge_integrations import BGEEmbedder
from bge_integrations.core.loading import IncompleteCheckpointError, clear_model_cache
from bge_integrations.tiny_models import build_tiny_model

#: tests here clear the model cache to force fresh loads (see conftest.restore_model_cache)
pytestmark = pytest.mark.usefixtures("restore_model_cache")


@pytest.fixture
def fresh_bert(tmp_path: Path) -> Path:
    """A tiny BERT no embedder has loaded yet (the model cache would hide a second load)."""
    clear_model_cache()
    return build_tiny_model("bert", tmp_path / "bge-small-en-v1.5")


def _rewrite_weights(model_dir: Path, keep) -> None:  # noqa: ANN001 - predicate on keys
    path = model_dir / "model.safetensors"
    state = load_file(path)
    save_file({k: v for k, v in state.items() if keep(k)}, path, metadata={"format": "pt"})


def test_loading_prints_nothing(fresh_bert: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()  # as in a fresh process (other tests may turn it off)
    capfd.readouterr()
    emb = BGEEmbedder(str(fresh_bert), device="cpu")
    emb.encode(["a few words"])
    out, err = capfd.readouterr()
    assert "Loading weights" not in err and "LOAD REPORT" not in err
    assert err == "" and out == ""
    assert hf_logging.is_progress_bar_enabled()  # the user's own setting is restored


def test_adapter_loading_prints_nothing(fresh_bert: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("langchain_core")
    from bge_integrations.langchain import BGEEmbeddings

    capfd.readouterr()
    BGEEmbeddings(model_name=str(fresh_bert), device="cpu").embed_query("hello")
    assert capfd.readouterr().err == ""


def test_show_progress_shows_only_our_bar(fresh_bert: Path,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    emb = BGEEmbedder(str(fresh_bert), device="cpu", show_progress=True)
    assert capfd.readouterr().err == ""
    emb.encode(["a few words", "more"])
    err = capfd.readouterr().err
    assert "Embedding" in err and "Loading weights" not in err


def test_missing_layer_is_an_error(fresh_bert: Path) -> None:
    _rewrite_weights(fresh_bert, lambda k: ".layer.1." not in k)
    with pytest.raises(IncompleteCheckpointError, match=r"16 backbone weights are missing"):
        BGEEmbedder(str(fresh_bert), device="cpu")


def test_empty_weights_file_is_an_error(fresh_bert: Path) -> None:
    _rewrite_weights(fresh_bert, lambda k: False)
    with pytest.raises(IncompleteCheckpointError, match="random values"):
        BGEEmbedder(str(fresh_bert), device="cpu")


def test_unknown_backbone_weight_is_an_error(fresh_bert: Path) -> None:
    path = fresh_bert / "model.safetensors"
    state = load_file(path)
    state["encoder.layer.7.output.dense.weight"] = state["encoder.layer.0.output.dense.weight"] * 1
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(IncompleteCheckpointError, match="do not fit"):
        BGEEmbedder(str(fresh_bert), device="cpu")


def test_missing_pooler_and_extra_head_are_fine(fresh_bert: Path) -> None:
    reference = BGEEmbedder(str(fresh_bert), device="cpu").encode(["pooler free"])
    clear_model_cache()
    path = fresh_bert / "model.safetensors"
    state = {k: v for k, v in load_file(path).items() if not k.startswith("pooler.")}
    state["cls.predictions.bias"] = state["embeddings.LayerNorm.bias"].clone()  # MLM head
    save_file(state, path, metadata={"format": "pt"})
    again = BGEEmbedder(str(fresh_bert), device="cpu").encode(["pooler free"])
    np.testing.assert_allclose(again, reference, atol=1e-6)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_left_padding_config_does_not_couple_batch_mates(tmp_path: Path, pooling: str) -> None:
    clear_model_cache()
    model_dir = build_tiny_model("bert", tmp_path / "bge-small-en-v1.5")
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["padding_side"] = "left"
    config_path.write_text(json.dumps(config))
    emb = BGEEmbedder(str(model_dir), device="cpu", pooling=pooling, num_workers=1)
    assert emb.tokenizer.padding_side == "left"
    alone = emb.encode(["short text"])
    with_mates = emb.encode(["short text", "a much longer text " * 12, "medium sized text"])
    np.testing.assert_allclose(with_mates[0], alone[0], atol=1e-5)
    shutil.rmtree(model_dir)
