"""The decode loop: prompt-cache reuse, prefill, and speculative verification.

The one decode API every caller uses: `Decoder.run` runs a set of requests
(with should-stop, prefill-chunk and between-passes hooks; requests returned
by the between hook join the run), `Decoder.prefill` evaluates tokens into
a sequence without computing any logits, `forget` / `adopt` /
`cached_tokens` manage the tokens a sequence's cache holds, and
`cached_prefix` says how much of a prompt it would reuse.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .drafters.base import Drafter
from .drafters.length import AdaptiveLength
from .sampling import Sampler, SamplingParams


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


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
        self._pending: int | None = None   # emitted, not yet in the KV cache (None while prefilling)
        self._history = list(self.prompt)
        self._prefill_from = 0             # next prompt token to evaluate (set when a run admits it)
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
    """The one decode driver: runs requests on a native Context, sharing
    forward passes between them, and keeps each sequence's cached tokens."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._cached: dict[int, list[int]] = {}   # tokens each sequence's KV cache holds

    # ---- a sequence's cached tokens ------------------------------------------------
    def cached_tokens(self, seq: int) -> list[int]:
        """The tokens sequence `seq` holds, in order (a copy)."""
        return self._cached.get(seq, [])[: self.ctx.seq_len(seq)]

    def forget(self, seq: int) -> None:
        """Empties sequence `seq`: the next request evaluates its whole prompt."""
        self.ctx.truncate(seq, 0)
        self._cached[seq] = []

    def adopt(self, seq: int, tokens: Sequence[int]) -> None:
        """Sequence `seq` now holds `tokens` (its state was loaded from a save of them)."""
        if len(tokens) != self.ctx.seq_len(seq):
            raise ValueError(f"sequence {seq} holds {self.ctx.seq_len(seq)} positions, "
                             f"not the {len(tokens)} tokens given")
        self._cached[seq] = list(tokens)

    def cached_prefix(self, seq: int, tokens: Sequence[int], limit: int | None = None) -> int:
        """How many leading `tokens` (at most `limit`) sequence `seq` holds in a
        form a prefill or a run would reuse: what they would not evaluate again."""
        held = self.cached_tokens(seq)
        n, limit = 0, min(len(held), len(tokens) if limit is None else limit)
        while n < limit and held[n] == tokens[n]:
            n += 1
        if not self.ctx.can_truncate(seq, n):
            n = 0  # a ring cache no longer holds the window before n: start over
        return n

    def _reuse_prefix(self, seq: int, tokens: Sequence[int], limit: int) -> int:
        """Keeps the longest cached prefix of `tokens` (at most `limit` tokens)
        in sequence `seq`, drops the rest, and returns its length."""
        n = self.cached_prefix(seq, tokens, limit)
        self.ctx.truncate(seq, n)
        self._cached[seq] = list(tokens[:n])
        return n

    def _check_capacity(self, n_tokens: int) -> None:
        if n_tokens >= self.ctx.n_ctx:
            raise OverflowError(f"prompt of {n_tokens} tokens does not fit the context of {self.ctx.n_ctx}")

    # ---- prefill without logits ----------------------------------------------------------
    def prefill(self, seq: int, tokens: Sequence[int], *, chunk: int | None = None,
                should_stop: Callable[[], bool] = _never, between: Callable[[], object] = _nothing) -> bool:
        """Evaluates `tokens` into sequence `seq` (reusing its cached prefix),
        `chunk` tokens per forward pass, without computing any logits: a
        later request whose prompt starts with them evaluates only the rest.
        should_stop is checked before each pass and between() runs after it.
        False if stopped first (what was evaluated stays cached)."""
        self._check_capacity(len(tokens))
        done = self._reuse_prefix(seq, tokens, len(tokens))
        step = chunk or self.ctx.max_batch
        while done < len(tokens):
            if should_stop():
                return False
            part = list(tokens[done:done + step])
            self._forward([(seq, part, 0)])
            done += len(part)
            between()
        return True

    # ---- running requests -------------------------------------------------------------
    def run(self, requests: Iterable[Request], should_stop: Callable[[], bool] = _never, *,
            prefill_chunk: int | None = None,
            between: Callable[[], Iterable[Request] | None] = _nothing) -> None:
        """Runs the requests to completion, all sharing forward passes: each
        pass carries the next prompt chunk of every request still prefilling
        (`prefill_chunk` tokens in all, by default the context's max batch)
        and the pending token plus a draft of every decoding one.

        should_stop is checked before each pass; once true, every unfinished
        request ends "cancelled". between() runs after each pass, and once
        more when nothing is left to run; the requests it returns join the
        run (continuous batching: a caller refills freed sequences there)."""
        for _ in self._passes(requests, should_stop, prefill_chunk, between):
            pass

    def stream(self, req: Request, should_stop: Callable[[], bool] = _never) -> Iterator[int]:
        """Runs one request, yielding its tokens as they are decided."""
        emitted: list[int] = []
        previous = req.on_tokens

        def collect(tokens: list[int]) -> None:
            emitted.extend(tokens)
            if previous:
                previous(tokens)

        req.on_tokens = collect
        try:
            for _ in self._passes([req], should_stop, None, _nothing):
                yield from emitted
                emitted.clear()
            yield from emitted
        finally:
            req.on_tokens = previous

    def _passes(self, requests: Iterable[Request], should_stop: Callable[[], bool],
                prefill_chunk: int | None, between: Callable[[], Iterable[Request] | None]) -> Iterator[None]:
        """The driver behind run and stream: yields after every forward pass."""
        active = self._admit(requests)
        budget = prefill_chunk or self.ctx.max_batch
        while True:
            live = [r for r in active if not r.done]
            if live:
                if should_stop():
                    for r in live:
                        r._finish("cancelled")
                    return
                self._pass(live, budget)
                yield
            added = self._admit(between() or ())
            if not live and not added:
                return
            active = live + added

    def _admit(self, requests: Iterable[Request]) -> list[Request]:
        """Checks each new request's prompt and reuses its sequence's cached prefix."""
        admitted = list(requests)
        for req in admitted:
            if req.done:
                continue
            self._check_capacity(len(req.prompt))
            # The last prompt token is always evaluated: its logits pick the first token.
            req._prefill_from = self._reuse_prefix(req.seq, req.prompt, len(req.prompt) - 1)
            req.stats.prompt_tokens = len(req.prompt)
            req.stats.reused_tokens = req._prefill_from
        return admitted

    # ---- one forward pass ------------------------------------------------------------------
    def _forward(self, slices: list[tuple[int, list[int], int]]) -> list[np.ndarray]:
        """Evaluates (seq, tokens, n_logits) slices in one batch and returns,
        per slice, the logits of its last n_logits tokens. A batch that wants
        no logits computes no output-head row at all."""
        tokens: list[int] = []
        positions: list[int] = []
        seqs: list[int] = []
        want: list[bool] = []
        for seq, toks, n_logits in slices:
            start = self.ctx.seq_len(seq)
            tokens += toks
            positions += range(start, start + len(toks))
            seqs += [seq] * len(toks)
            want += [False] * (len(toks) - n_logits) + [True] * n_logits
        logits = self.ctx.decode(tokens, positions, seqs, want)
        out, row = [], 0
        for seq, toks, n_logits in slices:
            out.append(logits[row:row + n_logits])
            row += n_logits
            self._cached.setdefault(seq, []).extend(toks)
        return out

    def _pass(self, live: list[Request], prefill_budget: int) -> None:
        """One forward pass: the next prompt chunk of each prefilling request
        (`prefill_budget` tokens in all) and the pending token plus a draft of
        each decoding one; then the drafts are verified."""
        t0 = time.perf_counter()
        prefills: list[tuple[Request, list[int]]] = []
        decodes: list[tuple[Request, list[int], list[int]]] = []    # (req, fed, draft)
        room = prefill_budget
        for req in live:
            if req._pending is None:
                part = req.prompt[req._prefill_from:req._prefill_from + room]
                if part:
                    room -= len(part)
                    req._prefill_from += len(part)
                    prefills.append((req, part))
                continue
            space = self.ctx.n_ctx - self.ctx.seq_len(req.seq) - 1
            if space < 0:
                req._finish("context")
                continue
            budget = min(space, req.max_tokens - len(req.output) - 1)
            draft: list[int] = []
            if req.drafter is not None and budget > 0:
                draft = req.drafter.draft(req.history, min(budget, req.draft_length.current))[:budget]
            decodes.append((req, [req._pending] + draft, draft))
        if not prefills and not decodes:
            return
        # A ring cache may be unable to drop the rejected part: checkpoint.
        ring = getattr(self.ctx, "kv_ring", False)
        checkpoints = [self.ctx.checkpoint(req.seq, len(fed)) if ring else None for req, fed, _ in decodes]
        slices = [(req.seq, part, int(req._prefill_from == len(req.prompt))) for req, part in prefills]
        slices += [(req.seq, fed, len(fed)) for req, fed, _ in decodes]
        results = self._forward(slices)
        started = []
        for (req, _part), logits in zip(prefills, results):
            req.stats.forward_passes += 1
            if len(logits):
                req._pending = req.sampler.sample(logits[-1])
                started.append(req)
        replay, emits = [], []
        for (req, fed, draft), logits, ck in zip(decodes, results[len(prefills):], checkpoints):
            req.stats.forward_passes += 1
            emitted = self._verify(req, draft, logits)
            # Keep the pending token and the accepted drafts; drop the rest.
            start = self.ctx.seq_len(req.seq) - len(fed)
            keep = start + len(emitted)
            if ck is None or self.ctx.can_truncate(req.seq, keep):
                self.ctx.truncate(req.seq, keep)
                del self._cached[req.seq][keep:]
            else:
                self.ctx.restore(req.seq, ck)
                del self._cached[req.seq][start:]
                replay.append((req.seq, fed[:len(emitted)], 0))
                req.stats.forward_passes += 1
            emits.append((req, emitted))
        if replay:
            # Same tokens at the same positions: bit-identical keys and values.
            self._forward(replay)
        elapsed = time.perf_counter() - t0
        for req, _part in prefills:
            req.stats.prefill_seconds += elapsed
        for req in started:
            req._emit([req._pending])
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
