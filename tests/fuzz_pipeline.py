"""GGUF fuzzing end to end: every mutant goes as far as ditto lets it.

A case is a seed. Its file is either a byte mutant of a valid tiny model
(gguf_factory.mutate: mostly refused in the header) or a valid-structure
mutant (gguf_factory.random_recipe, sometimes with random tensor data).
Each case then runs the stages a user's model goes through:

    header     the bounds-checked header walk (gguf_reader.read_gguf)
    validated  load_model_file: hyperparameters, tokenizer data, tensors
    tokenizer  Tokenizer() built from the GGUF's vocabulary and merges
    tokenized  encode / decode of code and odd text
    template   the chat template renders a conversation (or refuses it)
    model      the native Model
    context    a native Context
    decoded    speculative greedy and sampled decoding (engine.decode.Decoder),
               exact or fast precision, a ring KV cache for sliding windows
    saved      save / load and checkpoint / restore of a sequence

A stage may refuse only with the error meant for it (GGUFError up to the
tokenizer, ChatTemplateError for the template); once a file is loaded, the
model, context, decoding and state stages must all work. Anything else, a
crash (the process dies) or a hang (no answer within the time limit) is a
failure reported with its seed, so `run_case(seed)` reproduces it.

Cases run in a child process (`python fuzz_pipeline.py FIRST COUNT`) that
prints one JSON line per case; the parent (run_cases) restarts it after a
crash or a hang, so one bad case never hides the others.
"""
from __future__ import annotations

import json
import os
import random
import resource
import select
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_factory import (  # noqa: E402
    check_loaded, flip_tensor_data, mutate, random_recipe, write_fuzz_seeds, write_tiny_gguf)

STAGES = ("header", "validated", "tokenizer", "tokenized", "template", "model", "context",
          "decoded", "saved")
TEXTS = ("def f(x):\n    return x + 1\n", "<|im_end|>\u00e9\u20ac\U0001F600\t\r\n", "", " " * 40)
EXTRA_ADDRESS_SPACE = 2 << 30  # a case may map this much beyond the child's start


class Refused(Exception):
    """A stage refused the file with the error meant for it (not a bug)."""


@dataclass
class Summary:
    """How far the cases got, and every failure."""
    cases: int = 0
    reached: Counter = field(default_factory=Counter)   # stage -> cases that passed it
    refusals: Counter = field(default_factory=Counter)  # error message shape -> count
    by_kind: Counter = field(default_factory=Counter)   # (kind, furthest stage) -> count
    templates_refused: int = 0                          # of the cases past "template"
    failures: list[dict] = field(default_factory=list)  # {"seed", "kind", "detail"}

    def add(self, result: dict) -> None:
        self.cases += 1
        passed = STAGES[:STAGES.index(result["stage"]) + 1] if result["stage"] in STAGES else ()
        self.reached.update(passed)
        self.by_kind[f"{result['kind']}:{result['stage']}"] += 1
        if result.get("template_refused"):
            self.templates_refused += 1
        if result.get("refused"):
            self.refusals[_message_shape(result["refused"])] += 1
        if result.get("failure"):
            self.failures.append({"seed": result["seed"], "kind": result["kind"],
                                  "detail": result["failure"][-3000:]})

    def as_json(self) -> dict:
        return {"cases": self.cases, "reached": {s: self.reached[s] for s in STAGES},
                "templates_refused": self.templates_refused,
                "furthest_by_kind": dict(sorted(self.by_kind.items())),
                "top_refusals": self.refusals.most_common(30), "failures": self.failures[:20]}


# ---------------------------------------------------------------- one case
def make_case(seed: int, seed_files, directory: str) -> tuple[str, str]:
    """(kind, path of the mutant) for a seed; the same seed gives the same file."""
    rng = random.Random(seed)
    path = os.path.join(directory, f"case{seed}.gguf")
    if seed % 4 == 0:
        Path(path).write_bytes(mutate(seed_files[(seed // 4) % len(seed_files)], rng))
        return "bytes", path
    recipe = random_recipe(rng)
    cfg = dict(recipe)
    write_tiny_gguf(path, cfg.pop("arch"), cfg.pop("weight_type"), seed=seed, **cfg)
    if rng.random() < 0.25:
        from gguf import GGUFReader

        data_start = int(GGUFReader(path).data_offset)
        Path(path).write_bytes(flip_tensor_data(Path(path).read_bytes(), data_start, rng))
        return "recipe+data", path
    return "recipe", path


def run_stages(path: str, reached: list[str], precision: str = "exact") -> str | None:
    """Runs every stage on one file, appending each stage passed to
    `reached`. Returns the template's refusal, if any; raises Refused when
    a stage refuses the file properly, anything else on a bug."""
    from ditto import _native
    from ditto.engine.chat import ChatTemplate, ChatTemplateError
    from ditto.engine.decode import Decoder, Request
    from ditto.engine.drafters import make_drafter
    from ditto.engine.gguf_model import GGUFError, load_model_file
    from ditto.engine.gguf_reader import read_gguf
    from ditto.engine.sampling import SamplingParams
    from ditto.engine.tokenizer import Tokenizer

    try:
        read_gguf(path)
        reached.append("header")
        mf = load_model_file(path)
        check_loaded(mf)
        reached.append("validated")
        tok = Tokenizer(mf.tokenizer)
        reached.append("tokenizer")
    except GGUFError as e:
        raise Refused(str(e)) from None
    prompt = []
    for text in TEXTS:
        ids = tok.encode(text)
        assert tok.decode(ids) == text or not tok.can_round_trip(text), (text, ids)
        prompt += ids
    reached.append("tokenized")
    template_refusal = None
    try:
        chat = ChatTemplate.for_model(tok, mf.tokenizer)
        prompt += chat.encode([{"role": "user", "content": TEXTS[1]}])
    except ChatTemplateError as e:
        template_refusal = str(e)
    reached.append("template")
    model = _native.Model(mf)
    reached.append("model")
    n_ctx = min(mf.hparams.n_ctx_train, 64)
    ctx = _native.Context(model, n_seq=2, n_ctx=n_ctx, max_batch=16, n_threads=1, precision=precision,
                          kv_ring=mf.hparams.sliding_window > 0)  # the ring's paths too
    reached.append("context")
    prompt = (prompt or [0])[: max(1, n_ctx - 8)]
    decoder = Decoder(ctx)
    # greedy with speculation (drafts from the prompt: checkpoints and restores)
    greedy = Request(prompt=prompt, max_tokens=min(6, n_ctx - len(prompt)), seq=0, is_stop=tok.is_eog,
                     drafter=make_drafter("auto", source_tokens=prompt))
    sampled = Request(prompt=prompt, max_tokens=min(3, n_ctx - len(prompt)), seq=1, is_stop=tok.is_eog,
                      sampling=SamplingParams(temperature=0.8, top_k=40, top_p=0.9, seed=1))
    decoder.run([greedy, sampled])
    assert all(0 <= t < mf.hparams.n_vocab for t in greedy.output + sampled.output)
    reached.append("decoded")
    state = ctx.save(0)
    ctx.load(1, state)
    assert ctx.seq_len(1) == ctx.seq_len(0)
    mark = ctx.seq_len(0)
    checkpoint = ctx.checkpoint(0, 1)
    if mark < n_ctx:
        ctx.decode([0], [mark], [0])
    ctx.restore(0, checkpoint)
    assert ctx.seq_len(0) == mark
    reached.append("saved")
    return template_refusal


def run_case(seed: int, seed_files, directory: str) -> dict:
    """One case as a JSON-able result: furthest stage, refusal or failure."""
    reached: list[str] = []
    result: dict = {"seed": seed}
    try:
        kind, path = make_case(seed, seed_files, directory)
    except (ValueError, NotImplementedError):  # the writer cannot write this recipe
                                               # (a shape no block fits, a type it cannot quantize)
        return dict(result, kind="unbuilt", stage="none")
    try:
        result["template_refused"] = run_stages(path, reached, ("exact", "fast")[seed % 2])
    except Refused as e:
        result["refused"] = str(e)
    except Exception as e:  # noqa: BLE001 - a bug, reported with its seed
        result["failure"] = "".join(traceback.format_exception(e))
    finally:
        os.unlink(path)
    result["kind"] = kind
    result["stage"] = reached[-1] if reached else "none"
    return result


# ---------------------------------------------------------------- processes
def run_cases(first: int, count: int, *, case_timeout_s: float = 120.0, script: str = __file__) -> Summary:
    """Runs seeds [first, first + count) in child processes (`script FIRST
    COUNT` prints one JSON result per line); a crash or a hang is a failure
    of the seed it happened on, and the rest go on."""
    summary = Summary()
    seed = first
    while seed < first + count:
        seed = _run_child(script, seed, first + count - seed, case_timeout_s, summary)
    return summary


def _run_child(script: str, first: int, count: int, timeout_s: float, summary: Summary) -> int:
    """Runs cases in one child until it ends; returns the next seed to run."""
    proc = subprocess.Popen([sys.executable, script, str(first), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seed = first
    try:
        while seed < first + count:
            ready = select.select([proc.stdout], [], [], timeout_s)[0]
            line = proc.stdout.readline() if ready else None
            if not line:
                failure = _ended(proc, ready, timeout_s)
                summary.add({"seed": seed, "kind": "?", "stage": "none", "failure": failure})
                return seed + 1
            result = json.loads(line)
            summary.add(result)
            seed = result["seed"] + 1
        return seed
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _ended(proc: subprocess.Popen, answered: list, timeout_s: float) -> str:
    if not answered:
        proc.kill()
        return f"hang: no result within {timeout_s:g} s"
    rc = proc.wait()
    return f"crash: the process ended with status {rc}\n{proc.stderr.read()[-3000:]}"


def _child_main(first: int, count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + EXTRA_ADDRESS_SPACE
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    directory = tempfile.mkdtemp(prefix="ditto_fuzz_")
    seed_files = write_fuzz_seeds(directory)
    np.seterr(all="ignore")  # NaN weights are part of the game
    for seed in range(first, first + count):
        print(json.dumps(run_case(seed, seed_files, directory)), flush=True)


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def _message_shape(msg: str) -> str:
    """The message with names and numbers blanked, to group similar errors."""
    import re

    msg = re.sub(r"'[^']*'", "'…'", msg)
    return re.sub(r"\d+", "N", msg)[:100]


if __name__ == "__main__":
    _child_main(int(sys.argv[1]), int(sys.argv[2]))
