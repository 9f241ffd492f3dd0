"""Edit-aware drafting for rewrites: follow the original file, learn the edits.

A rewrite's output is mostly a copy of the original. The drafter keeps an
alignment pointer into the original and drafts what comes next there. When
the output departs (the edit), it re-synchronises on the latest output
n-gram that occurs in the original near the pointer, and records what was
replaced by what as a rule (X -> Y). Rules are applied while drafting, so a
rename (X -> Y everywhere) drafts straight through every later occurrence.
A rule that misfires where its neighbours differ is blocked there, and
remembers it if it is dropped and learned again. A new alignment drafts
short until it has held: a looping answer meets the original by chance.

All tracking is driven by the history (each new token is consumed once, O(1)
amortised); feedback() only updates the counters.
"""

from __future__ import annotations

from bisect import bisect_left
from difflib import SequenceMatcher
from dataclasses import dataclass, field
from typing import Sequence

from .base import DrafterBase, HistoryMirror


class _SourceIndex:
    """n-grams of the original -> ascending positions just after them."""

    NS = (6, 4, 3, 2, 1)
    # Short n-grams are common: only trust them close after the pointer.
    WINDOW = {2: 64, 1: 16}

    def __init__(self, tokens: list[int]) -> None:
        self.maps: dict[int, dict[tuple[int, ...], list[int]]] = {}
        for n in self.NS:
            m: dict[tuple[int, ...], list[int]] = {}
            for e in range(n, len(tokens)):
                m.setdefault(tuple(tokens[e - n:e]), []).append(e)
            self.maps[n] = m

    def find(self, tokens: list[int], end: int, near: int, min_n: int) -> int | None:
        """Position after the longest n-gram ending tokens[:end] whose last token is
        nearest at/after near (else, for long n-grams, nearest before)."""
        for n in self.NS:
            if n < min_n or end < n:
                continue
            ends = self.maps[n].get(tuple(tokens[end - n:end]))
            if not ends:
                continue
            i = bisect_left(ends, near + 1)
            window = self.WINDOW.get(n)
            if window is None:
                return ends[i] if i < len(ends) else ends[-1]
            if i < len(ends) and ends[i] - near <= window:
                return ends[i]
        return None


@dataclass(eq=False)
class _Rule:
    """Original tokens x (or, for an insertion, none after context token ctx) -> out."""

    x: tuple[int, ...]
    ctx: int | None
    out: tuple[int, ...]
    score: int = 1
    # Tokens seen just before / after x (or the insertion point) where the rule
    # misfired and where it held. A side blocks the rule when it only ever
    # misfired: "end" -> "stop" must not fire on the "end" of "s_and_end".
    bad: tuple[set, set] = field(default_factory=lambda: (set(), set()))
    good: tuple[set, set] = field(default_factory=lambda: (set(), set()))

    def neighbours(self, orig: list[int], p: int) -> tuple[int | None, int | None]:
        # An insertion's context token is part of its match: look one further left
        # ("hex" in "hexdigest", "." in ".digest" for an insertion after "digest").
        left = p - 1 if self.x else p - 2
        q = p + len(self.x)
        return (orig[left] if left >= 0 else None, orig[q] if q < len(orig) else None)

    def allowed(self, orig: list[int], p: int) -> bool:
        return not any(t in bad and t not in good
                       for t, bad, good in zip(self.neighbours(orig, p), self.bad, self.good))

    def note(self, orig: list[int], p: int, held: bool) -> None:
        for t, seen in zip(self.neighbours(orig, p), self.good if held else self.bad):
            seen.add(t)

    @property
    def skip(self) -> int:
        return len(self.x)


class _Rules:
    """Learned edits with a small confidence score; misfiring rules are dropped."""

    MAX_X, MAX_OUT, MAX_SCORE, PENALTY = 8, 16, 4, 2

    def __init__(self) -> None:
        self.subs: dict[int, dict[tuple[int, ...], _Rule]] = {}  # by x[0]
        self.ins: dict[int, _Rule] = {}                          # by context token
        # Where each edit ever held or misfired, kept after its rule is dropped:
        # an edit learned again ("hexdigest" -> "hexdigest_impl" after a misfire
        # on ".digest") starts out knowing where it does not apply.
        self.seen: dict[tuple, tuple[tuple[set, set], tuple[set, set]]] = {}

    def __bool__(self) -> bool:
        return bool(self.subs or self.ins)

    def learn(self, orig: list[int], start: int, stop: int, out: list[int]) -> None:
        """orig[start:stop] was written as out."""
        x = tuple(orig[start:stop])
        if not out or len(x) > self.MAX_X or len(out) > self.MAX_OUT:
            return  # deletions and large rewrites are left to re-synchronisation
        if x:
            rule = self.subs.setdefault(x[0], {})[x] = _Rule(x, None, tuple(out))
        elif start > 0:
            rule = self.ins[orig[start - 1]] = _Rule((), orig[start - 1], tuple(out))
        else:
            return
        rule.bad, rule.good = self.seen.setdefault((rule.x, rule.ctx, rule.out), (rule.bad, rule.good))
        rule.note(orig, start, held=True)

    def match(self, orig: list[int], p: int, allow_insert: bool) -> _Rule | None:
        if p >= len(orig):
            return None
        if allow_insert and p > 0:
            rule = self.ins.get(orig[p - 1])
            if rule is not None and rule.allowed(orig, p):
                return rule
        bucket = self.subs.get(orig[p])
        if not bucket:
            return None
        best = None
        for x, rule in bucket.items():
            if (best is None or len(x) > best.skip) and tuple(orig[p:p + len(x)]) == x \
                    and rule.allowed(orig, p):
                best = rule
        return best

    def reward(self, rule: _Rule, orig: list[int], p: int) -> None:
        rule.note(orig, p, held=True)
        rule.score = min(self.MAX_SCORE, rule.score + 1)

    def penalize(self, rule: _Rule, orig: list[int], p: int) -> None:
        """rule matched at orig[p] but the model wrote something else."""
        rule.note(orig, p, held=False)
        rule.score -= self.PENALTY
        if rule.score > 0:
            return
        if rule.x:
            bucket = self.subs.get(rule.x[0], {})
            if bucket.get(rule.x) is rule:
                del bucket[rule.x]
                if not bucket:
                    del self.subs[rule.x[0]]
        elif self.ins.get(rule.ctx) is rule:
            del self.ins[rule.ctx]


_ALIGNED, _IN_RULE, _DEPARTED = range(3)


class EditAwareDrafter(DrafterBase):
    """Drafts a rewrite from the original file, re-synchronising after each edit."""

    name = "edit"
    # Guesses made while departed: a same-length substitution, for MAX_GUESS
    # tokens after a departure; the original's start, for START_GUESS tokens of
    # preamble (a code fence, a sentence). They are kept short (GUESS_LEN)
    # because a wrong long draft costs a wide verification batch.
    MAX_GUESS, START_GUESS, GUESS_LEN = 4, 32, 4
    # An alignment drafts at most TRUST x the tokens it has held so far (at
    # least GUESS_LEN), so a coincidental re-synchronisation costs little.
    TRUST = 2

    def __init__(self, source_tokens: Sequence[int]) -> None:
        super().__init__()
        self._orig = [int(t) for t in source_tokens]
        self._index = _SourceIndex(self._orig)
        self._rules = _Rules()
        self._mirror = HistoryMirror()
        self._fresh = True
        self._mode = _DEPARTED
        self._ptr = 0             # ALIGNED: next original token; IN_RULE: rule start; DEPARTED: where we left
        self._no_insert_at = -1   # an insertion just happened here: don't repeat it
        self._rule: _Rule | None = None
        self._rule_k = 0          # tokens of rule.out already written
        self._dep_out = 0         # history position where the departure (or rule) began
        self._starting = True     # nothing of the original written yet
        self._aligned_at = 0      # history position where the current alignment was found

    @property
    def held(self) -> int:
        """Tokens of the answer the current alignment has followed (0 when
        departed from the original), as of the last draft() call."""
        return 0 if self._mode == _DEPARTED else len(self._mirror) - self._aligned_at

    def seed(self, edits: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        """Learns the substitutions of edits made before the decode (next-edit:
        the user's recent hunks, as (original, updated) tokens), so they are
        drafted ahead wherever the original shows them again."""
        for original, updated in edits:
            original, updated = [int(t) for t in original], [int(t) for t in updated]
            for tag, i1, i2, j1, j2 in SequenceMatcher(a=original, b=updated, autojunk=False).get_opcodes():
                if tag in ("replace", "insert"):
                    self._rules.learn(original, i1, i2, updated[j1:j2])

    def _propose(self, history: Sequence[int], max_len: int) -> list[int]:
        n_before = len(self._mirror)
        start = self._mirror.sync(history)
        tokens = self._mirror.tokens
        if self._fresh:
            # The history so far is the prompt: expect the original from its start.
            self._fresh = False
            self._depart(0, len(tokens))
        elif start < n_before:
            # Rolled back or replaced: lose the alignment, find it again from the tail.
            self._starting = False
            self._depart(self._ptr, len(tokens))
            self._resync(tokens, len(tokens))
        else:
            for i in range(start, len(tokens)):
                self._step(tokens, i)
        return self._draft(tokens, max_len)

    # -- tracking -------------------------------------------------------

    def _step(self, tokens: list[int], i: int) -> None:
        t = tokens[i]
        if self._mode == _IN_RULE:
            rule = self._rule
            if t == rule.out[self._rule_k]:
                self._rule_k += 1
                if self._rule_k == len(rule.out):
                    self._rules.reward(rule, self._orig, self._ptr)
                    self._finish_rule()
                return
            self._rules.penalize(rule, self._orig, self._ptr)
            self._depart(self._ptr, self._dep_out)
        elif self._mode == _ALIGNED:
            ptr = self._ptr
            rule = self._rules.match(self._orig, ptr, self._no_insert_at != ptr)
            if rule is not None:
                if t == rule.out[0]:
                    self._mode, self._rule, self._rule_k, self._dep_out = _IN_RULE, rule, 1, i
                    if len(rule.out) == 1:
                        self._rules.reward(rule, self._orig, self._ptr)
                        self._finish_rule()
                    return
                self._rules.penalize(rule, self._orig, ptr)
            if ptr < len(self._orig) and t == self._orig[ptr]:
                self._ptr = ptr + 1
                self._no_insert_at = -1
                return
            self._depart(ptr, i)
        self._resync(tokens, i + 1)

    def _finish_rule(self) -> None:
        self._ptr += self._rule.skip
        self._no_insert_at = self._ptr if self._rule.skip == 0 else -1
        self._mode, self._rule = _ALIGNED, None

    def _depart(self, ptr: int, out_pos: int) -> None:
        self._mode, self._ptr, self._dep_out, self._rule = _DEPARTED, ptr, out_pos, None

    def _resync(self, tokens: list[int], end: int) -> None:
        near = self._ptr
        if self._starting:
            # The original's first token opens the copy; other single tokens
            # (newlines, fences) are too weak before the copy has started.
            opens = bool(self._orig) and tokens[end - 1] == self._orig[0]
            e = 1 if opens else self._index.find(tokens, end, near, 2)
        else:
            e = self._index.find(tokens, end, near, 1)
        if e is None:
            return
        if not self._starting and e >= near:
            self._learn(tokens, end, e)
        self._mode, self._ptr, self._no_insert_at, self._starting = _ALIGNED, e, -1, False
        self._aligned_at = end

    def _learn(self, tokens: list[int], end: int, e: int) -> None:
        # Walk the common tail back to where output and original rejoined.
        o, p = end, e
        while o > self._dep_out and p > self._ptr and tokens[o - 1] == self._orig[p - 1]:
            o -= 1
            p -= 1
        self._rules.learn(self._orig, self._ptr, p, tokens[self._dep_out:o])

    # -- drafting -------------------------------------------------------

    def _draft(self, tokens: list[int], max_len: int) -> list[int]:
        if self._mode != _DEPARTED:
            # A fresh alignment may be a coincidence (the answer looping over its
            # own text meets the original again): trust it as far as it has held.
            max_len = min(max_len, max(self.GUESS_LEN, self.TRUST * (len(tokens) - self._aligned_at)))
        if self._mode == _ALIGNED:
            return self._copy_from(self._ptr, max_len, self._no_insert_at)
        if self._mode == _IN_RULE:
            rule = self._rule
            out = list(rule.out[self._rule_k:max_len + self._rule_k])
            p = self._ptr + rule.skip
            return out + self._copy_from(p, max_len - len(out), p if rule.skip == 0 else -1)
        written = len(tokens) - self._dep_out
        max_len = min(max_len, self.GUESS_LEN)
        if self._starting:
            return self._copy_from(0, max_len, -1) if written <= self.START_GUESS else []
        if written > self.MAX_GUESS:
            return []
        return self._copy_from(self._ptr + written, max_len, -1)

    def _copy_from(self, p: int, max_len: int, no_insert_at: int) -> list[int]:
        orig, rules = self._orig, self._rules
        if not rules or max_len <= 0:
            return orig[p:p + max_len]
        out: list[int] = []
        while len(out) < max_len and p < len(orig):
            rule = rules.match(orig, p, no_insert_at != p)
            if rule is None:
                out.append(orig[p])
                p += 1
                no_insert_at = -1
            else:
                out.extend(rule.out)
                p += rule.skip
                no_insert_at = p if rule.skip == 0 else -1
        return out[:max_len]
