"""Tokenizer built from a GGUF vocabulary, matching llama.cpp's ids.

Two kinds of vocabulary (`tokenizer.ggml.model`):
- "gpt2", byte-level BPE: the BPE model, merges and pre-tokenizer come from
  the GGUF (`TokenizerData`, see gguf_model.py); the `tokenizers` library
  does the work. The pre-tokenizer is picked from `tokenizer.ggml.pre` with
  the regexes llama.cpp uses for that name (src/llama-vocab.cpp).
- "llama", SentencePiece with scores and byte fallback (Gemma): spm.py runs
  llama.cpp's own merge algorithm (why not `tokenizers`: see there).

Two entry points, on purpose:
- `encode(text)`: all text is plain text. A document that contains
  "<|im_end|>" gets the tokens for those characters, never the control token.
- `encode_with_specials(text)`: control tokens written in the text become
  their ids. Only for text we wrote ourselves (chat templates).
"""
from __future__ import annotations

import codecs
import functools
import re
from typing import Iterable, Sequence

from tokenizers import AddedToken, Regex
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from .gguf_reader import GGUFError
from .fim import FimTokens, find_fim_tokens
from .packed import PackedBytes, PackedStrings
from .spm import SPACE, SpmEncoder

__all__ = ["Tokenizer", "TokenizerError", "StreamDecoder", "SUPPORTED_PRE"]


class TokenizerError(GGUFError):
    """The GGUF's tokenizer cannot be reproduced (unknown model or pre type,
    merges that do not fit the vocabulary)."""


# GGUF token types (llama.cpp's LLAMA_TOKEN_TYPE_*).
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE = 1, 2, 3, 4, 5, 6

# Regexes copied from llama.cpp's llm_tokenizer_bpe (llama-vocab.cpp).
# GPT-2's split. llama.cpp leaves out the trailing `|\s+`, but text no branch
# matches becomes a piece of its own there, which is what `\s+` does here.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Qwen2: llama.cpp's ASCII-only spelling of (?i:'s|...) (Unicode case folding
# would also match e.g. "'ſ"; llama.cpp does not).
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
          r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
           r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# llama.cpp's DEFAULT type: four splits applied one after another.
_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")

# pre name -> (regexes applied in order, ignore_merges). Names grouped as in
# llama.cpp's llama_vocab::impl::load; every group here shares one regex list.
_PRE_GROUPS: list[tuple[tuple[str, ...], tuple[str, ...], bool]] = [
    (("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
      "minerva-7b", "mellum2"), (r"\p{N}", _GPT2), False),
    (("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
      "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "mpt", "olmo", "jais",
      "trillion", "granite-docling", "exaone4"), (_GPT2,), False),
    (("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2",
      "hunyuan", "solar-open"), (_QWEN2,), False),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
      "midm-2.0", "lfm2", "jina-v5-nano"), (_LLAMA3,), True),
    (("dbrx", "smaug-bpe"), (_LLAMA3,), False),
    (("default", ""), _DEFAULT, False),  # "" = key missing: llama.cpp falls back to default
]
_PRE: dict[str, tuple[tuple[str, ...], bool]] = {
    name: (regexes, ignore) for names, regexes, ignore in _PRE_GROUPS for name in names}
SUPPORTED_PRE = tuple(sorted(n for n in _PRE if n))

# Phi-3 specials llama.cpp leaves without RSTRIP, and C's isspace().
_NO_RSTRIP = frozenset({"<unk>", "<s>", "<|endoftext|>"})
_C_SPACE = " \t\n\v\f\r"

# TokenizerData's FIM fields, fim_<role>_id, in FimTokens' order.
_FIM_FIELDS = ("prefix", "suffix", "middle", "pad", "rep", "sep")

# Token texts llama.cpp treats as end-of-generation (and forces to control
# type), as its llama_vocab::impl::load lists them.
_EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
})


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-character alphabet for the 256 byte values, inverted."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_DECODER = _byte_decoder()
# str.translate table taking the byte alphabet to latin-1 characters, so a
# token's bytes are one translate and encode: every character below 256 that
# is not in the alphabet becomes U+0100, which latin-1 cannot encode, like the
# characters above it that are not in the alphabet either.
_BYTE_TABLE = {**{c: 0x100 for c in range(256)}, **{ord(c): b for c, b in _BYTE_DECODER.items()}}


def _field(data, name, default=None):
    return getattr(data, name, default)


class Tokenizer:
    """Tokenizer for one GGUF model; build it once and keep it (it caches)."""

    def __init__(self, data) -> None:
        """`data` is a gguf_model.TokenizerData (any object with its fields)."""
        if data.model not in ("gpt2", "llama"):
            raise TokenizerError(
                f"unsupported tokenizer model {data.model!r} (tokenizer.ggml.model); "
                "supported: byte-level BPE ('gpt2') and SentencePiece ('llama')")
        spm = data.model == "llama"
        pre = data.pre or ""
        if not spm and pre not in _PRE:
            raise TokenizerError(
                f"unknown pre-tokenizer {pre!r} (tokenizer.ggml.pre); "
                f"supported: {', '.join(SUPPORTED_PRE)}")
        self.pre = pre or "default"
        tokens: list[str] = list(data.tokens)
        types: list[int] = list(data.token_types) or [TT_NORMAL] * len(tokens)
        if len(types) != len(tokens):
            raise TokenizerError(
                f"{len(tokens)} tokens but {len(types)} token types in the GGUF")
        self.n_vocab = len(tokens)
        self.bos_id: int | None = _field(data, "bos_id")
        self.eos_id: int | None = _field(data, "eos_id")
        self.eot_id: int | None = _field(data, "eot_id")
        self.pad_id: int | None = _field(data, "pad_id")
        self.add_bos: bool = bool(_field(data, "add_bos", False))
        keyed = FimTokens(*(_field(data, f"fim_{r}_id") for r in _FIM_FIELDS))
        self.fim = find_fim_tokens(tokens, keyed)
        self.fim_prefix_id, self.fim_suffix_id, self.fim_middle_id = self.fim.pre, self.fim.suf, self.fim.mid
        self._tokens = data.tokens if isinstance(data.tokens, PackedStrings) else PackedStrings(tokens)

        # llama.cpp forces EOG-looking tokens, and FIM tokens it found by
        # their text, to control type, so do the same: it decides whether
        # plain-text encoding may produce them.
        fim_by_text = self.fim.ids() - keyed.ids()
        types = [TT_CONTROL if t in _EOG_TEXTS or i in fim_by_text else ty
                 for i, (t, ty) in enumerate(zip(tokens, types))]
        # one byte per token; a type number ditto does not know is none of TT_*
        self._types = bytes(ty if 0 <= ty < 256 else 0 for ty in types)
        eog = {i for i, t in enumerate(tokens) if t in _EOG_TEXTS}
        eog.update(i for i in (self.eos_id, self.eot_id) if i is not None)
        eog.update(self.fim.ends_generation())
        self._eog = frozenset(eog)

        if spm:
            self._tk = None
            self._spm = self._build_spm(data, tokens, types)
            self._piece_bytes = self._build_spm_piece_bytes(tokens, types)
            have = {b for b in range(256) if self._spm.byte_id(b) is not None}
        else:
            self._spm = None
            self._tk = self._build_hf(tokens, types, list(data.merges), pre)
            self._piece_bytes = self._build_piece_bytes(tokens, types)
            have = {b for c, b in _BYTE_DECODER.items() if self._tk.token_to_id(c) is not None}
        # Bytes with no token of their own (SmolLM2 lacks 0x04, 0xF1, ...): BPE
        # drops them silently, as llama.cpp does, so text holding them cannot
        # round-trip. Callers may check with can_round_trip().
        self.missing_bytes = frozenset(range(256)) - have
        # Characters that decode as something else: SentencePiece writes a
        # space as U+2581, so a U+2581 in the text comes back as a space.
        self.lossy_chars = frozenset({SPACE}) if spm else frozenset()

        # Tokens that encode_with_specials recognises in text (what llama.cpp
        # parses with parse_special=true), longest first as llama.cpp tries them.
        special = {t: i for i, (t, ty) in enumerate(zip(tokens, types))
                   if t and ty in (TT_CONTROL, TT_UNKNOWN, TT_USER_DEFINED)}
        self._special_ids = special
        # Phi-3 (llama.cpp sets RSTRIP by the model's name, as Phi-3's own
        # tokenizer marks its added tokens): whitespace after a special token
        # is dropped when specials are parsed.
        self._rstrip = frozenset(i for t, i in special.items() if t not in _NO_RSTRIP) \
            if _field(data, "rstrip_specials", False) else frozenset()

    # ---------------------------------------------------------------- build
    @staticmethod
    def _build_hf(tokens, types, merges, pre) -> _HFTokenizer:
        vocab: dict[str, int] = {}
        for i, t in enumerate(tokens):
            vocab[t] = i  # duplicates: the last id wins, as in llama.cpp's map
        pairs, merged = _merge_pairs(merges, vocab)
        _check_plain_text_tokens(vocab, types, merged)
        regexes, ignore_merges = _PRE[pre]
        try:
            bpe = models.BPE(vocab, pairs, ignore_merges=ignore_merges)
        except Exception as e:  # `tokenizers` raises a bare Exception
            raise TokenizerError(f"cannot build the BPE tokenizer from the GGUF: {e}") from None
        tk = _HFTokenizer(bpe)
        steps = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
        # ByteLevel only maps bytes to GPT-2's alphabet; all splitting is above.
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
        tk.pre_tokenizer = pre_tokenizers.Sequence(steps)
        tk.decoder = decoders.ByteLevel()
        # llama.cpp matches user-defined tokens even in plain text.
        user = [t for t, ty in zip(tokens, types) if ty == TT_USER_DEFINED and t]
        if user:
            tk.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
        return tk

    @staticmethod
    def _build_spm(data, tokens, types) -> SpmEncoder:
        scores = _field(data, "scores")
        if scores is None:
            raise TokenizerError("a SentencePiece ('llama') vocabulary needs tokenizer.ggml.scores")
        user = [i for i, ty in enumerate(types) if ty == TT_USER_DEFINED]
        normal = [ty == TT_NORMAL for ty in types]
        return SpmEncoder(tokens, scores, normal, user, bool(_field(data, "add_space_prefix", False)))

    @staticmethod
    def _build_spm_piece_bytes(tokens, types) -> PackedBytes:
        """Raw bytes of every token, as llama.cpp's token_to_piece(special=true)
        for SentencePiece: U+2581 is a space, <0xNN> a byte."""
        out = []
        for t, ty in zip(tokens, types):
            if ty == TT_NORMAL:
                out.append(t.replace(SPACE, " ").encode("utf-8"))
            elif ty == TT_BYTE and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", t):
                out.append(bytes([int(t[3:5], 16)]))
            elif ty in (TT_CONTROL, TT_UNKNOWN, TT_USER_DEFINED):
                out.append(t.encode("utf-8"))
            else:  # unused
                out.append(b"")
        return PackedBytes(out)

    @staticmethod
    def _build_piece_bytes(tokens, types) -> PackedBytes:
        """Raw bytes of every token, as llama.cpp's token_to_piece(special=true)."""
        out = []
        for t, ty in zip(tokens, types):
            if ty in (TT_CONTROL, TT_UNKNOWN, TT_USER_DEFINED):
                out.append(t.encode("utf-8"))
            elif ty == TT_NORMAL:
                try:
                    out.append(t.translate(_BYTE_TABLE).encode("latin-1"))
                except UnicodeEncodeError:  # not in the byte alphabet: take the text as is
                    out.append(t.encode("utf-8"))
            else:  # unused / byte tokens: llama.cpp renders nothing for BPE unused
                out.append(b"")
        return PackedBytes(out)

    # ------------------------------------------------------------- encoding
    def encode(self, text: str) -> list[int]:
        """Token ids for `text` as plain text (no BOS; see bos_prefix)."""
        if self._spm is not None:
            return self._spm.encode(_clean(text))
        return self._tk.encode(_clean(text), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """encode() for many texts in one call (parallel inside `tokenizers`)."""
        if self._spm is not None:
            return [self.encode(t) for t in texts]
        encs = self._tk.encode_batch([_clean(t) for t in texts], add_special_tokens=False)
        return [e.ids for e in encs]

    @functools.cached_property
    def _special_re(self) -> re.Pattern | None:
        """Compiled on first use, not at load: Gemma's ~6k special tokens make
        a regex that takes longer to compile than the rest of the load."""
        if not self._special_ids:
            return None
        return re.compile("|".join(re.escape(t) for t in sorted(self._special_ids, key=len, reverse=True)))

    def split_specials(self, text: str) -> list[str | int]:
        """Cut text at control-token strings: plain-text pieces and token ids."""
        if self._special_re is None or not text:
            return [text] if text else []
        out: list[str | int] = []
        pos = 0
        for m in self._special_re.finditer(text):
            if m.start() < pos:
                continue  # inside whitespace an rstrip token dropped
            if m.start() > pos:
                out.append(text[pos:m.start()])
            tid = self._special_ids[m.group()]
            out.append(tid)
            pos = m.end()
            if tid in self._rstrip:
                while pos < len(text) and text[pos] in _C_SPACE:
                    pos += 1
        if pos < len(text):
            out.append(text[pos:])
        return out

    def encode_pieces(self, pieces: Iterable[str | int]) -> list[int]:
        """Ids for a mix of plain-text strings and token ids, kept apart."""
        pieces = list(pieces)
        texts = [p for p in pieces if isinstance(p, str)]
        encoded = iter(self.encode_batch(texts)) if texts else iter(())
        ids: list[int] = []
        for p in pieces:
            if isinstance(p, str):
                ids.extend(next(encoded))
            else:
                ids.append(int(p))
        return ids

    def encode_with_specials(self, text: str) -> list[int]:
        """Token ids where control-token strings in `text` become their ids.

        Never use this on document or user text: that is how prompt injection
        of control tokens happens.
        """
        return self.encode_pieces(self.split_specials(text))

    def can_round_trip(self, text: str) -> bool:
        """False if text holds a byte the vocabulary cannot express, or a
        character that decodes as another (lossy_chars)."""
        if any(c in text for c in self.lossy_chars):
            return False
        return not self.missing_bytes or self.missing_bytes.isdisjoint(
            _clean(text).encode("utf-8"))

    def bos_prefix(self) -> list[int]:
        """[bos_id] when the model wants a BOS token at the start, else []."""
        return [self.bos_id] if self.add_bos and self.bos_id is not None else []

    # ------------------------------------------------------------- decoding
    def token_bytes(self, token_id: int) -> bytes:
        """Raw bytes of one token (part of a UTF-8 character, possibly)."""
        if not 0 <= token_id < self.n_vocab:
            raise IndexError(f"token id {token_id} out of range (vocabulary of {self.n_vocab})")
        return self._piece_bytes[token_id]

    def decode_bytes(self, ids: Iterable[int], *, skip_control: bool = False) -> bytes:
        pb, types = self._piece_bytes, self._types
        if skip_control:
            return pb.join(i for i in ids if types[i] not in (TT_CONTROL, TT_UNKNOWN))
        return pb.join(ids)

    def decode(self, ids: Iterable[int], *, skip_control: bool = False) -> str:
        """Text of a token sequence. Control tokens appear as their text unless
        skip_control. Invalid UTF-8 (a cut-off character) becomes U+FFFD.
        No space clean-up: decode(encode(x)) == x when can_round_trip(x)."""
        return self.decode_bytes(ids, skip_control=skip_control).decode("utf-8", "replace")

    def token_text(self, token_id: int) -> str:
        """The vocabulary string of a token (GPT-2 alphabet for normal tokens)."""
        return self._tokens[token_id]

    def token_id(self, text: str) -> int | None:
        """Id of a vocabulary string (e.g. "<|im_end|>"), or None."""
        if self._spm is not None:
            return self._spm.token_id(text)
        return self._tk.token_to_id(text)

    def is_control(self, token_id: int) -> bool:
        return self._types[token_id] in (TT_CONTROL, TT_UNKNOWN)

    def is_eog(self, token_id: int) -> bool:
        """True for tokens that end generation (eos, eot, <|im_end|>, ...)."""
        return token_id in self._eog

    @property
    def eog_ids(self) -> frozenset[int]:
        return self._eog

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)

    @classmethod
    def from_gguf(cls, path) -> "Tokenizer":
        """Convenience: the tokenizer of a GGUF file, via the model loader."""
        from .gguf_model import load_model_file
        return cls(load_model_file(path).tokenizer)


class StreamDecoder:
    """Turns tokens into text as they are generated, holding back the bytes of
    a UTF-8 character until the token that completes it arrives."""

    def __init__(self, tokenizer: Tokenizer, *, skip_control: bool = False) -> None:
        self._tok = tokenizer
        self._skip_control = skip_control
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Text completed by this token ('' while a character is incomplete)."""
        if self._skip_control and self._tok.is_control(token_id):
            return ""
        return self._dec.decode(self._tok.token_bytes(token_id))

    def flush(self) -> str:
        """End of stream: any incomplete character left becomes U+FFFD."""
        out = self._dec.decode(b"", final=True)
        self._dec.reset()
        return out


def _merge_pairs(merges: list[str], vocab: dict[str, int]) -> tuple[list[tuple[str, str]], list[str]]:
    """(left, right) of every "left right" merge, and what each makes
    (left + right); both sides and their concatenation must be tokens
    (`tokenizers` panics or raises otherwise). Checked in bulk with set
    operations; the per-merge check runs only to name the first bad merge."""
    split = [m.partition(" ") for m in merges]
    lefts = [left for left, _sep, _right in split]
    rights = [right for _left, _sep, right in split]
    made = list(map(str.__add__, lefts, rights))
    keys, left_set, right_set = vocab.keys(), set(lefts), set(rights)
    if (all(sep for _l, sep, _r in split) and "" not in left_set and "" not in right_set
            and keys >= left_set and keys >= right_set and keys >= set(made)):
        return list(zip(lefts, rights)), made
    for merge, (left, sep, right) in zip(merges, split):
        if not sep or not left or not right:
            raise TokenizerError(f"malformed merge {merge!r} in tokenizer.ggml.merges")
        for part in (left, right, left + right):
            if part not in vocab:
                raise TokenizerError(
                    f"merge {merge!r} in tokenizer.ggml.merges: {part!r} is not in the vocabulary")
    raise AssertionError("the bulk check failed but no merge is bad")


def _check_plain_text_tokens(vocab: dict[str, int], types: list[int], merged: list[str]) -> None:
    """Tokens BPE makes from plain text (the byte alphabet and every merge's
    result) must decode back to that text, so they must be normal tokens: a
    control or unused token there would turn text into other bytes or none."""
    made = vocab.keys() & set(_BYTE_DECODER).union(merged)
    bad = sorted(t for t in made if types[vocab[t]] != TT_NORMAL)
    if bad:
        text, i = bad[0], vocab[bad[0]]
        raise TokenizerError(
            f"token {i} ({text!r}) has type {types[i]} in tokenizer.ggml.token_type, but BPE "
            "makes it from plain text: only a normal token (type 1) decodes back to that text")


def _clean(text: str) -> str:
    """Lone surrogates (from bad UTF-16 in JSON) cannot reach the Rust side:
    replace them with U+FFFD; valid text passes through untouched."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
