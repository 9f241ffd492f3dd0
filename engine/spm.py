"""SentencePiece-style tokenization (GGUF ``tokenizer.ggml.model = "llama"``)
exactly as llama.cpp does it (src/llama-vocab.cpp, llm_tokenizer_spm_session).

Why not `tokenizers`: its Unigram model picks the best-scoring segmentation
(Viterbi) and its BPE model merges by rank from a merges list; llama.cpp's
SPM path is neither. It greedily merges adjacent symbols whose concatenation
is a token, highest score first (ties: leftmost), then splits any symbol
that is not a token back along the merges that made it, down to byte tokens
(<0xNN>). Those greedy choices differ from Viterbi on real text, and the
scores are not a merge order, so the only way to get llama.cpp's ids is to
run its algorithm, which this module does step for step.

Before that, user-defined tokens (Gemma: runs of newlines, spaces and tabs)
are cut out of the raw text, longest token first, as llama.cpp's
tokenizer_st_partition does; spaces in the rest become U+2581.

One deliberate difference: merges only make normal tokens. llama.cpp would
also merge into a control, byte or unused token when its pieces are tokens
("<0x41>" from "<0x41" + ">"), turning plain text into a control token or
into other bytes. Gemma 3's vocabulary never gets there (its ids match
llama.cpp's on every test file); a vocabulary that does would otherwise
silently change text.
"""
from __future__ import annotations

import heapq
import operator
from itertools import compress
from typing import Sequence

__all__ = ["SpmEncoder", "SPACE"]

SPACE = "\u2581"  # SentencePiece's visible space


class SpmEncoder:
    def __init__(self, tokens: Sequence[str], scores: Sequence[float], normal: Sequence[bool],
                 user_defined: Sequence[int], add_space_prefix: bool) -> None:
        """normal[i]: token i is plain text (merges may make it)."""
        # Two disjoint maps rather than all ids plus the plain ones again: the
        # merge loop looks up plain tokens only, and at 262k tokens a second
        # full dict costs ~10 MB. Duplicates: the last id wins, as llama.cpp's map.
        ids = dict(zip(tokens, range(len(tokens))))
        self._other: dict[str, int] = {}
        for i in compress(range(len(tokens)), map(operator.not_, normal)):
            if ids.get(tokens[i]) == i:
                self._other[tokens[i]] = ids.pop(tokens[i])
        self._plain = ids
        self._scores = scores
        # llama.cpp sorts its special-token cache by length, longest first
        self._user = sorted((tokens[i] for i in user_defined if tokens[i]), key=len, reverse=True)
        self._byte_ids = [self._byte_token(b) for b in range(256)]
        self.add_space_prefix = add_space_prefix

    def _byte_token(self, b: int) -> int | None:
        """<0xNN>, else the plain token of that one character."""
        tid = self.token_id(f"<0x{b:02X}>")
        return tid if tid is not None else self._plain.get(chr(b))

    def byte_id(self, b: int) -> int | None:
        return self._byte_ids[b]

    def token_id(self, text: str) -> int | None:
        tid = self._plain.get(text)
        return tid if tid is not None else self._other.get(text)

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        prev_special = True
        for piece in self._partition(text):
            if isinstance(piece, int):
                out.append(piece)
                prev_special = True
                continue
            if self.add_space_prefix and prev_special:
                piece = " " + piece
            self._encode_fragment(piece.replace(" ", SPACE), out)
            prev_special = False
        return out

    def _partition(self, text: str) -> list[str | int]:
        """Raw text cut at user-defined tokens: each token in turn (longest
        first) splits every raw piece left at its occurrences."""
        pieces: list[str | int] = [text] if text else []
        chars = set(text)
        for tok in self._user:
            if tok[0] not in chars or not any(isinstance(p, str) and tok in p for p in pieces):
                continue
            tid = self.token_id(tok)
            split: list[str | int] = []
            for p in pieces:
                if isinstance(p, int) or tok not in p:
                    split.append(p)
                    continue
                parts = p.split(tok)
                for k, part in enumerate(parts):
                    if k:
                        split.append(tid)
                    if part:
                        split.append(part)
            pieces = split
        return pieces

    def _encode_fragment(self, text: str, out: list[int]) -> None:
        n = len(text)
        if n == 0:
            return
        start = list(range(n))      # symbol i covers text[start[i] : start[i] + size[i]]
        size = [1] * n
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n)) + [-1]
        queue: list[tuple[float, int, int, int]] = []   # (-score, left, right, length)
        rev_merge: dict[str, tuple[int, int]] = {}
        ids, scores = self._plain, self._scores

        def try_add(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            s = text[start[left]:start[left] + size[left] + size[right]]
            tid = ids.get(s)
            if tid is None:
                return
            heapq.heappush(queue, (-scores[tid], left, right, len(s)))
            rev_merge[s] = (left, right)

        for i in range(1, n):
            try_add(i - 1, i)
        while queue:
            _, left, right, length = heapq.heappop(queue)
            if size[left] == 0 or size[right] == 0 or size[left] + size[right] != length:
                continue  # a symbol of this pair was merged since
            size[left] += size[right]
            size[right] = 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            try_add(prev[left], left)
            try_add(left, nxt[left])

        def resegment(i: int) -> None:
            s = text[start[i]:start[i] + size[i]]
            tid = ids.get(s)
            if tid is not None:
                out.append(tid)
                return
            pair = rev_merge.get(s)
            if pair is None:
                # byte fallback; a byte without a token is dropped, as the
                # tokenizer's missing_bytes / can_round_trip report
                out.extend(t for t in (self._byte_ids[b] for b in s.encode("utf-8")) if t is not None)
                return
            resegment(pair[0])
            resegment(pair[1])

        i = 0
        while i != -1:
            resegment(i)
            i = nxt[i]
