"""Fill-in-the-middle tokens: read from the GGUF's keys, else found by their
text as llama.cpp's vocabulary loader does, and the completion prompt that
uses them whenever the vocabulary has them."""
from __future__ import annotations

import pytest
from gguf import GGMLQuantizationType as Q

from gguf_factory import build_vocab, write_tiny_gguf

from ditto.engine.fim import FIM_TEXTS, FimTokens, find_fim_tokens
from ditto.engine.gguf_model import load_model_file
from ditto.engine.tokenizer import Tokenizer
from ditto.lsp.prompt import build_prompt

# family -> its (pre, suf, mid[, pad, rep, sep]) texts, as the families' vocabularies spell them
FAMILIES = {
    "qwen2.5-coder": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>", "<|repo_name|>",
                      "<|file_sep|>"),
    "codegemma": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<reponame>"),
    "deepseek-coder": ("<\uff5cfim\u2581begin\uff5c>", "<\uff5cfim\u2581hole\uff5c>", "<\uff5cfim\u2581end\uff5c>"),
    "codellama": ("\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>"),
}
ROLES = ("pre", "suf", "mid", "pad", "rep", "sep")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_found_by_its_token_texts(family):
    texts = FAMILIES[family]
    vocab = ["a", "b"] + list(texts) + ["c"]
    fim = find_fim_tokens(vocab, FimTokens())
    assert fim.can_infill
    for role, text in zip(ROLES, texts):
        assert vocab[getattr(fim, role)] == text
    for role in ROLES[len(texts):]:
        assert getattr(fim, role) is None


def test_the_keys_win_over_token_texts_and_only_missing_roles_are_searched():
    vocab = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "x", "y"]
    fim = find_fim_tokens(vocab, FimTokens(pre=3, mid=4))
    assert (fim.pre, fim.suf, fim.mid) == (3, 1, 4)


def test_a_vocabulary_without_all_three_cannot_infill():
    fim = find_fim_tokens(["<fim_prefix>", "<fim_middle>", "<fim-suffix_>", "<file_sep>"], FimTokens())
    assert (fim.pre, fim.suf, fim.mid) == (0, None, 1) and not fim.can_infill


def test_texts_match_whole_tokens_only():
    assert find_fim_tokens(["x<fim_prefix>", "<fim_prefix> ", "<FIM_PREFIX>"], FimTokens()) == FimTokens()


def test_every_role_has_texts():
    assert set(FIM_TEXTS) == set(ROLES)


# ---------------------------------------------------------------------------
# through a GGUF: the loader's keys, the tokenizer's fallback, the prompt
# ---------------------------------------------------------------------------

def starcoder_like(tmp_path, **metadata):
    """A tiny llama-vocabulary GGUF whose padding tokens became StarCoder's
    FIM tokens (type UNUSED, as a careless conversion leaves them), no keys."""
    vocab = build_vocab("llama", 400)
    tokens = list(vocab.tokens)
    tokens[-5:] = ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<reponame>"]
    path = write_tiny_gguf(tmp_path / "s.gguf", "llama", Q.F32, n_vocab=400,
                           metadata={"tokenizer.ggml.tokens": tokens, **metadata})
    return Tokenizer(load_model_file(path).tokenizer), len(tokens)


def test_tokenizer_finds_fim_tokens_without_keys_and_treats_them_as_llama_cpp_does(tmp_path):
    tok, n = starcoder_like(tmp_path)
    assert (tok.fim.pre, tok.fim.mid, tok.fim.suf, tok.fim.pad, tok.fim.rep) == (n - 5, n - 4, n - 3, n - 2, n - 1)
    assert (tok.fim_prefix_id, tok.fim_suffix_id, tok.fim_middle_id) == (n - 5, n - 3, n - 4)
    # forced to control type: document text never becomes a FIM token
    assert all(tok.is_control(i) for i in range(n - 5, n))
    assert n - 5 not in tok.encode("x <fim_prefix> y")
    assert tok.encode_with_specials("<fim_prefix>") == [n - 5]
    # pad and repo end generation (llama.cpp's EOG set); the three infill tokens do not
    assert tok.is_eog(n - 2) and tok.is_eog(n - 1) and not tok.is_eog(n - 4)


def test_fim_keys_of_every_role_are_read(tmp_path):
    ids = {"pre": 390, "suf": 391, "mid": 392, "pad": 393, "rep": 394, "sep": 395}
    meta = {f"tokenizer.ggml.fim_{r}_token_id": i for r, i in ids.items()}
    path = write_tiny_gguf(tmp_path / "k.gguf", "llama", Q.F32, n_vocab=400, metadata=meta)
    tok = Tokenizer(load_model_file(path).tokenizer)
    assert tok.fim == FimTokens(**ids)
    assert [tok.is_eog(i) for i in range(390, 396)] == [False] * 3 + [True] * 3


def test_completion_prompt_uses_infill_found_by_text(tmp_path):
    tok, n = starcoder_like(tmp_path)
    text = "def f(x):\n    return x\n\nprint(f(1))\n"
    offset = text.index("return") + len("return")
    prompt, below = build_prompt(tok, text, offset, prompt_tokens=256, suffix_tokens=64, style="auto")
    assert prompt.tokens == ([n - 5] + tok.encode(text[:offset]) + [n - 3] + tok.encode(text[offset:])
                             + [n - 4])
    assert below == tok.encode(text[offset:])


def test_completion_prompt_without_fim_tokens_is_the_prefix(tiny_model_path):
    tok = Tokenizer(load_model_file(tiny_model_path("llama", Q.F32)).tokenizer)
    assert not tok.fim.can_infill
    text = "a = 1\nb = "
    prompt, _ = build_prompt(tok, text, len(text), prompt_tokens=256, suffix_tokens=64, style="auto")
    assert prompt.tokens == tok.encode(text)
