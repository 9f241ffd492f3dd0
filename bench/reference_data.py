"""Regenerates tests/data/reference/smollm2_q4_1.json: the float64 oracle's
answers on ten real-code prompts for the default model.

For each of ten Python standard-library files it takes the first function
whose source is at least MIN_TOKENS long, keeps whole lines of it up to
MAX_TOKENS tokens (a realistic "cursor inside a function body" prompt), and
records with the exact float64 forward pass (tests/reference.py):

  prompt       the prompt's token ids
  continuation the greedy continuation of N_NEW tokens (KV-cache decode)
  cont_margin  at each greedy step, top-1 minus top-2 logit (near-ties)
  argmax       teacher-forced argmax at every position of prompt+continuation
               (entry i predicts token i+1; the last entry predicts past the end)
  runner_up    the second-best token at every position
  margin       top-1 minus top-2 logit at every position (rounded)

Logit differences equal log-softmax differences, so `margin` tells a test
which disagreements are near-ties.  Token ids only: CI needs neither the
standard-library files nor a tokenizer to replay it.

    python bench/reference_data.py [--model PATH] [--out PATH]

Takes about a minute on 2 cores (the float64 weights need ~1.2 GB of RAM).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import sysconfig
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from reference import ReferenceModel  # noqa: E402

import common  # noqa: E402  (bench/, the script's own folder)

DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "reference", "smollm2_q4_1.json")
FILES = [
    "json/encoder.py", "argparse.py", "textwrap.py", "shutil.py", "tokenize.py",
    "difflib.py", "csv.py", "dataclasses.py", "configparser.py", "heapq.py",
]
MIN_TOKENS, MAX_TOKENS, N_NEW = 150, 400, 64


def load_model_file(path):
    from ditto.engine.gguf_model import load_model_file as load
    return load(path)


def make_encoder(mf):
    """ditto's tokenizer, or the `tokenizers` recipe of NOTES.md (same ids)."""
    try:
        from ditto.engine.tokenizer import Tokenizer
        tok = Tokenizer(mf.tokenizer)
        # a BOS first when the model wants one (Gemma), as ditto's prompts have it
        return (lambda s: tok.bos_prefix() + tok.encode(s)), "ditto.engine.tokenizer"
    except ImportError:
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        td = mf.tokenizer
        vocab = {t: i for i, t in enumerate(td.tokens)}
        merges = [tuple(m.split(" ", 1)) for m in td.merges]
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\p{N}"), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        tk.decoder = decoders.ByteLevel()
        return (lambda s: tk.encode(s).ids), "tokenizers (NOTES.md recipe)"


def pick_prompt(path, encode):
    """(first line, last line, ids) of the first long-enough function."""
    src = open(path, encoding="utf-8").read()
    lines = src.splitlines(keepends=True)
    funcs = [n for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for fn in sorted(funcs, key=lambda n: n.lineno):
        first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
        body = lines[first - 1: fn.end_lineno]
        if len(encode("".join(body))) < MIN_TOKENS + N_NEW:   # leave code to continue into
            continue
        keep = 0
        while keep < len(body) and len(encode("".join(body[: keep + 1]))) <= MAX_TOKENS:
            keep += 1
        ids = encode("".join(body[:keep]))
        if len(ids) >= MIN_TOKENS:
            return first, first + keep - 1, ids
    raise RuntimeError(f"no function of {MIN_TOKENS}+ tokens in {path}")


def top2(logits):
    """argmax, runner-up and their logit difference for each row."""
    i2 = np.argpartition(-logits, 1, axis=1)[:, :2]
    v = np.take_along_axis(logits, i2, axis=1)
    order = np.argsort(-v, axis=1, kind="stable")
    i2, v = np.take_along_axis(i2, order, axis=1), np.take_along_axis(v, order, axis=1)
    top = logits.argmax(axis=1)               # lowest id on exact ties, like np.argmax everywhere
    return top, np.where(i2[:, 0] == top, i2[:, 1], i2[:, 0]), v[:, 0] - v[:, 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF (default: ditto's default model)")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    args.model = str(common.resolve_model(args.model))
    mf = load_model_file(args.model)
    encode, tok_name = make_encoder(mf)
    ref = ReferenceModel(mf)
    stdlib = sysconfig.get_paths()["stdlib"]
    records = []
    for rel in FILES:
        t0 = time.time()
        a, b, prompt = pick_prompt(os.path.join(stdlib, rel), encode)
        cache = ref.new_cache()
        last = ref.forward(prompt, cache)[-1]
        cont, cont_margin = [], []
        while True:
            top, _, m = top2(last[None])
            cont.append(int(top[0]))
            cont_margin.append(float(m[0]))
            if len(cont) == N_NEW:
                break
            last = ref.forward([cont[-1]], cache)[-1]
        full = ref.logits(prompt + cont)
        am, ru, margin = top2(full)
        # the incremental and the batched float64 passes must agree (barring a near-exact tie)
        tf = am[len(prompt) - 1: -1].tolist()
        bad = [i for i in range(N_NEW) if tf[i] != cont[i] and cont_margin[i] > 1e-9]
        assert not bad, f"{rel}: reference greedy and teacher-forced argmax differ at {bad}"
        records.append({
            "source": f"{rel}:{a}-{b}",
            "prompt": prompt,
            "continuation": cont,
            "cont_margin": [round(x, 4) for x in cont_margin],
            "argmax": am.tolist(),
            "runner_up": ru.tolist(),
            "margin": [round(float(x), 4) for x in margin],
        })
        print(f"{rel}:{a}-{b}: {len(prompt)} prompt tokens, {time.time() - t0:.1f}s, "
              f"min greedy margin {min(cont_margin):.4f}", file=sys.stderr)
    out = {
        "model": os.path.basename(args.model),
        "python": sys.version.split()[0],
        "tokenizer": tok_name,
        "n_new": N_NEW,
        "generated_by": "bench/reference_data.py (float64 tests/reference.py)",
        "prompts": records,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
