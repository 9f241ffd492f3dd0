"""Fuzz the GGUF loader: a mutated file loads or raises GGUFError, nothing else.

Mutations (tests/gguf_factory.py: byte flips, header integer overwrites,
truncation, splices, insertions, deletions) are applied to valid tiny
models. Each example runs under a SIGALRM deadline (a hang fails the test)
and the whole module under an RLIMIT_AS cap (an allocation driven by a
mutated header fails with MemoryError). bench/fuzz_gguf.py runs the same
mutations for 10,000+ cases.
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditto.engine.gguf_model import GGUFError, load_model_file
from gguf_factory import check_loaded, mutate, write_fuzz_seeds

CASE_TIMEOUT_S = 10
EXTRA_ADDRESS_SPACE = 2 << 30  # on top of what the process already maps


@functools.cache
def _seeds():
    return tuple(write_fuzz_seeds(tempfile.mkdtemp(prefix="ditto_fuzz_seeds_")))


class CaseTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CaseTimeout(f"load_model_file took more than {CASE_TIMEOUT_S} s")


@pytest.fixture(scope="module", autouse=True)
def guards():
    """RLIMIT_AS a little above current use, and a SIGALRM handler."""
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    soft = _address_space() + EXTRA_ADDRESS_SPACE
    if old_limit[1] != resource.RLIM_INFINITY:
        soft = min(soft, old_limit[1])
    resource.setrlimit(resource.RLIMIT_AS, (soft, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old_limit)
        signal.signal(signal.SIGALRM, old_handler)


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def _load_or_refuse(data: bytes, tmpdir: str) -> None:
    # a fresh file each time: never rewrite a file a live mapping may use
    fd, path = tempfile.mkstemp(suffix=".gguf", dir=tmpdir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        mf = load_model_file(path)
        check_loaded(mf)
    except GGUFError as e:
        assert str(e)  # a message naming the problem
    finally:
        signal.alarm(0)
        os.unlink(path)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz"))


@settings(
    max_examples=200,
    deadline=None,  # SIGALRM is the hang guard; timings on shared CI are noisy
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(seed_index=st.integers(0, 3), rng=st.randoms(use_true_random=False))
def test_mutated_files_load_or_raise_gguferror(fuzz_dir, seed_index, rng):
    seed = _seeds()[seed_index % len(_seeds())]
    _load_or_refuse(mutate(seed, rng), fuzz_dir)


def test_seeds_load():
    for seed in _seeds():
        fd, path = tempfile.mkstemp(suffix=".gguf")
        with os.fdopen(fd, "wb") as f:
            f.write(seed.data)
        try:
            check_loaded(load_model_file(path))
        finally:
            os.unlink(path)


def test_every_header_truncation(fuzz_dir):
    """Cut the smallest seed at (nearly) every byte of its header and at
    several points in the tensor data: always a GGUFError."""
    seed = min(_seeds(), key=lambda s: len(s.data))
    cuts = list(range(0, seed.header_end, 3)) + list(range(seed.header_end, len(seed.data) - 64, 4099))
    for cut in cuts:
        with pytest.raises(GGUFError):
            _load_or_refuse_strict(seed.data[:cut], fuzz_dir)


def _load_or_refuse_strict(data: bytes, tmpdir: str) -> None:
    fd, path = tempfile.mkstemp(suffix=".gguf", dir=tmpdir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        load_model_file(path)
    finally:
        os.unlink(path)
