"""Fidelity of ditto (and llama.cpp, when built) to the exact float64 forward
pass on the real default model, over the ten real-code prompts of
tests/data/reference/smollm2_q4_1.json (prompt + 64-token reference
continuation each, teacher-forced).

Prints JSON:
  ditto.kl_mean / kl_max   KL(reference || ditto) per position, nats
  ditto.top1_agreement     share of positions where argmax agrees
  ditto.greedy_match       prompts whose greedy 64-token continuation equals the reference's
  llama_cpp.*              the same for llama.cpp (-fa on, 2 threads): KL and
                           top-1 from `llama-perplexity --kl-divergence` against a
                           base file written from the float64 logits, greedy
                           continuations from `llama-server` at temperature 0
  same_positions           ditto's numbers on exactly the positions llama-perplexity
                           scores (the second half of each prompt truncated to the
                           shortest one), for a like-for-like comparison

    python bench/fidelity.py [--model PATH] [--kv-type auto|f32|f16|bf16] [--precision exact fast q16 ...]
                             [--llama-cpp BUILD_BIN_DIR] [--no-llama-cpp]

--kv-type is the element type of ditto's KV cache (every precision runs with
it; auto, the default, is f16, or bf16 under fast; each result names its own).
--precision lists the precisions measured (default: exact fast); exact is
reported as `ditto`, the others as `ditto_<precision>`.

The llama.cpp build is found at $LLAMA_CPP_BIN or --llama-cpp; it is run with
--no-repack (this build segfaults in its AMX repacked matmul otherwise).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from reference import ReferenceModel  # noqa: E402

import common  # noqa: E402  (bench/, the script's own folder)

DATA = os.path.join(ROOT, "tests", "data", "reference", "smollm2_q4_1.json")


def log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl(ref_logits, logits):
    """KL(P_ref || P) per row, in nats."""
    lp, lq = log_softmax(ref_logits), log_softmax(logits)
    return np.sum(np.exp(lp) * (lp - lq), axis=-1)


def ditto_greedy(ctx, prompt, n_new):
    ctx.truncate(0, 0)
    n = len(prompt)
    last = ctx.decode(prompt, np.arange(n), np.zeros(n), None)[0]
    out = []
    while len(out) < n_new:
        out.append(int(np.argmax(last)))
        if len(out) < n_new:
            last = ctx.decode([out[-1]], [n + len(out) - 1], [0], [1])[0]
    return out


# ---------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------

def write_kld_base(path, chunks, ref_logits, n_vocab):
    """llama-perplexity's --kl-divergence-base file from float64 logits:
    "_logits_", n_ctx, n_vocab, n_chunk, the tokens, then per chunk the rows
    n_ctx/2 .. n_ctx-2 as (f32 scale, f32 min log-prob, uint16 x n_vocab)."""
    n_chunk, n_ctx = len(chunks), len(chunks[0])
    first = n_ctx // 2
    nv = 2 * ((n_vocab + 1) // 2) + 4
    with open(path, "wb") as f:
        f.write(b"_logits_" + struct.pack("<Iii", n_ctx, n_vocab, n_chunk))
        f.write(np.asarray(chunks, dtype=np.int32).tobytes())
        for lg in ref_logits:
            rows = np.zeros((n_ctx - 1 - first, nv), dtype=np.uint16)
            for r, x in enumerate(lg[first:n_ctx - 1]):
                mx = x.max()
                mn = max(x.min(), mx - 16)
                lse = np.log(np.exp(x - mx).sum())
                scale = np.float32((mx - mn) / 65535)
                head = np.array([scale, mn - mx - lse], dtype=np.float32).view(np.uint16)
                rows[r, :4] = head
                q = np.where(x > mn, np.rint((x - mn) / scale), 0)
                rows[r, 4:4 + n_vocab] = q.astype(np.uint16)
            f.write(rows.tobytes())


def llama_perplexity_kld(bin_dir, model, base, n_ctx):
    cmd = [os.path.join(bin_dir, "llama-perplexity"), "-m", model, "--kl-divergence-base", base,
           "--kl-divergence", "-c", str(n_ctx), "-b", str(n_ctx), "-t", "2", "-fa", "on", "--no-repack"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    out = p.stdout + p.stderr
    kld = re.search(r"Mean\s+KLD:\s*([-\d.eE+]+)", out)
    mx = re.search(r"Maximum KLD:\s*([-\d.eE+]+)", out)
    top = re.search(r"Same top p:\s*([-\d.eE+]+)", out)
    if not (kld and top):
        raise RuntimeError(f"llama-perplexity failed ({p.returncode}):\n{out[-2000:]}")
    return {"kl_mean": float(kld.group(1)), "kl_max": float(mx.group(1)) if mx else None,
            "top1_agreement": float(top.group(1)) / 100}


def llama_server_greedy(bin_dir, model, prompts, n_new):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile()
    srv = subprocess.Popen([os.path.join(bin_dir, "llama-server"), "-m", model, "--host", "127.0.0.1",
                            "--port", str(port), "-t", "2", "-c", "2048", "-np", "1", "-fa", "on",
                            "--no-repack"], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except Exception:
                if srv.poll() is not None:
                    raise RuntimeError("llama-server exited")
                time.sleep(0.2)
        outs = []
        for prompt in prompts:
            body = json.dumps({"prompt": prompt, "n_predict": n_new, "temperature": 0, "top_k": 1,
                               "samplers": ["top_k"], "cache_prompt": False, "return_tokens": True,
                               "ignore_eos": True}).encode()
            req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
            outs.append(json.load(urllib.request.urlopen(req, timeout=600))["tokens"])
        return outs
    finally:
        srv.terminate()
        srv.wait(timeout=30)


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(ap)
    ap.add_argument("--no-llama-cpp", action="store_true", help="measure ditto alone")
    from ditto._native import Context, Model
    from ditto.engine.options import DEFAULT_KV_TYPE, KV_TYPES, PRECISIONS, resolve_kv_type

    ap.add_argument("--kv-type", choices=KV_TYPES, default=DEFAULT_KV_TYPE,
                    help=f"ditto's KV cache element type (default: {DEFAULT_KV_TYPE})")
    ap.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["exact", "fast"],
                    help="precisions to measure (default: exact fast)")
    args = ap.parse_args()
    args.model = str(common.resolve_model(args.model))

    from ditto.engine.gguf_model import load_model_file

    data = json.load(open(DATA))
    recs, n_new = data["prompts"], data["n_new"]
    mf = load_model_file(args.model)
    ref = ReferenceModel(mf)
    model = Model(mf)
    seqs = [r["prompt"] + r["continuation"] for r in recs]
    n_ctx_cmp = min(len(s) for s in seqs)
    first = n_ctx_cmp // 2
    ref_full = [ref.logits(toks) for toks in seqs]
    ref_logits = [lr[:n_ctx_cmp] for lr in ref_full]

    def measure(precision):
        """KL / top-1 of one ditto precision against the reference, all and same positions."""
        ctx = Context(model, n_seq=1, n_ctx=1024, max_batch=512, n_threads=args.threads, precision=precision,
                      kv_type=resolve_kv_type(args.kv_type, precision))
        kls, agree, kls_same, agree_same, greedy_ok = [], [], [], [], 0
        for r, toks, lr in zip(recs, seqs, ref_full):
            n = len(toks)
            ctx.truncate(0, 0)
            ld = ctx.decode(toks, np.arange(n), np.zeros(n), np.ones(n))
            k = kl(lr, ld)
            a = lr.argmax(axis=1) == ld.argmax(axis=1)
            kls.append(k)
            agree.append(a)
            kls_same.append(k[first:n_ctx_cmp - 1])
            agree_same.append(a[first:n_ctx_cmp - 1])
            greedy_ok += ditto_greedy(ctx, r["prompt"], n_new) == r["continuation"]
        kls, agree = np.concatenate(kls), np.concatenate(agree)
        kls_same, agree_same = np.concatenate(kls_same), np.concatenate(agree_same)
        return ({"kl_mean": float(kls.mean()), "kl_max": float(kls.max()),
                 "top1_agreement": float(agree.mean()), "greedy_match": int(greedy_ok)},
                {"kl_mean": float(kls_same.mean()), "kl_max": float(kls_same.max()),
                 "top1_agreement": float(agree_same.mean())}, int(len(kls)), int(len(kls_same)))

    out = {"model": os.path.basename(args.model), "kv_type": args.kv_type, "prompts": len(recs)}
    same = {"n_ctx": n_ctx_cmp}
    for precision in dict.fromkeys(args.precision):
        name = "ditto" if precision == "exact" else f"ditto_{precision}"
        out[name], same[name], out["positions"], same["positions"] = measure(precision)
        out[name]["kv_type"] = resolve_kv_type(args.kv_type, precision)
    out["same_positions"] = same
    lc = args.llama_bin_dir
    if args.no_llama_cpp:
        out["llama_cpp"] = "skipped (--no-llama-cpp)"
    elif not (lc and os.path.exists(os.path.join(lc, "llama-perplexity"))):
        out["llama_cpp"] = f"skipped (no llama-perplexity in {lc})"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            base = os.path.join(tmp, "base.kld")
            write_kld_base(base, [s[:n_ctx_cmp] for s in seqs], ref_logits, mf.hparams.n_vocab)
            out["same_positions"]["llama_cpp"] = llama_perplexity_kld(lc, args.model, base, n_ctx_cmp)
        conts = llama_server_greedy(lc, args.model, [r["prompt"] for r in recs], n_new)
        out["llama_cpp"] = {"greedy_match": sum(c == r["continuation"] for c, r in zip(conts, recs)),
                            "settings": "-fa on -t 2 --no-repack"}
    common.emit_json(out, args.out, stem="fidelity")


if __name__ == "__main__":
    main()
