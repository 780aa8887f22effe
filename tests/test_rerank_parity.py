"""Reranker parity: FlagEmbedding 1.4.2 itself (its own venv, a subprocess) and an independent
Gemma-2 recomputation for the lightweight reranker, within 1e-5 at float32.

The FlagEmbedding tests run where its venv exists (``benchmarks/.flag-venv`` or
``$BGE_FLAG_PYTHON``, see ``benchmarks/setup_flag_venv.sh``) and are skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import llm_pair_ids

from bge_integrations import BGEReranker

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [
    ("what is a panda?", "The giant panda is a bear species endemic to China."),
    ("hi", "Paris is the capital of France. " * 12),
    ("", "x"),
    ("Paris " * 30, "capital"),
    ("hybrid search", "Hybrid search fuses dense, sparse and multi-vector scores."),
]


def flag_python() -> Path | None:
    for candidate in (os.environ.get("BGE_FLAG_PYTHON"),
                      ROOT / "benchmarks" / ".flag-venv" / "bin" / "python"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


ENCODER_CALLS = [{"max_length": 24},
                 {"max_length": 32, "query_max_length": 6, "normalize": True}]
LLM_CALLS = [{"max_length": 20}, {"max_length": 40, "prompt": "Is B relevant to A?"}]
LAYERWISE_CALLS = [{"max_length": 24}, {"max_length": 24, "cutoff_layers": [2, 3]},
                   {"max_length": 40, "cutoff_layers": [3], "normalize": True}]


def flag_view(path: str, tmp: Path, tokenizer_class: str) -> str:
    """A copy whose tokenizer loads as the real checkpoint's class in transformers 4.x (the
    tiny XLM-R tokenizer is BPE; FlagReranker's pair ids come from the class's template)."""
    out = tmp / Path(path).name
    shutil.copytree(path, out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = tokenizer_class
    cfg_path.write_text(json.dumps(cfg))
    return str(out)


@pytest.fixture(scope="module")
def flag(tmp_path_factory: pytest.TempPathFactory, tiny_reranker: str, tiny_llm_reranker: str,
         tiny_layerwise_reranker: str) -> dict[str, list[np.ndarray]]:
    """FlagEmbedding's ``compute_score(PAIRS, **call)`` for every call below, in one process."""
    python = flag_python()
    if python is None:
        pytest.skip("FlagEmbedding's venv is not set up (benchmarks/setup_flag_venv.sh)")
    tmp = tmp_path_factory.mktemp("flag-rerank")
    table = {"FlagReranker": (flag_view(tiny_reranker, tmp, "XLMRobertaTokenizerFast"),
                              ENCODER_CALLS),
             "FlagLLMReranker": (tiny_llm_reranker, LLM_CALLS),
             "LayerWiseFlagLLMReranker": (tiny_layerwise_reranker, LAYERWISE_CALLS)}
    tasks = [{"cls": cls, "path": path, "pairs": PAIRS, "call": call,
              "out": str(tmp / f"{cls}-{i}.npy")}
             for cls, (path, calls) in table.items() for i, call in enumerate(calls)]
    (tmp / "job.json").write_text(json.dumps({"tasks": tasks}))
    subprocess.run([str(python), str(ROOT / "benchmarks" / "flag_rerank_worker.py"),
                    str(tmp / "job.json")], check=True, capture_output=True, timeout=600,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return {cls: [np.load(tmp / f"{cls}-{i}.npy") for i in range(len(calls))]
            for cls, (_, calls) in table.items()}


def test_encoder_equals_flag_reranker(tiny_reranker: str, flag: dict) -> None:
    rr = BGEReranker(tiny_reranker, device="cpu")
    for call, want in zip(ENCODER_CALLS, flag["FlagReranker"], strict=False):
        np.testing.assert_allclose(rr.compute_score(PAIRS, **call), want, atol=1e-5)


def test_llm_equals_flag_llm_reranker(tiny_llm_reranker: str, flag: dict) -> None:
    rr = BGEReranker(tiny_llm_reranker, device="cpu")
    for call, want in zip(LLM_CALLS, flag["FlagLLMReranker"], strict=False):
        np.testing.assert_allclose(rr.compute_score(PAIRS, **call), want, atol=1e-5)


def test_layerwise_equals_flag_layerwise_reranker(tiny_layerwise_reranker: str,
                                                  flag: dict) -> None:
    rr = BGEReranker(tiny_layerwise_reranker, device="cpu")
    assert rr.cutoff_layers == (4,)
    for call, want in zip(LAYERWISE_CALLS, flag["LayerWiseFlagLLMReranker"], strict=False):
        np.testing.assert_allclose(rr.compute_score(PAIRS, **call), want, atol=1e-5)


def test_layerwise_cutoff_layers_must_have_a_head(tiny_layerwise_reranker: str) -> None:
    rr = BGEReranker(tiny_layerwise_reranker, device="cpu")
    assert rr.compute_score(PAIRS, cutoff_layers=[3, 2]).shape == (2, len(PAIRS))
    with pytest.raises(ValueError, match=r"one of \[2, 3, 4\]"):
        rr.compute_score(PAIRS, cutoff_layers=[1])


# -- lightweight: an independent Gemma-2 recomputation ------------------------------------------
def _hf_gemma2(path: str):  # noqa: ANN202
    """transformers' own Gemma2Model (eager attention) on the checkpoint's backbone weights."""
    from safetensors.torch import load_file
    from transformers import Gemma2Config, Gemma2Model

    raw = json.loads((Path(path) / "config.json").read_text())
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
            "rope_theta", "attn_logit_softcapping", "final_logit_softcapping",
            "query_pre_attn_scalar", "sliding_window", "hidden_activation", "pad_token_id")
    config = Gemma2Config(**{k: raw[k] for k in keys}, attn_implementation="eager")
    state = load_file(str(Path(path) / "model.safetensors"))
    model = Gemma2Model(config).eval()
    model.load_state_dict({k[len("model."):]: v for k, v in state.items()
                           if k.startswith("model.")})
    heads = [state[f"lm_head.{i}.linear_head.weight"] for i in range(3)]
    return model, heads, raw


def _mask(seq: int, window: int | None) -> torch.Tensor:
    i = torch.arange(seq)
    ok = i[None, :] <= i[:, None]
    if window is not None:
        ok &= (i[:, None] - i[None, :]) < window
    return torch.zeros(seq, seq).masked_fill(~ok, torch.finfo(torch.float32).min)[None, None]


def lightweight_reference(path: str, pairs: list[tuple[str, str]], cutoff: list[int],
                          ratio: int, compress_at: list[int], max_length: int = 512,
                          prompt: str = "Predict whether passage B contains an answer to query A."
                          ) -> np.ndarray:
    """One pair at a time through transformers' Gemma-2 layers; compression by plain means."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model, heads, raw = _hf_gemma2(path)
    out = np.zeros((len(cutoff), len(pairs)))
    for col, (q, p) in enumerate(pairs):
        ids, q_len, p_len = llm_pair_ids(tok, q, p, max_length, prompt)
        # the plain lookup (transformers 5 folds the scale into its embedding module)
        h = F.embedding(torch.tensor([ids]), model.embed_tokens.weight)
        h = h * torch.tensor(raw["hidden_size"] ** 0.5)
        states = {}
        with torch.no_grad():
            for idx in range(max(cutoff) + 1):
                if idx in cutoff:
                    states[idx] = model.norm(h[0, -1])
                if idx == max(cutoff):
                    break
                if ratio > 1 and idx in compress_at and idx != 0:
                    passage = h[0, q_len:h.shape[1] - p_len]
                    groups = [passage[s:s + ratio].mean(0) for s in range(0, len(passage), ratio)]
                    h = torch.cat([h[0, :q_len], *[g[None] for g in groups],
                                   h[0, h.shape[1] - p_len:]])[None]
                seq = h.shape[1]
                pos = torch.arange(seq)[None]
                layer = model.layers[idx]
                window = raw["sliding_window"] if idx % 2 == 0 else None
                h = layer(h, position_embeddings=model.rotary_emb(h, pos),
                          attention_mask=_mask(seq, window), position_ids=pos)
                h = h[0] if isinstance(h, tuple) else h
        for row, layer_idx in enumerate(sorted(cutoff)):
            logit = heads[row] @ states[layer_idx]
            cap = raw["final_logit_softcapping"]
            out[row, col] = float(torch.tanh(logit / cap) * cap)
    return out


@pytest.mark.parametrize(("cutoff", "ratio", "compress_at"),
                         [([4], 1, []), ([2, 4], 1, []), ([3], 2, [1]), ([2, 4], 4, [1, 3])])
def test_lightweight_equals_an_independent_gemma2_recomputation(
        tiny_lightweight_reranker: str, cutoff: list[int], ratio: int,
        compress_at: list[int]) -> None:
    rr = BGEReranker(tiny_lightweight_reranker, device="cpu", max_length=40,
                     compress_ratio=ratio, compress_layers=compress_at or None)
    got = rr.compute_score(PAIRS, cutoff_layers=cutoff)
    want = lightweight_reference(tiny_lightweight_reranker, PAIRS, cutoff, ratio, compress_at,
                                 max_length=40)
    np.testing.assert_allclose(got.reshape(len(cutoff), -1), want, atol=1e-5)


# -- layerwise: an independent MiniCPM recomputation (runs without FlagEmbedding's venv) -------
def layerwise_reference(path: str, pairs: list[tuple[str, str]], cutoff: list[int],
                        max_length: int = 512) -> np.ndarray:
    """One pair at a time, MiniCPM's layer math written out with plain tensor operations."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    prompt = ("Given a query A and a passage B, determine whether the passage contains an "
              "answer to the query by providing a prediction of either 'Yes' or 'No'.")
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    cfg = json.loads((Path(path) / "config.json").read_text())
    w = load_file(str(Path(path) / "model.safetensors"))
    heads, dim = cfg["num_attention_heads"], cfg["hidden_size"] // cfg["num_attention_heads"]
    scale = cfg["scale_depth"] / cfg["num_hidden_layers"] ** 0.5

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg["rms_norm_eps"]) * w[name]

    def rope(x: torch.Tensor) -> torch.Tensor:  # (heads, seq, dim)
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, dim, 2).float() / dim))
        ang = torch.arange(x.shape[1]).float()[:, None] * inv
        cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
        rot = torch.cat([-x[..., dim // 2:], x[..., :dim // 2]], -1)
        return x * cos + rot * sin

    out = np.zeros((len(cutoff), len(pairs)))
    for col, (q, p) in enumerate(pairs):
        ids, _, _ = llm_pair_ids(tok, q, p, max_length, prompt)
        h = w["model.embed_tokens.weight"][ids] * cfg["scale_emb"]
        seq = h.shape[0]
        causal = torch.full((seq, seq), float("-inf")).triu(1)
        for idx in range(max(cutoff) + 1):
            if idx in cutoff:
                state = norm(h[-1], "model.norm.weight")
                head = w[f"lm_head.{idx - cfg['start_layer']}.linear_head.weight"]
                out[sorted(cutoff).index(idx), col] = float(head @ state)
            if idx == max(cutoff):
                break
            pre = f"model.layers.{idx}."
            x = norm(h, pre + "input_layernorm.weight")
            qh, kh, vh = (
                (x @ w[pre + f"self_attn.{n}_proj.weight"].T).view(seq, heads, dim).transpose(0, 1)
                for n in ("q", "k", "v"))
            att = torch.softmax(rope(qh) @ rope(kh).transpose(1, 2) / dim ** 0.5 + causal, -1)
            ctx = (att @ vh).transpose(0, 1).reshape(seq, heads * dim)
            h = h + (ctx @ w[pre + "self_attn.o_proj.weight"].T) * scale
            x = norm(h, pre + "post_attention_layernorm.weight")
            gate = torch.nn.functional.silu(x @ w[pre + "mlp.gate_proj.weight"].T)
            mlp = (gate * (x @ w[pre + "mlp.up_proj.weight"].T)) @ w[pre + "mlp.down_proj.weight"].T
            h = h + mlp * scale
    return out


@pytest.mark.parametrize("cutoff", [[4], [2, 3]])
def test_layerwise_equals_an_independent_minicpm_recomputation(tiny_layerwise_reranker: str,
                                                               cutoff: list[int]) -> None:
    rr = BGEReranker(tiny_layerwise_reranker, device="cpu", max_length=40)
    got = rr.compute_score(PAIRS, cutoff_layers=cutoff).reshape(len(cutoff), -1)
    want = layerwise_reference(tiny_layerwise_reranker, PAIRS, cutoff, max_length=40)
    np.testing.assert_allclose(got, want, atol=1e-5)
