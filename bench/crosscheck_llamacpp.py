"""Cross-check ditto's architectures and quant types against llama.cpp.

For every architecture (llama, qwen2, qwen3, gemma3, mistral-style = llama
with llama.attention.sliding_window, phi3) and every tensor type ditto
runs, writes a random-weight GGUF with tests/gguf_factory.py (width 256,
2 layers, untied output, weights ~N(0, --std) so the logits spread over a
few units: neither flat nor one-hot), lets llama-server continue random
prompts greedily (temperature 0, `n_probs` top log-probs before sampling;
tokens that are not whole UTF-8 text are banned from the continuation,
since llama-server drops the log-probs of those positions), then runs the
same token sequences through ditto teacher-forced and compares, position
by position, the distributions both computed from the raw logits:

  top1       share of positions where ditto's argmax is llama.cpp's
  max_dlp    max |ditto log-prob - llama.cpp log-prob| over llama.cpp's top --n-probs tokens
  mean_dlp   the mean of those differences
  ref_top1   the same share for the float64 reference (tests/reference.py) against
             llama.cpp, and ditto against the reference (ditto_ref_top1)

llama.cpp quantizes activations to 8 bits for quantized weights and keeps
its KV cache in f16 (flash attention on), so small log-prob differences and
top-1 flips where the margin is small are expected; ditto itself equals the
float64 reference to float32 rounding.

mistral-style: llama.cpp has no sliding window for the `llama` architecture
(it ignores the key), so that row compares only positions inside the window,
where both attend to everything.

Outside CI (needs a llama.cpp build). Prints JSON on stdout; --table also
prints the README's markdown table on stderr.

    python bench/crosscheck_llamacpp.py [--llama-bin-dir DIR] [--archs llama,phi3] [--types Q4_0,Q6_K] [--table]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import common  # noqa: E402  (bench/, the script's own folder)

WINDOW = 8  # mistral-style window: shorter than prompt + continuation
# row name -> (GGUF architecture, write_tiny_gguf keywords)
VARIANTS = {
    "llama": ("llama", {}),
    "qwen2": ("qwen2", {}),
    "qwen3": ("qwen3", {}),
    "gemma3": ("gemma3", {"sliding_window": WINDOW}),  # both layers slide (pattern 6)
    "mistral": ("llama", {"sliding_window": WINDOW}),
    "phi3": ("phi3", {}),
}


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def parse_args(argv=None) -> argparse.Namespace:
    from gguf import GGMLQuantizationType as Q

    from ditto.engine.gguf_model import SUPPORTED_TYPES

    types = sorted(SUPPORTED_TYPES)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-bin-dir", default=os.environ.get("LLAMA_CPP_BIN_DIR"),
                    help="llama.cpp's binaries (llama-server; default: $LLAMA_CPP_BIN_DIR)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines (default: 2)")
    ap.add_argument("--archs", default=",".join(VARIANTS), help=f"comma-separated rows (default: all: {', '.join(VARIANTS)})")
    ap.add_argument("--types", default=",".join(t.name for t in types),
                    help="comma-separated weight types (default: every type ditto runs)")
    ap.add_argument("--prompts", type=int, default=4, help="random prompts per model (default: 4)")
    ap.add_argument("--prompt-len", type=int, default=4, help="tokens per prompt (default: 4)")
    ap.add_argument("--n-new", type=int, default=16, help="greedy tokens per prompt (default: 16)")
    ap.add_argument("--n-probs", type=int, default=8, help="llama.cpp's top log-probs per position (default: 8)")
    ap.add_argument("--std", type=float, default=0.2, help="weight std of the random models (default: 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=("exact", "fast"), default="exact",
                    help="ditto's matmul precision (fast: int8 activations, as llama.cpp's)")
    ap.add_argument("--work-dir", default=None, help="where the GGUFs go (default: a temporary folder)")
    ap.add_argument("--table", action="store_true", help="also print a markdown table on stderr")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    unknown = [a for a in args.archs if a not in VARIANTS]
    if unknown:
        ap.error(f"unknown rows {unknown}; known: {', '.join(VARIANTS)}")
    try:
        args.types = [Q[t] for t in args.types.split(",") if t]
    except KeyError as e:
        ap.error(f"unknown type {e}")
    bad = [t.name for t in args.types if t not in SUPPORTED_TYPES]
    if bad:
        ap.error(f"ditto does not run {bad}")
    return args


def write_model(directory: Path, row: str, qtype, args) -> Path:
    from gguf_factory import write_tiny_gguf

    arch, kw = VARIANTS[row]
    path = directory / f"{row}-{qtype.name}.gguf"
    write_tiny_gguf(path, arch, qtype, n_embd=256, n_ff=512, n_layer=2, n_head=4, n_head_kv=2,
                    tied_output=False, std=args.std, seed=args.seed, **kw)
    return path


def llama_continuations(srv, prompts, banned: list[int], args) -> list[list[dict]]:
    """llama.cpp's greedy continuation of each prompt: per position its token
    and top log-probs (of the raw logits), as /completion returns them."""
    out = []
    for prompt in prompts:
        res = srv.completion({
            "prompt": prompt, "n_predict": args.n_new, "temperature": 0.0, "ignore_eos": True,
            "n_probs": args.n_probs, "post_sampling_probs": False, "cache_prompt": False,
            "logit_bias": [[t, False] for t in banned],
        })
        probs = res.get("completion_probabilities") or []
        if len(probs) != args.n_new:
            raise SystemExit(f"llama-server returned {len(probs)} positions, wanted {args.n_new}: {res}")
        out.append(probs)
    return out


def compare(path: Path, prompts, continuations, args, n_positions: int | None) -> dict:
    """ditto (and the reference) teacher-forced on llama.cpp's sequences."""
    from reference import ReferenceModel

    from ditto._native import Context, Model
    from ditto.engine.gguf_model import load_model_file

    mf = load_model_file(path)
    model, ref = Model(mf), ReferenceModel(mf)
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=256, n_threads=args.threads, precision=args.precision)
    top1 = ref_top1 = ditto_ref = total = 0
    dlps: list[float] = []
    for prompt, cont in zip(prompts, continuations):
        gen = [int(p["id"]) for p in cont]
        seq = prompt + gen[:-1]
        ctx.truncate(0, 0)
        n = len(seq)
        ld = log_softmax(ctx.decode(seq, np.arange(n), np.zeros(n), np.ones(n))[len(prompt) - 1:])
        lr = ref.logits(seq)[len(prompt) - 1:]
        for i, p in enumerate(cont):
            if n_positions is not None and len(prompt) + i > n_positions:
                break
            total += 1
            llama_top = int(p["top_logprobs"][0]["id"])
            top1 += int(ld[i].argmax() == llama_top)
            ref_top1 += int(lr[i].argmax() == llama_top)
            ditto_ref += int(ld[i].argmax() == lr[i].argmax())
            dlps += [abs(float(ld[i, int(t["id"])]) - float(t["logprob"])) for t in p["top_logprobs"]]
    return {"positions": total, "top1": top1 / total, "max_dlp": max(dlps), "mean_dlp": float(np.mean(dlps)),
            "ref_top1": ref_top1 / total, "ditto_ref_top1": ditto_ref / total}


def token_classes(path: Path) -> tuple[np.ndarray, list[int]]:
    """(normal token ids for prompts, ids whose text is not whole UTF-8)."""
    from ditto.engine.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(path)
    normal, partial = [], []
    for i in range(tok.n_vocab):
        try:
            tok.token_bytes(i).decode("utf-8")
            if not tok.is_control(i):
                normal.append(i)
        except UnicodeDecodeError:
            partial.append(i)
    return np.asarray(normal), partial


def run_row(work: Path, row: str, qtype, args) -> dict:
    path = write_model(work, row, qtype, args)
    rng = np.random.default_rng(args.seed + 1)
    normal, partial = token_classes(path)
    prompts = [[int(t) for t in rng.choice(normal, args.prompt_len)] for _ in range(args.prompts)]
    with common.LlamaServer(args.llama_bin_dir, path, threads=args.threads, ctx=256) as srv:
        continuations = llama_continuations(srv, prompts, partial, args)
    # mistral-style: positions past the window are not comparable (see the docstring)
    limit = WINDOW if row == "mistral" else None
    result = {"arch": row, "type": qtype.name, **compare(path, prompts, continuations, args, limit)}
    path.unlink()
    return result


def markdown(rows: list[dict]) -> str:
    lines = ["| architecture | quant | positions | top-1 agreement | max abs log-prob diff | "
             "mean abs log-prob diff | llama.cpp vs float64 top-1 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['type']} | {r['positions']} | {r['top1']:.1%} | "
                     f"{r['max_dlp']:.3g} | {r['mean_dlp']:.2g} | {r['ref_top1']:.1%} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    common.llama_binary(args.llama_bin_dir, "llama-server")  # a clear message before any work
    common.exit_on_sigterm()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ditto-crosscheck-", dir=args.work_dir) as tmp:
        for row in args.archs:
            for qtype in args.types:
                common.log(f"{row} {qtype.name} ...")
                rows.append(run_row(Path(tmp), row, qtype, args))
                common.log("   ", rows[-1])
    if args.table:
        common.log(markdown(rows))
    common.emit_json({
        "machine": common.machine_info(args.threads),
        "llama_cpp": common.llama_version(args.llama_bin_dir),
        "settings": {k: getattr(args, k) for k in ("prompts", "prompt_len", "n_new", "n_probs", "std", "seed",
                                                    "precision")},
        "rows": rows,
    }, args.out, stem="crosscheck")


if __name__ == "__main__":
    main()
