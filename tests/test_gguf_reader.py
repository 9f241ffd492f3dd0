"""ditto's GGUF reader against the reference, gguf.GGUFReader.

Whatever ditto's reader accepts, gguf's reader must read to the same keys,
values, types and tensor bytes: on the real model, on tiny models of every
architecture and tensor type, and on mutated files. (ditto's reader refuses
more than gguf's: absurd lengths and data past the end of the file, which
gguf's reader loops on or returns short; tests/test_gguf_fuzz.py covers
those refusals.)
"""
from __future__ import annotations

import random
import tempfile

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from ditto.engine.gguf_model import SUPPORTED_ARCHS, SUPPORTED_TYPES
from ditto.engine.gguf_reader import GGUFError, read_gguf
from gguf_factory import mutate, write_fuzz_seeds

MUTANTS = 400


def _reference_value(field):
    """GGUFReader's value of a field in the form ditto's reader keeps it."""
    kind = field.types[0]
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[-1])
    if kind != GGUFValueType.ARRAY:
        return field.parts[-1][0].item()
    if len(field.types) > 2:
        return None  # nested: walked, not kept
    if field.types[1] == GGUFValueType.STRING:
        return [bytes(field.parts[i]) for i in field.data]
    return [v.item() for i in field.data for v in field.parts[i]]


def _ours_value(field):
    if field.type == GGUFValueType.ARRAY and field.element != GGUFValueType.STRING and not field.nested:
        return field.value.tolist()
    return field.value


def assert_same_as_reference(path) -> None:
    ours = read_gguf(path)
    ref = GGUFReader(path)
    ref_fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert list(ours.fields) == list(ref_fields)
    for key, f in ref_fields.items():
        mine = ours.fields[key]
        assert mine.type == f.types[0], key
        if f.types[0] == GGUFValueType.ARRAY and len(f.types) > 1:
            assert mine.element == f.types[1], key
        assert _ours_value(mine) == _reference_value(f), key
    assert list(ours.tensors) == [t.name for t in ref.tensors]
    for t in ref.tensors:
        mine = ours.tensors[t.name]
        assert mine.shape == tuple(int(d) for d in t.shape), t.name
        assert mine.type == int(t.tensor_type), t.name
        assert mine.offset == t.data_offset and mine.nbytes == t.n_bytes, t.name
        assert np.array_equal(ours.tensor_bytes(mine), np.asarray(t.data).view(np.uint8).reshape(-1)), t.name


def test_reader_matches_gguf_on_the_real_model(default_model_path):
    assert_same_as_reference(default_model_path)


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
@pytest.mark.parametrize("weight_type", sorted(SUPPORTED_TYPES), ids=lambda t: t.name)
def test_reader_matches_gguf_on_tiny_models(tiny_model_path, arch, weight_type):
    assert_same_as_reference(tiny_model_path(arch, weight_type))


def test_reader_matches_gguf_on_every_mutant_it_accepts(tmp_path):
    seeds = write_fuzz_seeds(tempfile.mkdtemp(prefix="ditto_reader_seeds_"))
    rng = random.Random(20261201)
    accepted = 0
    for i in range(MUTANTS):
        path = tmp_path / f"mutant_{i}.gguf"
        path.write_bytes(mutate(seeds[i % len(seeds)], rng))
        try:
            read_gguf(path)
        except GGUFError:
            continue
        accepted += 1
        assert_same_as_reference(path)
    assert accepted >= 20, f"only {accepted} mutants are readable: too few to compare"
