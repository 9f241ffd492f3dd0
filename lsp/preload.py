"""The model load that `ditto serve` starts before anything else.

Loading the model needs no LSP library, so `ditto serve` starts it on its
own thread with the command line's model options before it imports pygls
and lsprotocol, and before the editor has said a word: the load overlaps
the imports, the initialize handshake and any disk reads. The first load
the server asks for (on `initialized`) takes it when the settings then in
force name the same model options, and loads again otherwise (an editor's
initializationOptions may choose another model or context).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from .settings import Settings


def model_options(settings: Settings) -> tuple:
    """The settings a loaded model depends on (changing one means loading again)."""
    return tuple(getattr(settings, key) for key in Settings.MODEL_KEYS)


def load_llm(settings: Settings):
    """(LLM, seconds it took) for the model options of `settings`."""
    from ..engine.llm import LLM

    t0 = time.perf_counter()
    llm = LLM(settings.model, n_ctx=settings.ctx, n_seq=settings.n_seq, n_threads=settings.threads,
              precision=settings.precision)
    return llm, time.perf_counter() - t0


class ModelPreload:
    """A model load running on its own thread, taken at most once."""

    def __init__(self, settings: Settings) -> None:
        self.options = model_options(settings)
        self._future: Future | None = Future()
        threading.Thread(target=self._load, args=(settings, self._future), name="ditto-preload",
                         daemon=True).start()

    @staticmethod
    def _load(settings: Settings, future: Future) -> None:
        try:
            future.set_result(load_llm(settings))
        except BaseException as e:      # handed to whoever takes the load
            future.set_exception(e)

    def take(self, settings: Settings):
        """The preloaded (LLM, seconds) if `settings` ask for the same model
        options (waiting for the load to end; its error if it failed), else
        None. Only the first call can get it: the model then belongs to the
        caller, and a later reload must not share it."""
        future, self._future = self._future, None
        if future is None or model_options(settings) != self.options:
            return None
        return future.result()
