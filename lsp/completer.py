"""The engine side of the server: runs on the scheduler thread only.

`Engine` holds the LLM, the slot manager and the per-document sessions, and
does the work of a completion (prompt, prefix reuse, drafted decode, stop
rule, completion cache, prefetch) and of a rewrite (chunked prefill with
yield points, speculative decode, progress).

A completion whose prompt needs more evaluation than its prefill budget
allows at the measured speed (prefill_budget.py) is answered from the
lines nearest the cursor that fit, in a sequence of its own (the document's
keeps what was prefilled there); the caller then prefills the whole window.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from ..engine.decode import Request
from ..engine.drafters import AdaptiveLength, DocumentIndex
from ..engine.llm import LLM
from .prefill_budget import MIN_MEASURED_TOKENS, PrefillMeter, prefill_budget_seconds
from .prompt import CHARS_PER_TOKEN, Prompt, StopRule, build_prompt, frame_tokens, nearest_lines_start
from .scheduler import JobContext
from .sessions import Session, SlotManager, Suggestion
from .settings import Settings

log = logging.getLogger(__name__)

URGENT_CHUNK = 128     # prompt tokens per forward pass for a completion
PREFETCH_CHUNK = 64
REWRITE_CHUNK = 256
MEASURE_CHUNK = MIN_MEASURED_TOKENS        # prompt tokens timed for a first measure of the prefill speed
# Evaluated before them, too few for the meter: the first pass pays one-time costs (first touches of weights, buffers).
WARM_UP_CHUNK = MIN_MEASURED_TOKENS // 2


@dataclass
class Window:
    """Which window of the document a completion's prompt held, and why."""
    short: bool             # the lines nearest the cursor, not the whole prompt window
    line: int               # the window's first line (0-based)
    uncached_tokens: int    # tokens of the whole window's prompt that were not cached
    budget_tokens: int      # the uncached tokens the prefill budget allowed at the measured speed

    def as_dict(self) -> dict:
        return {"window": "short" if self.short else "full", "window_line": self.line,
                "uncached_tokens": self.uncached_tokens, "budget_tokens": self.budget_tokens}


def short_window_key(uri: str) -> Hashable:
    """The slot key of a document's short window (its own sequence)."""
    return ("short window", uri)


@dataclass
class CompletionResult:
    text: str
    multiline: bool
    source: str             # "model", "cache", "prefetch", "cancelled", "budget"
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated: int = 0
    seconds: float = 0.0
    finish_reason: str = ""
    window: Window | None = None    # None: served without the model


@dataclass
class EngineStats:
    completions: int = 0
    cache_hits: int = 0
    prefetch_hits: int = 0
    prefetches: int = 0
    cancelled: int = 0
    budget_hits: int = 0
    short_windows: int = 0
    model_calls: int = 0
    rewrites: int = 0
    drafted: int = 0
    accepted: int = 0
    drafters: dict = field(default_factory=dict)   # name -> {"drafted", "accepted"}

    def add_drafter(self, name: str, drafted: int, accepted: int) -> None:
        d = self.drafters.setdefault(name, {"drafted": 0, "accepted": 0})
        d["drafted"] += drafted
        d["accepted"] += accepted
        self.drafted += drafted
        self.accepted += accepted


def completion_request(llm: LLM, prompt: Prompt, max_tokens: int, *, seq: int = 0,
                       drafter=None, draft_max: int = 16) -> tuple[Request, StopRule]:
    rule = StopRule(llm.tokenizer, prompt.multiline, prompt.indent)
    req = llm.request(prompt.tokens, max_tokens=max_tokens, seq=seq, drafter=drafter)
    req.is_final = rule.feed
    if drafter is not None:
        req.draft_length = AdaptiveLength(initial=min(8, draft_max), min_len=1, max_len=draft_max)
    return req, rule


def cold_completion(llm: LLM, prompt: Prompt, max_tokens: int, seq: int = 0) -> str:
    """A fresh evaluation: empty cache, no drafter. The oracle for the tests."""
    llm.decoder.forget(seq)
    req, rule = completion_request(llm, prompt, max_tokens, seq=seq)
    llm.decoder.run([req])
    return rule.finish()


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        t0 = time.perf_counter()
        self.llm = LLM(settings.model, n_ctx=settings.ctx, n_seq=settings.n_seq, n_threads=settings.threads,
                       precision=settings.precision, kv_type=settings.kv_type)
        self.load_seconds = time.perf_counter() - t0
        self.slots = SlotManager(self.llm, settings.saved_sessions_mb << 20)
        self.sessions: dict[str, Session] = {}
        self.stats = EngineStats()
        self.meter = PrefillMeter()
        self.has_fim = all(getattr(self.llm.tokenizer, a) is not None
                           for a in ("fim_prefix_id", "fim_suffix_id", "fim_middle_id"))

    def session(self, uri: str) -> Session:
        s = self.sessions.get(uri)
        if s is None:
            s = self.sessions[uri] = Session(uri)
        return s

    def close(self, uri: str) -> None:
        self.sessions.pop(uri, None)
        self.slots.forget(uri)
        self.slots.forget(short_window_key(uri))

    # ---- completion ------------------------------------------------------------------
    def _prompt(self, text: str, offset: int, chunks: tuple[str, ...] = (), *, start: int | None = None,
                suffix_tokens: int | None = None) -> tuple[Prompt, list[int]]:
        """build_prompt with the settings (the window at `start` if given)."""
        st = self.settings
        return build_prompt(self.llm.tokenizer, text, offset, prompt_tokens=st.prompt_tokens,
                            suffix_tokens=st.suffix_tokens if suffix_tokens is None else suffix_tokens,
                            style=st.completion_style, chunks=chunks, start=start)

    def _from_cache(self, s: Session, prefix: str) -> CompletionResult | None:
        for sug, source in ((s.last, "cache"), (s.prefetched, "prefetch")):
            if sug is None or not prefix.startswith(sug.prefix):
                continue
            typed = prefix[len(sug.prefix):]
            if sug.text.startswith(typed) and len(typed) < len(sug.text):
                return CompletionResult(sug.text[len(typed):], sug.multiline, source)
        return None

    def complete(self, job: JobContext, uri: str, text: str, offset: int,
                 chunks: tuple[str, ...] = ()) -> CompletionResult:
        st = self.settings
        s = self.session(uri)
        t0 = time.perf_counter()
        prompt, below = self._prompt(text, offset, chunks)
        self.stats.completions += 1
        s.completions += 1
        if st.completion_cache:
            hit = self._from_cache(s, prompt.prefix)
            if hit is not None:
                self.stats.cache_hits += hit.source == "cache"
                self.stats.prefetch_hits += hit.source == "prefetch"
                s.cache_hits += 1
                hit.seconds = time.perf_counter() - t0
                return hit
        full_prefix = prompt.prefix     # the completion cache compares whole windows
        prompt, below, key, window = self._window(job, s, text, offset, prompt, below)
        s.window = window
        result = self._decode(job, s, prompt, below, URGENT_CHUNK, st.max_tokens, key=key)
        result.window = window
        result.seconds = time.perf_counter() - t0
        if result.source == "model" and st.completion_cache:
            s.last = Suggestion(full_prefix, result.text, prompt.multiline)
        return result

    def _window(self, job: JobContext, s: Session, text: str, offset: int, prompt: Prompt,
                below: list[int]) -> tuple[Prompt, list[int], Hashable, Window]:
        """The prompt to answer from, its slot key, and which window it holds:
        the whole window if what it has not cached fits the prefill budget at
        the measured speed (one chunk always fits), else the lines nearest the
        cursor that do. With no speed measured yet, the head of the whole
        window is evaluated first, its second pass timed."""
        slot = self.slots.acquire(s.uri)
        tokens = prompt.tokens
        seconds = prefill_budget_seconds(self.settings)
        uncached = len(tokens) - self.llm.decoder.cached_prefix(slot, tokens, len(tokens) - 1)
        if uncached > URGENT_CHUNK and self.meter.rate is None:
            head = len(tokens) - uncached
            t0 = time.perf_counter()
            for n in (WARM_UP_CHUNK, MEASURE_CHUNK):
                head += n
                self._prefill(job, slot, tokens[:head], n)
            seconds -= time.perf_counter() - t0
            uncached = len(tokens) - self.llm.decoder.cached_prefix(slot, tokens, len(tokens) - 1)
        budget = self.meter.tokens_within(seconds, URGENT_CHUNK)
        if uncached > budget:
            short, short_below, short_uncached = self._short_prompt(s, text, offset, below, budget)
            if short_uncached < uncached:
                s.short_start = short.window_start
                s.short_windows += 1
                self.stats.short_windows += 1
                return short, short_below, short_window_key(s.uri), Window(
                    True, text.count("\n", 0, short.window_start), uncached, budget)
        s.short_start = None
        self.slots.forget(short_window_key(s.uri))    # the whole window serves from now on
        return prompt, below, s.uri, Window(False, text.count("\n", 0, prompt.window_start), uncached, budget)

    def _short_prompt(self, s: Session, text: str, offset: int, below: list[int],
                      budget: int) -> tuple[Prompt, list[int], int]:
        """The prompt of the lines nearest the cursor that fit `budget` uncached
        tokens in the document's short-window slot, and how many it has not
        cached. The window the last one started at is kept while it fits
        (typing on goes on from its cache)."""
        tokenizer = self.llm.tokenizer
        slot = self.slots.acquire(short_window_key(s.uri))

        def at(start: int) -> tuple[Prompt, list[int], int]:
            p, b = self._prompt(text, offset, start=start)
            return p, b, len(p.tokens) - self.llm.decoder.cached_prefix(slot, p.tokens, len(p.tokens) - 1)

        kept = s.short_start
        if kept is not None and kept <= offset and (kept == 0 or text[kept - 1] == "\n"):
            short = at(kept)
            if short[2] <= budget:
                return short
        room = budget - frame_tokens(tokenizer, below)
        return at(nearest_lines_start(tokenizer, text, offset, room))

    def _decode(self, job: JobContext, s: Session, prompt: Prompt, below: list[int], chunk: int,
                max_tokens: int, key: Hashable | None = None) -> CompletionResult:
        """Decodes in the slot of `key` (by default the document's)."""
        st = self.settings
        if len(prompt.tokens) + max_tokens + 1 >= self.llm.ctx.n_ctx:
            raise OverflowError(f"the prompt ({len(prompt.tokens)} tokens) does not fit the context "
                                f"({self.llm.ctx.n_ctx}); lower promptTokens")
        slot = self.slots.acquire(s.uri if key is None else key)
        drafter: DocumentIndex | None = None
        if st.drafter == "doc":
            drafter = s.drafter
            drafter.set_source(below)
            before = (drafter.stats.drafted, drafter.stats.accepted)
        req, rule = completion_request(self.llm, prompt, max_tokens, seq=slot, drafter=drafter,
                                       draft_max=st.draft_max)
        self.stats.model_calls += 1
        self.llm.decoder.run([req], job.should_stop, prefill_chunk=chunk)
        if req.finish_reason != "cancelled":     # else its prompt may be evaluated in part only
            self.meter.add(req.stats.prompt_tokens - req.stats.reused_tokens, req.stats.prefill_seconds)
        if drafter is not None:
            self.stats.add_drafter("doc", drafter.stats.drafted - before[0], drafter.stats.accepted - before[1])
        text = rule.finish()
        source = "model"
        if req.finish_reason == "cancelled":
            if job.token.cancelled or not job.timed_out():
                source = "cancelled"
                self.stats.cancelled += 1
                s.cancelled += 1
            else:
                source = "budget"
                self.stats.budget_hits += 1
        s.reused_tokens += req.stats.reused_tokens
        s.evaluated_tokens += len(prompt.tokens) - req.stats.reused_tokens
        return CompletionResult(text, prompt.multiline, source, len(prompt.tokens),
                                req.stats.reused_tokens, req.stats.generated,
                                finish_reason=req.finish_reason)

    def prefetch(self, job: JobContext, uri: str, text: str, offset: int, suggestion: str,
                 chunks: tuple[str, ...] = ()) -> str | None:
        """The suggestion that would follow once `suggestion` is accepted."""
        st = self.settings
        if not suggestion or uri not in self.sessions:
            return None
        s = self.sessions[uri]
        new_text = text[:offset] + suggestion + text[offset:]
        prompt, below = self._prompt(new_text, offset + len(suggestion), chunks)
        self.stats.prefetches += 1
        result = self._decode(job, s, prompt, below, PREFETCH_CHUNK, st.max_tokens)
        if result.source != "model" or not result.text:
            return None
        s.prefetched = Suggestion(prompt.prefix, result.text, prompt.multiline)
        return result.text

    # ---- prefill ahead of a completion ------------------------------------------------------
    def prefill_tokens(self, text: str, offset: int, chunks: tuple[str, ...] = ()) -> list[int]:
        """The tokens a completion prompt at `offset` starts with: its whole
        prompt (these chunks of other files, the window up to the cursor)
        without FIM's suffix part. Typing at the cursor changes only its end."""
        st = self.settings
        prompt, _below = self._prompt(text, offset, chunks, suffix_tokens=0)
        tokens = prompt.tokens[:-2] if self.has_fim else prompt.tokens   # drop <fim_suffix><fim_middle>
        return tokens[:max(0, self.llm.ctx.n_ctx - st.max_tokens - 2)]   # what a completion has room for

    def first_window_end(self, text: str) -> int:
        """Where the document's first prompt window ends: the last line end within its budget."""
        end = min(len(text), self.settings.prompt_tokens * CHARS_PER_TOKEN)
        return text.rfind("\n", 0, end) + 1 or end

    def prefill_document(self, job: JobContext, uri: str, text: str, offset: int | None = None,
                         chunks: tuple[str, ...] = ()) -> int | None:
        """Evaluates the prompt of a completion at `offset` into the document's
        slot, without logits, so the next completion there is served from the
        cache. A cursor within the first window (or none: a document just
        opened) gets the whole first window, which every completion in that
        window starts with. The number of tokens the slot then holds, or None
        when it gave way to more urgent work first (what it evaluated stays cached)."""
        end = max(self.first_window_end(text), offset or 0)
        tokens = self.prefill_tokens(text, end, chunks)
        slot = self.slots.acquire(uri)
        if not self._prefill(job, slot, tokens, PREFETCH_CHUNK):
            return None
        self.session(uri).prefilled_tokens = len(tokens)
        return len(tokens)

    def _prefill(self, job: JobContext, slot: int, tokens: list[int], chunk: int) -> bool:
        """Decoder.prefill, timed into the prefill meter."""
        decoder = self.llm.decoder
        held = decoder.cached_prefix(slot, tokens)
        t0 = time.perf_counter()
        finished = decoder.prefill(slot, tokens, chunk=chunk, should_stop=job.should_stop)
        self.meter.add(decoder.cached_prefix(slot, tokens) - held, time.perf_counter() - t0)
        return finished

    # ---- status ----------------------------------------------------------------------------
    def describe(self) -> dict:
        llm = self.llm
        hp = llm.file.hparams
        return {
            "model": {"path": str(llm.path), "name": llm.name, "n_ctx": llm.ctx.n_ctx,
                      "n_seq": llm.ctx.n_seq, "threads": llm.ctx.n_threads, "fim": self.has_fim,
                      "arch": getattr(hp, "arch", None), "load_seconds": round(self.load_seconds, 3)},
            "memory": {"saved_sessions_bytes": self.slots.saved_bytes,
                       "saved_sessions_budget": self.slots.budget},
            "sessions": [{"uri": s.uri, "slot": self.slots.slot_of(s.uri),
                          "saved": s.uri in self.slots.saved, "completions": s.completions,
                          "cache_hits": s.cache_hits, "cancelled": s.cancelled,
                          "reused_tokens": s.reused_tokens, "evaluated_tokens": s.evaluated_tokens,
                          "prefilled_tokens": s.prefilled_tokens, "short_windows": s.short_windows,
                          "window": s.window.as_dict() if s.window is not None else None,
                          "drafter": s.drafter.stats.as_dict()}
                         for s in self.sessions.values()],
            "slots": self.slots.describe(),
            "prefill": {"tokens_per_second": round(self.meter.rate or 0.0, 1),
                        "budget_ms": round(prefill_budget_seconds(self.settings) * 1000)},
            "stats": {k: v for k, v in self.stats.__dict__.items()},
        }
