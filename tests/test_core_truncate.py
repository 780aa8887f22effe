"""Long texts are tokenized from a prefix, with exactly the ids of the whole text truncated."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bge_integrations.core.truncate import CHARS_PER_TOKEN, SAFE_CHARS, token_ids

FRAGMENTS = [
    "panda ", "the quick brown fox ", " ", "   ", "\t", "\n", "\n\n\n", "          ",
    "a" * 120, "x" * 99, "supercalifragilistic", "中文字符测试", "日本語のテキスト", "한국어",
    "😀", "👨\u200d👩\u200d👧\u200d👦", "🇫🇷", "e\u0301", "\u0301", "!!!", "...", "1234567890",
    "naïve café ", "Ünïcödé ", "\u00a0", "\u3000", "\u200b", "<s>", "[CLS]", "-", "'s ",
]

ADVERSARIAL = {
    "words": "panda bear " * 2_000,
    "leading spaces": " " * 6_000 + "word " * 500,
    "whitespace runs": ("a" + " " * 997 + "b\t\n \n") * 20,
    "one long word": "a" * 20_000,
    "long words": ("x" * 150 + " ") * 200,
    "words near the wordpiece limit": ("y" * 100 + " " + "z" * 101 + " ") * 100,
    "no spaces": "supercalifragilistic" * 1_000,
    "cjk": "中文字符测试日本語のテキスト" * 1_000,
    "cjk and latin": "中文abc字符def测试 " * 1_000,
    "emoji": "😀" * 6_000,
    "emoji sequences": "👨\u200d👩\u200d👧\u200d👦 🇫🇷" * 1_000,
    "combining marks": "e\u0301" * 6_000,
    "punctuation": "!?.,;:" * 3_000,
    "special token text": "<s> </s> [CLS] [SEP] <pad> " * 800,
}


def _tokenizers(request: pytest.FixtureRequest) -> dict:
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(request.getfixturevalue(name))
            for name in ("tiny_bert", "tiny_m3", "tiny_mistral", "minilm_dir")}


@pytest.fixture(scope="module")
def tokenizers(request: pytest.FixtureRequest) -> dict:
    toks = _tokenizers(request)
    toks["one-word bpe"] = _one_word_bpe()
    toks["xlm-r-like unigram"] = _unigram(split=True)
    toks["one-word unigram"] = _unigram(split=False)
    return toks


def _unigram(split: bool):  # noqa: ANN202 - a transformers tokenizer
    """XLM-R's model kind (Unigram: a Viterbi search over each word), with its Metaspace
    word split or with none (the whole text one word)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer
    from transformers import PreTrainedTokenizerFast

    from bge_integrations.tiny_models import TINY_CORPUS

    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" ", "▁")])
    if split:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = UnigramTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                             unk_token="<unk>", initial_alphabet=list("abcdefghijklmnopqrstuvwxyz"))
    tok.train_from_iterator([t.replace(" ", "▁") for t in TINY_CORPUS * 4] + FRAGMENTS * 3 +
                            ["aaaa", "aaaaaaaa", "panda▁panda▁bear", "中文字符测试中文"], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def _one_word_bpe():  # noqa: ANN202 - a transformers tokenizer
    """Llama-style: spaces become '▁' in the normalizer and no pre-tokenizer splits words, so
    the whole text is one word for the BPE model."""
    from tokenizers import Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    from bge_integrations.tiny_models import TINY_CORPUS

    tok = Tokenizer(BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    trainer = BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                         initial_alphabet=list("abcdefghijklmnopqrstuvwxyz▁"))
    tok.train_from_iterator([t.replace(" ", "▁") for t in TINY_CORPUS * 4] +
                            ["▁▁▁▁", "aaaaaaaa", "panda▁panda▁bear"], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="</s>")


def _whole(tok, texts: list[str], max_length: int, **kwargs) -> list[list[int]]:
    return tok(texts, truncation=True, max_length=max_length, verbose=False,
               **kwargs)["input_ids"]


@pytest.mark.parametrize("max_length", [8, 512])
def test_adversarial_texts_give_the_ids_of_the_whole_text(tokenizers: dict,
                                                          max_length: int) -> None:
    texts = list(ADVERSARIAL.values())
    assert all(len(t) > CHARS_PER_TOKEN * 512 + SAFE_CHARS for t in texts)  # all read by prefix
    for name, tok in tokenizers.items():
        got = token_ids(tok, texts, max_length)
        want = _whole(tok, texts, max_length)
        for label, g, w in zip(ADVERSARIAL, got, want, strict=True):
            assert g == w, f"{name}, {label}, max_length={max_length}"
        if max_length == 8:
            assert token_ids(tok, texts, max_length, add_special_tokens=False) == _whole(
                tok, texts, max_length, add_special_tokens=False), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=400),
       repeat=st.integers(1, 8), max_length=st.integers(3, 40))
def test_random_mixtures_give_the_ids_of_the_whole_text(tokenizers: dict, parts: list[str],
                                                        repeat: int, max_length: int) -> None:
    text = "".join(parts) * repeat
    for name, tok in tokenizers.items():
        assert token_ids(tok, [text, "short"], max_length) == _whole(
            tok, [text, "short"], max_length), name


def test_a_16_mb_text_reads_a_prefix_only(tokenizers: dict) -> None:
    tok = tokenizers["minilm_dir"]
    text = "Pandas eat bamboo in the mountain forests of Sichuan. " * 300_000  # 16.5 MB
    start = time.perf_counter()
    ids = token_ids(tok, [text], 256)[0]
    elapsed = time.perf_counter() - start
    assert len(ids) == 256 and elapsed < 1.0, elapsed  # the whole text: about 12 s
    assert ids == _whole(tok, [text[:100_000]], 256)[0]


def test_icl_query_bodies_read_a_prefix_too(tiny_icl: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    from bge_integrations.core import prompts

    tok = AutoTokenizer.from_pretrained(tiny_icl)
    bodies = ["<instruct>find pandas\n<query>" + "panda bear " * 5_000, "a short one"]
    prefix = prompts.build_icl_prefix([{"instruct": "i", "query": "q", "response": "r"}], "t")
    got = prompts.icl_query_token_ids(tok, bodies, prefix, 64)
    monkeypatch.setattr(prompts, "token_ids", lambda t, texts, n, **kw: _whole(t, list(texts),
                                                                              n, **kw))
    assert got == prompts.icl_query_token_ids(tok, bodies, prefix, 64)


class _Recorder:
    """A tokenizer that records the longest text it was given."""

    def __init__(self, tokenizer) -> None:  # noqa: ANN001
        self.tokenizer, self.longest = tokenizer, 0

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.tokenizer, name)

    def __call__(self, texts: list[str], **kwargs):  # noqa: ANN204
        self.longest = max(self.longest, *map(len, texts))
        return self.tokenizer(texts, **kwargs)


@pytest.mark.parametrize(("name", "text"), [
    ("xlm-r-like unigram", "中文字符测试" * 50_000),  # one 300k-character word
    ("one-word unigram", "日本語のテキスト、中文字符测试。" * 20_000),
    ("one-word bpe", "panda bear " * 30_000),
    ("minilm_dir", "word " * 60_000),
    ("tiny_m3", "panda " * 50_000),
])
def test_long_texts_are_read_by_prefix(tokenizers: dict, name: str, text: str) -> None:
    recorder = _Recorder(tokenizers[name])
    assert token_ids(recorder, [text], 64) == _whole(tokenizers[name], [text], 64)
    assert recorder.longest < 20_000 < len(text), recorder.longest
