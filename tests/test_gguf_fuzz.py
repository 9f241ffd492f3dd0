"""Fuzz ditto with hostile GGUF files, end to end.

Every mutant (byte mutants of valid tiny models, and well-formed files with
wrong values: tests/gguf_factory.py) goes through every stage it can, from
the header walk to decoding and saving state (tests/fuzz_pipeline.py), in a
child process, so a crash or a hang is reported with its seed instead of
killing pytest. A stage may refuse a file only with its own clear error.
bench/fuzz_gguf.py runs the same cases, many more of them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
import pytest

from ditto.engine.gguf_model import GGUFError, load_model_file
from ditto.engine.sampling import Sampler, SamplingParams
from fuzz_pipeline import STAGES, run_cases
from gguf_factory import check_loaded, write_fuzz_seeds, write_tiny_gguf

CASES = 300


def test_every_mutant_goes_as_far_as_it_can_and_fails_only_clearly():
    summary = run_cases(0, CASES)
    report = json.dumps(summary.as_json(), indent=1)
    assert not summary.failures, report
    # The cases are a function of their seeds: these counts only change with
    # the mutators. Every stage must see a good share of them.
    for stage in STAGES:
        assert summary.reached[stage] >= CASES // 4, report
    print(report)


def test_a_crashing_or_hanging_case_is_reported_with_its_seed(tmp_path):
    """The harness itself: a case that kills its process, and one that
    never answers, become failures of their seeds; the other cases run."""
    script = tmp_path / "cases.py"
    script.write_text(
        "import json, os, sys, time\n"
        "first, count = int(sys.argv[1]), int(sys.argv[2])\n"
        "for seed in range(first, first + count):\n"
        "    if seed == 2: os.abort()\n"
        "    if seed == 4: time.sleep(3600)\n"
        "    print(json.dumps({'seed': seed, 'kind': 'k', 'stage': 'saved'}), flush=True)\n")
    summary = run_cases(0, 6, case_timeout_s=5, script=str(script))
    assert summary.cases == 6 and summary.reached["saved"] == 4
    assert [(f["seed"], f["detail"].split(":")[0]) for f in summary.failures] == [(2, "crash"), (4, "hang")]


@pytest.mark.parametrize("logits", [
    [np.nan] * 5, [1.0, np.nan, 2.0, np.nan, 0.0], [np.inf, 1.0, np.inf, -np.inf, np.nan],
    [-np.inf] * 5, [np.nan, -np.inf, -np.inf, 3.0, np.inf],
], ids=["all NaN", "some NaN", "+inf", "all -inf", "mixed"])
def test_sampling_from_a_broken_models_logits_picks_a_token(logits):
    """NaN or inf weights give NaN or inf logits (found by the fuzzer: numpy
    raised "Probabilities contain NaN"). NaN never wins, +inf always does."""
    logits = np.array(logits, dtype=np.float32)
    sampler = Sampler(SamplingParams(temperature=0.8, top_k=3, top_p=0.9, seed=1))
    picks = {sampler.sample(logits) for _ in range(50)}
    assert picks <= set(range(5))
    if np.isposinf(logits).any():
        assert picks <= set(np.flatnonzero(np.isposinf(logits)))
    elif np.isfinite(logits).any():
        assert picks <= set(np.flatnonzero(np.isfinite(logits)))
    accepted, token = sampler.verify_draft(logits, 0)
    assert 0 <= token < 5


def test_rms_epsilon_of_1e_12_in_float32_loads(tmp_path):
    """GGUF stores the epsilon as float32, where 1e-12 is 9.99999996e-13:
    the lower bound must accept it (found by the fuzzer)."""
    mf = load_model_file(write_tiny_gguf(tmp_path / "m.gguf", rms_eps=1e-12))
    assert mf.hparams.rms_eps == pytest.approx(1e-12, rel=1e-6)


def test_seeds_load():
    with tempfile.TemporaryDirectory() as d:
        for seed in write_fuzz_seeds(d):
            check_loaded(load_model_file(os.path.join(d, seed.name + ".gguf")))


def test_every_header_truncation(tmp_path):
    """Cut the smallest seed at (nearly) every byte of its header and at
    several points in the tensor data: always a GGUFError."""
    seed = min(write_fuzz_seeds(tmp_path), key=lambda s: len(s.data))
    cuts = list(range(0, seed.header_end, 3)) + list(range(seed.header_end, len(seed.data) - 64, 4099))
    for cut in cuts:
        path = tmp_path / f"cut{cut}.gguf"  # a fresh file: never rewrite one a mapping may hold
        path.write_bytes(seed.data[:cut])
        with pytest.raises(GGUFError):
            load_model_file(path)
        path.unlink()


if __name__ == "__main__":  # the summary alone
    print(json.dumps(run_cases(0, int(sys.argv[1]) if len(sys.argv) > 1 else CASES).as_json(), indent=1))
