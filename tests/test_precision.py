"""precision="fast" (int8 activations): still batch-invariant, so speculation
stays lossless, and close to the exact path."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from ditto._native import Context, Model
from ditto.engine.decode import Decoder, Request
from ditto.engine.drafters import make_drafter
from ditto.engine.gguf_model import load_model_file

TYPES = [Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q6_K]


@pytest.mark.parametrize("wtype", TYPES, ids=[t.name for t in TYPES])
def test_fast_is_batch_invariant_and_close_to_exact(tiny_model_path, wtype):
    model = Model(load_model_file(tiny_model_path("llama", wtype)))
    toks = list(range(2, 30))
    alone = Context(model, n_seq=2, n_ctx=64, max_batch=64, n_threads=2, precision="fast")
    solo = alone.decode(toks, range(len(toks)), [0] * len(toks), [1] * len(toks))
    mixed = Context(model, n_seq=2, n_ctx=64, max_batch=64, n_threads=2, precision="fast")
    mixed.decode([7, 8, 9], [0, 1, 2], [1, 1, 1])
    rows = []
    for t, tok in enumerate(toks):   # one at a time, interleaved with another sequence
        rows.append(mixed.decode([tok, 5], [t, 3 + t], [0, 1], [1, 0])[0])
    assert np.array_equal(np.stack(rows), solo)
    exact = Context(model, n_seq=1, n_ctx=64, max_batch=64, n_threads=2, precision="exact")
    ref = exact.decode(toks, range(len(toks)), [0] * len(toks), [1] * len(toks))
    scale = np.abs(ref).max()
    assert np.abs(solo - ref).max() <= 0.05 * scale


def test_fast_speculation_is_lossless(tiny_model_path):
    model = Model(load_model_file(tiny_model_path("llama", Q.Q4_1)))
    source = list(range(40, 80))
    outs = []
    for drafter in (None, make_drafter("auto", source_tokens=source)):
        ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2, precision="fast")
        req = Request(prompt=source + source[:4], max_tokens=40, drafter=drafter)
        Decoder(ctx).run([req])
        outs.append(req.output)
    assert outs[0] == outs[1]


def test_unknown_precision_is_refused(tiny_model_path):
    model = Model(load_model_file(tiny_model_path("llama", Q.Q4_1)))
    with pytest.raises(ValueError, match="precision"):
        Context(model, precision="turbo")
