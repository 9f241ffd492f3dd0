"""Fixed memory overhead: what the engine imports and what a vocabulary costs.

Counts that do not depend on the machine's speed or libraries: modules in
sys.modules, bytes Python allocates (tracemalloc) per vocabulary token.
"""
from __future__ import annotations

import gc
import json
import platform
import subprocess
import sys
import tracemalloc

import gguf
import pytest

from ditto.engine import ggml_types
from ditto.engine.gguf_model import load_model_file
from ditto.engine.malloc_policy import keep_big_blocks_out_of_heap
from ditto.engine.packed import InvalidItem, PackedBytes, PackedStrings
from ditto.engine.spm import SpmEncoder
from ditto.engine.tokenizer import Tokenizer

# Not needed to load a model and decode: jinja2 only renders chat templates
# (LLM.chat loads it on first use), gguf (and the PyYAML it pulls in) is for
# tests and tools (engine/ggml_types.py), the rest belong to other layers.
ENGINE_MUST_NOT_IMPORT = ("jinja2", "ditto.engine.chat", "gguf", "yaml", "ditto.lsp", "pygls", "ray", "rich")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def _imported(modules: set[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def test_engine_import_leaves_out_what_decoding_does_not_need():
    mods = _modules_after("import ditto.engine.llm")
    assert [m for m in ENGINE_MUST_NOT_IMPORT if _imported(mods, m)] == []


def test_llm_loads_jinja2_only_for_chat(tiny_model_path):
    path = tiny_model_path("llama")
    before = _modules_after(f"from ditto.engine.llm import LLM\nllm = LLM({path!r}, n_ctx=64)\n"
                            "llm.generate(llm.encode_prompt('def f'), max_tokens=2)")
    assert not _imported(before, "jinja2")
    after = _modules_after(f"from ditto.engine.llm import LLM\nllm = LLM({path!r}, n_ctx=64)\n"
                           "llm.encode_chat([{'role': 'user', 'content': 'hi'}])")
    assert _imported(after, "jinja2")


def test_vocabulary_is_held_packed(tiny_model_path):
    """A 20k-token vocabulary, loaded and turned into a Tokenizer, keeps well
    under 48 bytes of Python objects per token (one object per token, as
    before the packing, cost ~100)."""
    n_vocab = 20000
    path = tiny_model_path("llama", n_vocab=n_vocab)
    gc.collect()
    tracemalloc.start()
    try:
        tok = Tokenizer(load_model_file(path).tokenizer)
        gc.collect()
        kept, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tok.n_vocab == n_vocab
    assert kept / n_vocab < 48, f"{kept / n_vocab:.1f} bytes per token"


def test_ggml_types_match_the_gguf_package():
    """ditto's copy of the format's numbers (so that loading does not import
    `gguf`) is the `gguf` package's, entry for entry."""
    for ours, theirs in ((ggml_types.GGUFValueType, gguf.GGUFValueType),
                         (ggml_types.GGMLQuantizationType, gguf.GGMLQuantizationType)):
        assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]
    assert {int(k): v for k, v in ggml_types.GGML_QUANT_SIZES.items()} == \
        {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()}


@pytest.mark.parametrize("items", [[], [b""], [b"a", b"", b"bc", b"\xff\x00"], [b"x" * 300] * 3])
def test_packed_bytes_is_a_sequence_of_its_items(items):
    p = PackedBytes(items)
    assert len(p) == len(items) and list(p) == items and p == items and p[:] == items
    assert [p[i] for i in range(-len(items), len(items))] == items + items
    assert p.join(range(len(items))) == b"".join(items)
    assert p.join(i for i in reversed(range(len(items)))) == b"".join(reversed(items))
    with pytest.raises(IndexError):
        p[len(items)]
    with pytest.raises(IndexError):
        p.join([len(items)])
    assert PackedBytes.from_buffer(p._blob, p._off) == items


def test_packed_strings_round_trip_unicode():
    items = ["", "Ġthe", "\u2581x", "<|im_end|>", "日本語", "\U0001f600"]
    p = PackedStrings(items)
    assert list(p) == items and p[4] == "日本語" and p == items and p != items[:-1]
    assert PackedStrings.from_utf8(PackedBytes([s.encode() for s in items])) == items
    assert p.index("<|im_end|>") == 3 and "Ġthe" in p


@pytest.mark.parametrize("items, bad", [([b"ok", b"\xff"], 1), ([b"\xe6\x97", b"\xa5"], 0),
                                        ([b"a", b"", b"\x80b"], 2)])
def test_packed_strings_name_the_first_item_that_is_not_utf8(items, bad):
    """Checked on the whole buffer at once, which must not accept a character
    split across two items (each half is invalid on its own)."""
    with pytest.raises(InvalidItem) as err:
        PackedStrings.from_utf8(PackedBytes(items))
    assert err.value.index == bad


def test_spm_maps_are_disjoint_and_the_last_duplicate_wins():
    """Plain and other tokens in two maps (not all ids plus the plain ones
    again); a string listed twice keeps its last id, in whichever map that
    id's type puts it."""
    tokens = ["a", "b", "ab", "<c>", "b", "ab"]
    normal = [True, True, True, False, False, True]
    enc = SpmEncoder(tokens, [0.0] * 6, normal, [], add_space_prefix=False)
    assert [enc.token_id(t) for t in ("a", "b", "ab", "<c>", "zz")] == [0, 4, 5, 3, None]
    assert enc.encode("ab") == [5]          # merges make plain tokens only
    assert enc.encode("b") == []            # "b" is id 4, not plain; no byte token either


def test_malloc_policy_applies_under_glibc():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert keep_big_blocks_out_of_heap()
