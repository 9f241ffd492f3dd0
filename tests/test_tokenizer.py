"""Tokenizer: llama.cpp's ids on real files, round trips, specials stay plain.

The expected ids in tests/data/tokens/*.ids.json come from llama.cpp's
llama-tokenize (bench/llamacpp_tokens.py regenerates them).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ditto.engine.gguf_model import GGUFError
from ditto.engine.tokenizer import StreamDecoder, Tokenizer, TokenizerError

DATA = Path(__file__).parent / "data" / "tokens"
MODEL = Path.home() / ".cache" / "ditto" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CASES = sorted(p.stem.removesuffix(".ids") for p in DATA.glob("*.ids.json"))


# ------------------------------------------------------------ tiny vocabulary
def _gpt2_alphabet() -> list[str]:
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def tiny_data(**over) -> SimpleNamespace:
    """A byte-level vocabulary: 3 control tokens, 256 bytes, a few merges."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = _gpt2_alphabet()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ Ġ", "ĠĠ ĠĠ"]
    merged = [m.replace(" ", "") for m in merges]
    tokens = specials + alphabet + merged + ["<tool>"]
    types = [3] * 3 + [1] * (256 + len(merged)) + [4]
    d = dict(model="gpt2", pre="smollm", tokens=tokens, token_types=types, merges=merges,
             bos_id=1, eos_id=2, eot_id=None, pad_id=None, add_bos=False,
             fim_prefix_id=None, fim_suffix_id=None, fim_middle_id=None, chat_template=None)
    d.update(over)
    return SimpleNamespace(**d)


@pytest.fixture(scope="module")
def tiny() -> Tokenizer:
    return Tokenizer(tiny_data())


def test_tiny_encode_decode(tiny):
    ids = tiny.encode("the then")
    assert tiny.decode(ids) == "the then"
    assert [tiny.token_text(i) for i in ids] == ["t", "he", "Ġthe", "n"]


def test_unknown_pre_and_model_are_refused():
    with pytest.raises(TokenizerError, match="'klingon'"):
        Tokenizer(tiny_data(pre="klingon"))
    with pytest.raises(TokenizerError, match="'bert'"):
        Tokenizer(tiny_data(model="bert"))
    with pytest.raises(TokenizerError, match="scores"):
        Tokenizer(tiny_data(model="llama"))  # SentencePiece without scores


@pytest.mark.parametrize("merge, named", [
    ("Ġ zz", "'zz'"),          # right side not a token (tokenizers: bare Exception)
    ("qq e", "'qq'"),          # left side not a token
    ("t h", "'th'"),           # both tokens, merged string is not (tokenizers: a Rust panic)
    ("the", "malformed"),      # no separator
    (" h", "malformed"),       # empty side
])
def test_merges_that_do_not_fit_the_vocabulary_are_a_gguf_error(merge, named):
    data = tiny_data()
    with pytest.raises(GGUFError, match=named) as err:
        Tokenizer(tiny_data(merges=data.merges + [merge]))
    assert "tokenizer.ggml.merges" in str(err.value) and repr(merge) in str(err.value)


@pytest.mark.parametrize("token, token_type", [("Ġ", 3), ("Ġt", 5), ("a", 6), ("he", 2)])
def test_a_token_bpe_makes_from_text_must_be_normal(token, token_type):
    """A byte or merged token typed control, unused, byte or unknown would
    decode to other bytes than the text it was made from (found by the
    fuzzer: encode / decode silently changed text): a GGUFError naming it."""
    data = tiny_data()
    types = list(data.token_types)
    types[data.tokens.index(token)] = token_type
    with pytest.raises(GGUFError, match=f"{token!r}.*type {token_type}"):
        Tokenizer(tiny_data(token_types=types))


def test_specials_plain_vs_parsed(tiny):
    text = "a<|im_end|>b"
    assert 2 not in tiny.encode(text)
    assert tiny.decode(tiny.encode(text)) == text
    assert tiny.encode_with_specials(text) == tiny.encode("a") + [2] + tiny.encode("b")
    assert tiny.split_specials("<|im_start|>x<|im_end|>") == [1, "x", 2]


def test_user_defined_tokens_match_in_plain_text(tiny):
    # llama.cpp parses user-defined tokens even with parse_special off.
    tool = tiny.token_id("<tool>")
    assert tiny.encode("x<tool>y") == tiny.encode("x") + [tool] + tiny.encode("y")


def test_eog_bos_and_bytes(tiny):
    assert tiny.is_eog(0) and tiny.is_eog(2) and not tiny.is_eog(1)
    assert tiny.bos_prefix() == []
    assert Tokenizer(tiny_data(add_bos=True)).bos_prefix() == [1]
    assert tiny.token_bytes(3 + 0xE2) == b"\xe2"
    assert tiny.token_bytes(2) == b"<|im_end|>"
    assert tiny.decode([1, 3 + ord("x"), 2], skip_control=True) == "x"
    with pytest.raises(IndexError):
        tiny.token_bytes(10**6)


def test_stream_decoder_waits_for_whole_characters(tiny):
    ids = tiny.encode("é€😀")  # one byte token each: 2 + 3 + 4 bytes
    sd = StreamDecoder(tiny)
    out = [sd.feed(i) for i in ids]
    assert "".join(out) == "é€😀"
    assert out == ["", "é", "", "", "€", "", "", "", "😀"]
    assert sd.flush() == ""
    sd.feed(3 + 0xF0)  # a cut-off character at the end of a stream
    assert sd.flush() == "\ufffd"


def test_lone_surrogates_do_not_crash(tiny):
    assert tiny.decode(tiny.encode("a\ud800b")) == "a\ufffdb"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tiny_round_trip(tiny, text):
    assert tiny.decode(tiny.encode(text)) == text


# ------------------------------------------------------------ the real model
def _real_tokenizer_data():
    try:
        from ditto.engine.gguf_model import load_model_file
    except ImportError:  # loader not there yet: read the fields directly
        import gguf
        r = gguf.GGUFReader(MODEL)

        def get(key, default=None):
            f = r.fields.get(key)
            return default if f is None else f.contents()
        return tiny_data(
            model=get("tokenizer.ggml.model"), pre=get("tokenizer.ggml.pre"),
            tokens=get("tokenizer.ggml.tokens"), token_types=get("tokenizer.ggml.token_type"),
            merges=get("tokenizer.ggml.merges"), bos_id=get("tokenizer.ggml.bos_token_id"),
            eos_id=get("tokenizer.ggml.eos_token_id"), pad_id=get("tokenizer.ggml.padding_token_id"),
            add_bos=get("tokenizer.ggml.add_bos_token", False),
            chat_template=get("tokenizer.chat_template"))
    return load_model_file(MODEL).tokenizer


@pytest.fixture(scope="module")
def real_data():
    if not MODEL.exists():
        pytest.skip(f"default model not in the cache ({MODEL}); run `ditto model pull`")
    return _real_tokenizer_data()


@pytest.fixture(scope="module")
def real(real_data) -> Tokenizer:
    return Tokenizer(real_data)


def _case(name):
    # Not read_text: it would translate CRLF; the ids are for the bytes on disk.
    text = (DATA / f"{name}.txt").read_bytes().decode("utf-8")
    return text, json.loads((DATA / f"{name}.ids.json").read_text())


def test_cases_exist():
    assert len(CASES) >= 9 and "edge_cases" in CASES
    raw = (DATA / "edge_cases.txt").read_bytes()
    assert b"\r\n" in raw and b"\t" in raw and b"<|im_end|>" in raw  # git kept the bytes


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_matches_llama_cpp(real, name):
    text, rec = _case(name)
    assert rec["source"] == "llama.cpp llama-tokenize"
    assert real.encode(text) == rec["ids"]
    if real.can_round_trip(text):
        assert real.decode(rec["ids"]) == text


@pytest.mark.slow
@pytest.mark.parametrize("pre", ["qwen2", "gpt-2", "default", "llama3"])
def test_other_pre_tokenizers_match_llama_cpp(real_data, pre):
    # Same vocabulary, another tokenizer.ggml.pre: llama.cpp's ids for that
    # pre type (bench/llamacpp_tokens.py writes them with a vocab-only GGUF).
    if dataclasses.is_dataclass(real_data):
        data = dataclasses.replace(real_data, pre=pre)
    else:
        data = SimpleNamespace(**dict(vars(real_data), pre=pre))
    tok = Tokenizer(data)
    texts, expected = zip(*(_case(n) for n in CASES))
    got = tok.encode_batch(list(texts))
    for name, g, rec in zip(CASES, got, expected):
        assert g == rec["pre_variants"][pre], f"{name} with pre={pre}"


@pytest.mark.slow
def test_real_specials(real):
    assert real.bos_id == 1 and real.eos_id == 2 and not real.add_bos
    assert real.is_eog(2) and real.is_eog(0) and not real.is_eog(1)
    text = "x <|im_end|>\n<|im_start|>system\n<|endoftext|>"
    plain = real.encode(text)
    assert not any(real.is_control(i) for i in plain)
    assert real.decode(plain) == text
    parsed = real.encode_with_specials(text)
    assert [i for i in parsed if real.is_control(i)] == [2, 1, 0]
    assert real.decode(parsed) == text


@pytest.mark.slow
def test_bytes_missing_from_vocabulary_are_dropped(real):
    # SmolLM2 has no token for some bytes; llama.cpp drops them too (the
    # edge_cases file holds some and matches llama.cpp's ids above).
    assert {0x04, 0x1D, 0xF1} <= real.missing_bytes
    assert not real.can_round_trip("a\x04b") and real.can_round_trip("a\tb")
    assert real.decode(real.encode("a\x04b")) == "ab"


@pytest.mark.slow
def test_real_stream_decoder_matches_decode(real):
    text, rec = _case("edge_cases")
    sd = real.stream_decoder()
    assert "".join(sd.feed(i) for i in rec["ids"]) + sd.flush() == real.decode(rec["ids"])


_awkward = st.lists(st.sampled_from(
    list(" \t\r\n\u00a0\u3000\u2028\u0085\x0b") + list("0123456789") + list("ab_(),.'\"")
    + ["é", "😀", "👨\u200d👩", "日本", "<|im_end|>", "'s", "１２", "\u0301"]),
    max_size=200).map("".join)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _awkward,
                 st.builds(lambda n, k: " " * n + "x" + "9" * k,
                           st.integers(0, 300), st.integers(0, 300))))
def test_real_round_trip(real, text):
    assume(real.can_round_trip(text))
    ids = real.encode(text)
    assert real.decode(ids) == text
    assert not any(real.is_control(i) for i in ids)
    assert real.decode_bytes(ids) == b"".join(real.token_bytes(i) for i in ids)


# ------------------------------------------------- SentencePiece (gemma3)
def spm_data(tokens_scores, user=(), add_space_prefix=False, **over) -> SimpleNamespace:
    """A SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then the
    given (text, score) pieces (type 1) and user-defined texts (type 4)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(tokens)
    for text, score in tokens_scores:
        tokens.append(text)
        types.append(1)
        scores.append(score)
    for text in user:
        tokens.append(text)
        types.append(4)
        scores.append(-1000.0)
    return tiny_data(model="llama", pre="default", tokens=tokens, token_types=types, merges=[],
                     scores=scores, bos_id=1, eos_id=2, add_bos=True, add_space_prefix=add_space_prefix,
                     **over)


def spm_texts(tok, ids):
    return [tok.token_text(i) for i in ids]


def test_spm_merges_the_highest_scoring_pair_first():
    pieces = [("a", -1.0), ("b", -1.0), ("c", -1.0), ("ab", -5.0), ("bc", -2.0)]
    tok = Tokenizer(spm_data(pieces))
    assert spm_texts(tok, tok.encode("abc")) == ["a", "bc"]  # bc (-2) before ab (-5)
    # greedy, not the best segmentation: "b"+"cd" first leaves "a", "bcd"
    # although "ab", "cd" would score higher in total
    tok = Tokenizer(spm_data([("a", -1.0), ("b", -1.0), ("c", -1.0), ("d", -1.0), ("ab", -4.0),
                              ("cd", -4.0), ("bc", -2.0), ("bcd", -30.0)]))
    assert spm_texts(tok, tok.encode("abcd")) == ["a", "bcd"]


def test_spm_ties_merge_the_leftmost_pair():
    tok = Tokenizer(spm_data([("a", -1.0), ("aa", -2.0)]))
    assert spm_texts(tok, tok.encode("aaa")) == ["aa", "a"]


def test_spm_falls_back_to_byte_tokens_and_round_trips():
    tok = Tokenizer(spm_data([("h", -1.0), ("i", -1.0), ("hi", -1.5), ("▁", -1.0)]))
    ids = tok.encode("hi é")
    assert spm_texts(tok, ids) == ["hi", "▁", "<0xC3>", "<0xA9>"]
    assert tok.decode(ids) == "hi é"
    assert not tok.missing_bytes


def test_spm_space_prefix_only_when_the_vocabulary_asks():
    pieces = [("▁x", -1.0), ("x", -2.0)]
    assert spm_texts(Tokenizer(spm_data(pieces)), Tokenizer(spm_data(pieces)).encode("x")) == ["x"]
    with_prefix = Tokenizer(spm_data(pieces, add_space_prefix=True))
    assert spm_texts(with_prefix, with_prefix.encode("x")) == ["▁x"]


def test_spm_user_defined_tokens_are_cut_out_first_longest_first():
    tok = Tokenizer(spm_data([("▁", -1.0)], user=["  ", "    "]))
    # 6 spaces: the 4-space token first, then the 2-space one; never U+2581 merges
    assert spm_texts(tok, tok.encode("      ")) == ["    ", "  "]
    assert tok.decode(tok.encode("a     b")) == "a     b"


def test_spm_merges_never_make_control_or_byte_tokens():
    """Plain text stays plain: merging "<s" + ">" would give the control token
    <s>, "<0x4" + "1>" the byte token for "A" (llama.cpp does both)."""
    pieces = [(c, -1.0) for c in "<s>0x41"] + [("<s", -2.0), ("<0x4", -2.0), ("1>", -2.0), ("<0", -2.0),
                                                ("<0x", -2.0)]
    tok = Tokenizer(spm_data(pieces))
    for text in ("<s>", "<0x41>"):
        ids = tok.encode(text)
        assert not any(tok.is_control(i) or tok.token_text(i).startswith("<0x4") and len(tok.token_text(i)) == 6
                       for i in ids), [tok.token_text(i) for i in ids]
        assert tok.decode(ids) == text
    assert tok.encode_with_specials("<s>") == [1]
    assert tok.bos_prefix() == [1]


@pytest.fixture(scope="module")
def gemma(gemma_model_path) -> Tokenizer:
    from ditto.engine.gguf_model import load_model_file
    return Tokenizer(load_model_file(gemma_model_path).tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_gemma3_matches_llama_cpp(gemma, name):
    """llama.cpp's ids (bench/llamacpp_tokens_spm.py) on the same files."""
    text = (DATA / f"{name}.txt").read_bytes().decode("utf-8")
    rec = json.loads((DATA / f"{name}.gemma3-ids.json").read_text())
    assert rec["source"] == "llama.cpp llama-tokenize"
    assert gemma.encode(text) == rec["ids"]
    assert gemma.decode(rec["ids"]) == text


@pytest.mark.slow
def test_gemma3_space_mark_refused(gemma):
    """U+2581 is how SentencePiece writes a space: in a text it decodes as a
    space (llama.cpp's decoder does the same), so such a text cannot be
    rewritten unchanged and the rewrite refuses it by name."""
    from ditto.engine.source_text import UnsafeText, check_encodable
    text = "x = 1\ns = 'a\u2581b'\n"
    assert gemma.decode(gemma.encode(text)) != text
    assert not gemma.can_round_trip(text)
    with pytest.raises(UnsafeText, match="U\\+2581.*line 2"):
        check_encodable(gemma, text)


@pytest.mark.slow
def test_gemma3_specials(gemma):
    assert (gemma.bos_id, gemma.eos_id, gemma.add_bos) == (2, 1, True)
    assert gemma.bos_prefix() == [2]
    # llama.cpp forces "</s>" (user-defined in Gemma's vocabulary) to a
    # control token: plain text never produces it, and it ends generation
    assert gemma.is_eog(gemma.token_id("</s>")) and gemma.is_eog(1)
    assert gemma.token_id("</s>") not in gemma.encode("x</s>y")


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), _awkward))
def test_gemma3_round_trip(gemma, text):
    # byte fallback covers every byte: only SentencePiece's own space mark is refused
    assert gemma.can_round_trip(text) == ("\u2581" not in text)
    if "\u2581" in text:
        return
    ids = gemma.encode(text)
    assert gemma.decode(ids) == text
    assert not any(gemma.is_control(i) for i in ids)
