"""The decode loop: prompt-cache reuse, prefill, and speculative verification.

Every request owns one sequence of a native Context. A forward pass takes
one slice from every active request: a prompt chunk, or the request's
pending token followed by a draft. The model's logits at each drafted
position decide how much of the draft stands (greedy: the longest prefix
equal to the argmax; sampling: the rejection rule in Sampler.verify_draft);
the rest is rolled back by truncating the sequence. A ring KV cache
(Context(kv_ring=...)) overwrites old positions as it goes, so it cannot
always be truncated: there the pass is preceded by a checkpoint, and when
truncation would need overwritten positions the sequence is restored to
the checkpoint and the accepted tokens are replayed in one more pass.
Because the native forward pass is batch-invariant, the emitted tokens
(and the replayed keys and values) are exactly those of plain
one-token-at-a-time decoding.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .drafters.base import Drafter
from .drafters.length import AdaptiveLength
from .sampling import Sampler, SamplingParams


@dataclass
class DecodeStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0     # prompt tokens served from the sequence's cache
    generated: int = 0
    drafted: int = 0
    accepted: int = 0
    forward_passes: int = 0    # passes this request took part in
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        passes = self.forward_passes
        return self.generated / passes if passes else 0.0

    @property
    def prefill_tps(self) -> float:
        evaluated = self.prompt_tokens - self.reused_tokens
        return evaluated / self.prefill_seconds if self.prefill_seconds else 0.0

    @property
    def decode_tps(self) -> float:
        return self.generated / self.decode_seconds if self.decode_seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "reused_tokens": self.reused_tokens,
            "generated": self.generated,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_rate": round(self.acceptance_rate, 4),
            "forward_passes": self.forward_passes,
            "tokens_per_pass": round(self.tokens_per_pass, 3),
            "prefill_seconds": round(self.prefill_seconds, 4),
            "decode_seconds": round(self.decode_seconds, 4),
            "prefill_tps": round(self.prefill_tps, 2),
            "decode_tps": round(self.decode_tps, 2),
            "seconds": round(self.prefill_seconds + self.decode_seconds, 4),
        }


@dataclass
class Request:
    """One generation on one sequence of the context."""
    prompt: list[int]
    max_tokens: int
    seq: int = 0
    sampling: SamplingParams = SamplingParams()
    drafter: Drafter | None = None
    draft_length: AdaptiveLength | None = None
    is_stop: Callable[[int], bool] = lambda _t: False    # ends output, not included (EOG)
    is_final: Callable[[int], bool] = lambda _t: False   # ends output, included (a stop string)
    on_tokens: Callable[[list[int]], None] | None = None
    output: list[int] = field(default_factory=list)
    stats: DecodeStats = field(default_factory=DecodeStats)
    done: bool = False
    finish_reason: str = ""    # "stop", "length", "context", "cancelled"

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("a request needs at least one prompt token")
        if self.max_tokens < 0:
            raise ValueError("max_tokens must be >= 0")
        self.sampler = Sampler(self.sampling)
        if self.drafter is not None and self.draft_length is None:
            self.draft_length = AdaptiveLength()
        self._pending: int | None = None   # emitted, not yet in the KV cache
        self._history = list(self.prompt)
        self._prefill_from = 0
        if self.max_tokens == 0:
            self._finish("length")

    @property
    def history(self) -> list[int]:
        """Prompt + output, kept as one list (drafters read it every pass)."""
        return self._history

    def _finish(self, reason: str) -> None:
        self.done, self.finish_reason = True, reason

    def _emit(self, tokens: list[int]) -> None:
        """Appends tokens up to a stop token or the length budget."""
        kept: list[int] = []
        for t in tokens:
            if self.is_stop(t):
                self._finish("stop")
                break
            kept.append(t)
            if self.is_final(t):
                self._finish("stop")
                break
            if len(self.output) + len(kept) >= self.max_tokens:
                self._finish("length")
                break
        self.output.extend(kept)
        self._history.extend(kept)
        self.stats.generated += len(kept)
        if kept and self.on_tokens:
            self.on_tokens(kept)


class Decoder:
    """Runs requests on a native Context, sharing forward passes between them."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        # Tokens each sequence's KV cache holds, for prompt-cache reuse.
        self.cached: dict[int, list[int]] = {}

    # ---- prompt cache -------------------------------------------------------
    def _reuse_prefix(self, req: Request) -> None:
        held = self.cached.get(req.seq, [])
        held = held[: self.ctx.seq_len(req.seq)]
        n = 0
        limit = min(len(held), len(req.prompt) - 1)  # the last prompt token is always evaluated
        while n < limit and held[n] == req.prompt[n]:
            n += 1
        if not self.ctx.can_truncate(req.seq, n):
            n = 0  # a ring cache no longer holds the window before n: start over
        self.ctx.truncate(req.seq, n)
        self.cached[req.seq] = req.prompt[:n]
        req._prefill_from = n
        req.stats.prompt_tokens = len(req.prompt)
        req.stats.reused_tokens = n

    def _check_capacity(self, req: Request) -> None:
        if len(req.prompt) >= self.ctx.n_ctx:
            raise OverflowError(
                f"prompt of {len(req.prompt)} tokens does not fit the context of {self.ctx.n_ctx}")

    # ---- forward pass ---------------------------------------------------------
    def _forward(self, slices: list[tuple[Request, list[int], bool]],
                 want_logits: bool = True) -> list[np.ndarray]:
        """Evaluates each request's tokens in one batch. Returns per slice the
        logits of every token (all_logits) or of its last token only (none
        without want_logits)."""
        tokens: list[int] = []
        positions: list[int] = []
        seqs: list[int] = []
        want: list[bool] = []
        for req, toks, all_logits in slices:
            start = self.ctx.seq_len(req.seq)
            tokens += toks
            positions += range(start, start + len(toks))
            seqs += [req.seq] * len(toks)
            want += [all_logits and want_logits] * (len(toks) - 1) + [want_logits]
        logits = self.ctx.decode(tokens, positions, seqs, want)
        out, row = [], 0
        for req, toks, all_logits in slices:
            n = (len(toks) if all_logits else 1) if want_logits else 0
            out.append(logits[row:row + n])
            row += n
            self.cached.setdefault(req.seq, []).extend(toks)
            req.stats.forward_passes += 1
        return out

    # ---- phases ---------------------------------------------------------------------
    def prefill(self, requests: Sequence[Request]) -> None:
        """Evaluates the prompts not already cached and picks each first token."""
        live = [r for r in requests if not r.done]
        for req in live:
            self._check_capacity(req)
            self._reuse_prefix(req)
        t0 = time.perf_counter()
        todo = {id(r): r.prompt[r._prefill_from:] for r in live}
        budget = self.ctx.max_batch
        while any(todo.values()):
            slices, room = [], budget
            for req in live:
                rest = todo[id(req)]
                if not rest or room == 0:
                    continue
                chunk = rest[:room]
                room -= len(chunk)
                todo[id(req)] = rest[len(chunk):]
                slices.append((req, chunk, False))
            for (req, _chunk, _), logits in zip(slices, self._forward(slices)):
                if not todo[id(req)]:
                    req._pending = req.sampler.sample(logits[-1])
        elapsed = time.perf_counter() - t0
        for req in live:
            req.stats.prefill_seconds += elapsed
            req._emit([req._pending])

    def step(self, requests: Sequence[Request]) -> None:
        """One forward pass: each active request's pending token plus a draft."""
        live = [r for r in requests if not r.done]
        if not live:
            return
        t0 = time.perf_counter()
        slices, drafts = [], []
        for req in live:
            room = self.ctx.n_ctx - self.ctx.seq_len(req.seq) - 1
            if room < 0:
                req._finish("context")
                continue
            budget = min(room, req.max_tokens - len(req.output) - 1)
            draft: list[int] = []
            if req.drafter is not None and budget > 0:
                draft = req.drafter.draft(req.history, min(budget, req.draft_length.current))[:budget]
            slices.append((req, [req._pending] + draft, True))
            drafts.append(draft)
        # A ring cache may be unable to drop the rejected part: checkpoint.
        ring = getattr(self.ctx, "kv_ring", False)
        checkpoints = [self.ctx.checkpoint(req.seq, len(fed)) if ring else None for req, fed, _ in slices]
        results = self._forward(slices) if slices else []
        replay, emits = [], []
        for (req, fed, _), draft, logits, ck in zip(slices, drafts, results, checkpoints):
            emitted = self._verify(req, draft, logits)
            # Keep the pending token and the accepted drafts; drop the rest.
            start = self.ctx.seq_len(req.seq) - len(fed)
            keep = start + len(emitted)
            if ck is None or self.ctx.can_truncate(req.seq, keep):
                self.ctx.truncate(req.seq, keep)
                del self.cached[req.seq][keep:]
            else:
                self.ctx.restore(req.seq, ck)
                del self.cached[req.seq][start:]
                replay.append((req, fed[:len(emitted)], False))
            emits.append((req, emitted))
        if replay:
            # Same tokens at the same positions: bit-identical keys and values.
            self._forward(replay, want_logits=False)
        elapsed = time.perf_counter() - t0
        for req, emitted in emits:
            req.stats.decode_seconds += elapsed
            req._pending = emitted[-1]
            req._emit(emitted)

    def _verify(self, req: Request, draft: list[int], logits: np.ndarray) -> list[int]:
        """Tokens to emit: the accepted part of the draft plus one model token."""
        emitted: list[int] = []
        for i, d in enumerate(draft):
            ok, token = req.sampler.verify_draft(logits[i], d)
            emitted.append(token)
            if not ok:
                break
        else:
            emitted.append(req.sampler.sample(logits[len(draft)]))
        n_accepted = len(emitted) - 1
        if draft:
            req.drafter.feedback(len(draft), n_accepted)
            req.draft_length.update(len(draft), n_accepted)
            req.stats.drafted += len(draft)
            req.stats.accepted += n_accepted
        return emitted

    # ---- drivers ---------------------------------------------------------------------
    def run(self, requests: Sequence[Request], should_stop: Callable[[], bool] = lambda: False) -> None:
        """Runs every request to completion (or until should_stop)."""
        self.prefill(requests)
        while any(not r.done for r in requests):
            if should_stop():
                for r in requests:
                    if not r.done:
                        r._finish("cancelled")
                return
            self.step(requests)

    def stream(self, req: Request, should_stop: Callable[[], bool] = lambda: False) -> Iterator[int]:
        """Yields one request's tokens as they are decided."""
        emitted: list[int] = []
        previous = req.on_tokens

        def collect(tokens: list[int]) -> None:
            emitted.extend(tokens)
            if previous:
                previous(tokens)

        req.on_tokens = collect
        try:
            self.prefill([req])
            while True:
                yield from emitted
                emitted.clear()
                if req.done:
                    return
                if should_stop():
                    req._finish("cancelled")
                    return
                self.step([req])
        finally:
            req.on_tokens = previous
