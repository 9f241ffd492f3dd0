"""LLM: one loaded model with its tokenizer, chat template and a context.

The object the CLI, the rewrite commands and the language server hold: it
loads and validates the GGUF once, maps the weights into the native layer
and owns a Context with `n_seq` sequences that a Decoder drives.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from .decode import Decoder, Request
from .drafters.base import Drafter
from .gguf_model import load_model_file
from .malloc_policy import keep_big_blocks_out_of_heap
from .model_store import resolve_model
from .options import DEFAULT_CTX, DEFAULT_KV_TYPE, DEFAULT_PRECISION, resolve_kv_type
from .sampling import SamplingParams
from .tokenizer import Tokenizer


class LLM:
    def __init__(self, model_path: str | os.PathLike | None = None, *, n_ctx: int = DEFAULT_CTX,
                 n_seq: int = 1, n_threads: int | None = None, max_batch: int = 512,
                 precision: str = DEFAULT_PRECISION, kv_type: str = DEFAULT_KV_TYPE,
                 kv_ring: bool | int | None = None) -> None:
        """kv_type: one of options.KV_TYPES ("auto" by precision). kv_ring: as
        Context's; None (the default) puts a sliding-window model's sliding
        layers on the ring, so a long document costs them the window only."""
        from .. import _native  # the compiled extension, installed beside this package

        keep_big_blocks_out_of_heap()  # before the vocabulary's big transient blocks
        self.path = Path(resolve_model(model_path))
        self.file = load_model_file(self.path)
        self.tokenizer = Tokenizer(self.file.tokenizer)
        self.model = _native.Model(self.file)
        n_ctx = min(n_ctx, self.file.hparams.n_ctx_train) if self.file.hparams.n_ctx_train else n_ctx
        if kv_ring is None:
            kv_ring = self.file.hparams.sliding_window > 0
        self.ctx = _native.Context(self.model, n_seq=n_seq, n_ctx=n_ctx, max_batch=max_batch,
                                   n_threads=n_threads, precision=precision,
                                   kv_type=resolve_kv_type(kv_type, precision), kv_ring=kv_ring)
        self.decoder = Decoder(self.ctx)

    @functools.cached_property
    def chat(self):
        """The chat template (a ChatTemplate), compiled on first use: it needs
        jinja2, which completion and next-edit never load (~6 MB resident).
        A template that does not parse raises ChatTemplateError here."""
        from .chat import ChatTemplate
        return ChatTemplate.for_model(self.tokenizer, self.file.tokenizer)

    @property
    def name(self) -> str:
        return self.path.name

    def encode_prompt(self, text: str) -> list[int]:
        """Raw text as a prompt: BOS only where the GGUF asks for one."""
        return self.tokenizer.bos_prefix() + self.tokenizer.encode(text)

    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return self.chat.encode(messages, add_generation_prompt=True)

    def request(self, prompt: list[int], *, max_tokens: int, seq: int = 0,
                sampling: SamplingParams = SamplingParams(), drafter: Drafter | None = None,
                on_tokens: Callable[[list[int]], None] | None = None) -> Request:
        return Request(prompt=prompt, max_tokens=max_tokens, seq=seq, sampling=sampling,
                       drafter=drafter, is_stop=self.tokenizer.is_eog, on_tokens=on_tokens)

    def stream(self, req: Request, should_stop: Callable[[], bool] = lambda: False) -> Iterator[int]:
        return self.decoder.stream(req, should_stop)

    def generate(self, prompt: list[int], *, max_tokens: int, **kwargs) -> Request:
        req = self.request(prompt, max_tokens=max_tokens, **kwargs)
        self.decoder.run([req])
        return req
