"""Whole-file rewrites: ditto plain and speculative against llama-server, in one run.

    python bench/rewrite.py [--files 8] [--quick] [--max-tokens N] [--threads 2]
                            [--llama-bin-dir DIR | --no-llama] [--model GGUF] [--out bench/results/]
                            [--rejections N] [--keep-tokens]

Files: real Python files of 2-8 KB from this interpreter's standard library,
spread over its sorted list (or --file PATH ...), each with a rename-style
instruction, "Rename the function X to X_impl.", where X is a function
defined in the file whose name occurs there at least 4 times.

For every file, five greedy runs with the same prompt token ids and the same
token budget:

  ditto_plain         ditto, --no-speculate (one token per forward pass)
  ditto_spec          ditto, speculative, drafter --drafter (default auto)
  llama_plain         llama-server, no speculation
  llama_ngram_mod     llama-server --spec-type ngram-mod
  llama_ngram_simple  llama-server --spec-type ngram-simple

The prompt is built once by ditto (engine/rewrite.build_prompt: chat
template, the file, the instruction, an opened code fence) and llama-server
receives the same token ids as its prompt, so tokenization cannot differ.
Both stop at the closing fence ("\\n```") or end of turn. llama-server runs
with -fa on, -np 1, one fresh server per run (no state carried between
runs), cache_prompt off, temperature 0; its draft statistics come from the
response's timings (draft_n, draft_n_accepted). ditto runs in this process
with its prompt cache cleared before every run.

Per run: wall time (prefill + decode), prefill and decode seconds, generated
tokens, decode tokens/s (generated / decode time), drafted / accepted, and
whether the output equals the same engine's plain greedy output (token ids).
ditto's runs also give the time per decode pass and the tokens it fed
(pending token + draft): what verifying a draft costs next to a plain step.
Runs alternate between the engines (the order flips on every other file)
because these shared machines drift by up to 1.5x; the summary gives
ratios: per file and aggregated (total tokens / total seconds).

ditto_spec's drafting (bench/draft_analysis.py, from a TracingDrafter around
the drafter): per drafter of a combined one, drafts / drafted / accepted /
tokens per pass; acceptance where the answer copies the original (per token,
at positions inside runs of 8+ tokens the original holds anywhere; a draft's
tail cut where the answer departs is left out); and every rejected draft with the answer's line, the
drafted tail vs what the model wrote, and whose draft it was. The summary
groups them by (drafter, drafted token, model's token), most wasted draft
tokens first; --rejections N prints the top N. --keep-tokens adds the token
ids (prompt, source, plain output) so drafters can be replayed offline with
engine.drafters.simulate: acceptance is deterministic, wall time is not.

JSON to stdout, progress to stderr.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import draft_analysis  # noqa: E402
from common import LLAMA_MODES, geomean, log, ratio, rnd  # noqa: E402

STOP = "\n```"


# ---- files ---------------------------------------------------------------------------

def pick_files(n: int, min_bytes: int, max_bytes: int, explicit: list[str]) -> list[dict]:
    if explicit:
        paths = [Path(p) for p in explicit]
    else:
        cands = common.stdlib_files(min_bytes, max_bytes)
        cands = [p for p in cands if common.rename_target(p.read_text(encoding="utf-8"))]
        if len(cands) < n:
            raise SystemExit(f"only {len(cands)} standard-library files fit {min_bytes}-{max_bytes} bytes")
        step = len(cands) / n
        paths = [cands[int(i * step + step / 2)] for i in range(n)]
    out = []
    for p in paths:
        src = p.read_text(encoding="utf-8")
        target = common.rename_target(src)
        if target is None:
            raise SystemExit(f"{p}: no distinctive function name occurs at least 4 times")
        name, uses = target
        out.append({"path": str(p), "bytes": len(src.encode()), "source": src, "function": name,
                    "occurrences": uses, "new_name": common.new_name(name),
                    "instruction": f"Rename the function {name} to {common.new_name(name)}."})
    return out


# ---- ditto ------------------------------------------------------------------------------

def ditto_run(llm, base, *, speculate: bool, drafter: str, max_tokens: int) -> dict:
    from ditto.engine.drafters import TracingDrafter, make_drafter
    from ditto.engine.rewrite import RewriteError, RewriteJob, make_request

    llm.decoder.forget(0)          # every run prefills the whole prompt
    job = RewriteJob(source=base.source, instruction=base.instruction, language=base.language,
                     path=base.path, prompt=list(base.prompt), source_tokens=list(base.source_tokens))
    trace = TracingDrafter(make_drafter(drafter, source_tokens=job.source_tokens)) if speculate else None
    req = make_request(llm, job, speculate=speculate, drafter=trace, max_tokens=max_tokens)
    t0 = time.perf_counter()
    llm.decoder.run([req])
    wall = time.perf_counter() - t0
    try:
        job.result()
        complete, error = True, None
    except RewriteError as e:
        complete, error = False, str(e)
    s = req.stats
    # Each decode pass emits its accepted draft tokens plus one (the first token
    # comes from the prefill; only a pass that meets the closing fence emits fewer).
    decode_passes = max(1, s.generated - 1 - s.accepted)
    return {
        "wall_seconds": rnd(wall, 3),
        "prefill_seconds": rnd(s.prefill_seconds, 3),
        "decode_seconds": rnd(s.decode_seconds, 3),
        "prompt_tokens": s.prompt_tokens,
        "reused_tokens": s.reused_tokens,
        "generated": s.generated,
        "tps": rnd(s.decode_tps),
        "prefill_tps": rnd(s.prefill_tps),
        "drafted": s.drafted,
        "accepted": s.accepted,
        "acceptance": rnd(s.acceptance_rate, 4) if s.drafted else None,
        "forward_passes": s.forward_passes,
        "tokens_per_pass": rnd(s.tokens_per_pass, 3),
        "decode_passes": decode_passes,
        "ms_per_decode_pass": rnd(1000 * s.decode_seconds / decode_passes),
        "tokens_fed_per_decode_pass": rnd((s.drafted + decode_passes) / decode_passes),
        "finish_reason": req.finish_reason,
        "complete": complete,
        "error": error,
        "_tokens": list(req.output),
        "_text": job.text,
        "_trace": trace.records if trace else None,
    }


# ---- llama.cpp ------------------------------------------------------------------------

def llama_run(args, model: Path, mode: str, prompt: list[int], max_tokens: int) -> dict:
    payload = {"prompt": prompt, "n_predict": max_tokens, "temperature": 0, "top_k": 1,
               "repeat_penalty": 1.0, "seed": 1, "cache_prompt": False, "return_tokens": True,
               "stop": [STOP]}
    with common.LlamaServer(args.llama_bin_dir, model, threads=args.threads, ctx=args.ctx,
                            extra=LLAMA_MODES[mode] + args.server_arg) as srv:
        # a one-token request first: pages the weights in, as ditto's model already is
        srv.completion({**payload, "prompt": prompt[:8], "n_predict": 1})
        t0 = time.perf_counter()
        res = srv.completion(payload)
        wall = time.perf_counter() - t0
    t = res.get("timings", {})
    drafted, accepted = t.get("draft_n"), t.get("draft_n_accepted")
    gen = t.get("predicted_n")
    text = res.get("content", "")
    # the answer is complete when the fence closed (stop word) or the turn ended
    complete = bool(res.get("stop_type") in ("word", "eos") or res.get("stopping_word")) and bool(text.strip())
    return {
        "wall_seconds": rnd(wall, 3),
        "prefill_seconds": rnd((t.get("prompt_ms") or 0) / 1000, 3),
        "decode_seconds": rnd((t.get("predicted_ms") or 0) / 1000, 3),
        "prompt_tokens": t.get("prompt_n"),
        "generated": gen,
        "tps": rnd(t.get("predicted_per_second")),
        "prefill_tps": rnd(t.get("prompt_per_second")),
        "drafted": drafted or 0,
        "accepted": accepted or 0,
        "acceptance": rnd(accepted / drafted, 4) if drafted else None,
        "finish_reason": res.get("stop_type"),
        "complete": complete,
        "peak_rss_mb": common.mb(srv.peak_rss_bytes),
        "_tokens": list(res.get("tokens") or []),
        "_text": text,
    }


# ---- summary ----------------------------------------------------------------------------

def digest(tokens: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, tokens)).encode()).hexdigest()[:12]


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def same_output(run: dict, plain: dict, engine: str) -> bool:
    """ditto: identical token ids. llama-server: identical token ids when it
    returned them, else identical text."""
    if engine == "ditto" or (run["_tokens"] and plain["_tokens"]):
        return run["_tokens"] == plain["_tokens"]
    return run["_text"] == plain["_text"]


def aggregate(files: list[dict], config: str) -> dict:
    runs = [f["runs"][config] for f in files if config in f["runs"]]
    gen = sum(r["generated"] or 0 for r in runs)
    dec = sum(r["decode_seconds"] or 0 for r in runs)
    drafted = sum(r["drafted"] or 0 for r in runs)
    accepted = sum(r["accepted"] or 0 for r in runs)
    passes = sum(r.get("forward_passes") or 0 for r in runs)
    decode_passes = sum(r.get("decode_passes") or 0 for r in runs)
    same = [r.get("same_as_plain") for r in runs if r.get("same_as_plain") is not None]
    return {
        "files": len(runs),
        "generated": gen,
        "decode_seconds": rnd(dec, 3),
        "wall_seconds": rnd(sum(r["wall_seconds"] or 0 for r in runs), 3),
        "tps": rnd(gen / dec) if dec else None,
        "tps_per_file": [r["tps"] for r in runs],
        "acceptance": rnd(accepted / drafted, 4) if drafted else None,
        "tokens_per_pass": rnd(gen / passes, 3) if passes else None,
        "ms_per_decode_pass": rnd(1000 * dec / decode_passes) if decode_passes else None,
        "tokens_fed_per_decode_pass": rnd((drafted + decode_passes) / decode_passes) if decode_passes else None,
        "same_as_plain": f"{sum(same)}/{len(same)}" if same else None,
        "complete": f"{sum(bool(r['complete']) for r in runs)}/{len(runs)}",
    }


def drafting_summary(files: list[dict]) -> dict:
    """ditto_spec's drafting over all files: per drafter, and where the answer copies the original."""
    runs = [f["runs"]["ditto_spec"] for f in files if "per_drafter" in f["runs"]["ditto_spec"]]
    drafters = draft_analysis.merge_per_drafter([r["per_drafter"] for r in runs])
    drafted = sum(r["where_copying"]["drafted"] for r in runs)
    accepted = sum(r["where_copying"]["accepted"] for r in runs)
    return {"per_drafter": drafters,
            "where_copying": {"drafted": drafted, "accepted": accepted,
                              "acceptance": rnd(accepted / drafted, 4) if drafted else None}}


def summarize(files: list[dict]) -> dict:
    configs = ["ditto_plain", "ditto_spec", *LLAMA_MODES]
    agg = {c: aggregate(files, c) for c in configs}
    per_file = []
    for f in files:
        r = f["runs"]
        spec_modes = [m for m in ("llama_ngram_mod", "llama_ngram_simple") if r.get(m, {}).get("tps")]
        best = max(spec_modes, key=lambda m: r[m]["tps"]) if spec_modes else None
        best_wall = min((r[m]["wall_seconds"] for m in spec_modes), default=None)
        per_file.append({
            "file": Path(f["path"]).name,
            "llama_best_ngram_mode": best,
            "ditto_spec_over_llama_best_ngram_tps": ratio(r["ditto_spec"]["tps"], r[best]["tps"] if best else None),
            "ditto_spec_over_llama_plain_tps": ratio(r["ditto_spec"]["tps"], r["llama_plain"]["tps"]),
            "ditto_spec_over_ditto_plain_tps": ratio(r["ditto_spec"]["tps"], r["ditto_plain"]["tps"]),
            "ditto_plain_over_llama_plain_tps": ratio(r["ditto_plain"]["tps"], r["llama_plain"]["tps"]),
            "llama_best_ngram_wall_over_ditto_spec_wall": ratio(best_wall, r["ditto_spec"]["wall_seconds"]),
        })
    keys = [k for k in per_file[0] if k not in ("file", "llama_best_ngram_mode")] if per_file else []
    best_mode = max(("llama_ngram_mod", "llama_ngram_simple"), key=lambda m: agg[m]["tps"] or 0)
    return {
        "aggregate": agg,
        "ditto_spec_drafting": drafting_summary(files),
        "ratios": {
            "geomean_per_file": {k: rnd(geomean(p[k] for p in per_file), 3) for k in keys},
            "min_per_file": {k: min((p[k] for p in per_file if p[k]), default=None) for k in keys},
            "aggregate": {
                "llama_best_ngram_mode": best_mode,
                "ditto_spec_over_llama_best_ngram_tps": ratio(agg["ditto_spec"]["tps"], agg[best_mode]["tps"]),
                "ditto_spec_over_llama_plain_tps": ratio(agg["ditto_spec"]["tps"], agg["llama_plain"]["tps"]),
                "ditto_spec_over_ditto_plain_tps": ratio(agg["ditto_spec"]["tps"], agg["ditto_plain"]["tps"]),
                "ditto_plain_over_llama_plain_tps": ratio(agg["ditto_plain"]["tps"], agg["llama_plain"]["tps"]),
                "llama_best_ngram_wall_over_ditto_spec_wall":
                    ratio(agg[best_mode]["wall_seconds"], agg["ditto_spec"]["wall_seconds"]),
            },
        },
        "per_file": per_file,
        "targets": {"ditto_spec_over_llama_best_ngram_tps": ">= 4", "ditto_spec acceptance": ">= 0.9",
                    "ditto_spec same_as_plain": "every file"},
    }


def draft_report(run: dict, base, decode) -> list[dict]:
    """Adds per-drafter counts and acceptance where the answer copies the
    original to a speculative run; returns its rejections (tagged with the file)."""
    records, output = run.pop("_trace"), run["_tokens"]
    prompt_len = len(base.prompt)
    run["per_drafter"] = draft_analysis.per_drafter(records)
    run["where_copying"] = draft_analysis.acceptance_where_copying(records, prompt_len, output,
                                                                   base.source_tokens)
    rejects = draft_analysis.rejections(records, prompt_len, output, base.source_tokens, decode)
    for r in rejects:
        r["file"] = Path(base.path).name
    return rejects


def log_rejections(groups: list[dict], n: int) -> None:
    log(f"top {min(n, len(groups))} of {len(groups)} rejection causes (drafter: drafted -> model wrote):")
    for g in groups[:n]:
        where = ", ".join(f"{e['file']}:{e['line']}" for e in g["examples"])
        log(f"  {g['wasted']:5d} tokens in {g['count']:4d} drafts ({g['copying']} while copying)  "
            f"{g['drafter']}: {g['drafted_token']!r} -> {g['model_token']!r}  e.g. {where}")


def no_run(reason: str) -> dict:
    """A run that produced nothing (failed, or skipped), shaped like the others."""
    return {"error": reason, "wall_seconds": None, "decode_seconds": None, "generated": None, "tps": None,
            "drafted": 0, "accepted": 0, "complete": False, "_tokens": [], "_text": ""}


# ---- main -------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument("--files", type=int, default=8, help="number of stdlib files (default: 8)")
    ap.add_argument("--file", action="append", default=[], help="a file to rewrite (repeatable; overrides --files)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 files of 2-5 KB")
    ap.add_argument("--min-bytes", type=int, default=2048)
    ap.add_argument("--max-bytes", type=int, default=8192)
    ap.add_argument("--max-tokens", type=int, default=None,
                    help="token budget for every run (default: ditto's, 1.5x the file's tokens + 64)")
    ap.add_argument("--ctx", type=int, default=8192, help="context size for both engines (default: 8192)")
    ap.add_argument("--drafter", default="auto", help="ditto's drafter for the speculative run (default: auto)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra llama-server argument (repeatable), e.g. --server-arg=--spec-ngram-mod-n-min=8")
    ap.add_argument("--keep-text", action="store_true", help="include every run's output text in the JSON")
    ap.add_argument("--no-llama", action="store_true", help="run ditto alone (the llama runs are marked skipped)")
    ap.add_argument("--rejections", type=int, default=10, metavar="N",
                    help="print the N most costly causes of rejected drafts (the JSON keeps them all)")
    ap.add_argument("--keep-tokens", action="store_true",
                    help="include the prompt, source and output token ids in the JSON (for drafter replays)")
    args = ap.parse_args()
    common.exit_on_sigterm()
    if args.quick:
        args.files, args.max_bytes = 2, min(args.max_bytes, 5000)
    model = common.resolve_model(args.model)
    if not args.no_llama:
        common.llama_binary(args.llama_bin_dir, "llama-server")

    files = pick_files(args.files, args.min_bytes, args.max_bytes, args.file)
    log(f"{len(files)} files: " + ", ".join(f"{Path(f['path']).name} ({f['bytes']} B, {f['function']})"
                                            for f in files))
    t0 = time.perf_counter()
    from ditto.engine.llm import LLM
    from ditto.engine.rewrite import RewriteJob, build_prompt, default_max_tokens, language_for
    llm = LLM(model, n_ctx=args.ctx, n_seq=1, n_threads=args.threads)
    log(f"ditto loaded in {time.perf_counter() - t0:.1f}s (n_ctx {llm.ctx.n_ctx}, {llm.ctx.n_threads} threads)")

    results, all_rejections = [], []
    for i, f in enumerate(files):
        base = RewriteJob(source=f["source"], instruction=f["instruction"], language=language_for(f["path"]),
                          path=f["path"])
        build_prompt(llm, base)
        max_tokens = args.max_tokens or default_max_tokens(base)
        max_tokens = min(max_tokens, llm.ctx.n_ctx - len(base.prompt) - 1)
        entry = {"path": f["path"], "bytes": f["bytes"], "instruction": f["instruction"],
                 "occurrences": f["occurrences"], "prompt_tokens": len(base.prompt),
                 "source_tokens": len(base.source_tokens), "max_tokens": max_tokens, "runs": {}}
        order = ["ditto_plain", "llama_plain", "ditto_spec", "llama_ngram_mod", "llama_ngram_simple"]
        if i % 2:
            order = ["llama_plain", "ditto_plain", "llama_ngram_mod", "ditto_spec", "llama_ngram_simple"]
        for config in order:
            log(f"[{i + 1}/{len(files)}] {Path(f['path']).name}: {config} ...")
            try:
                if config.startswith("ditto"):
                    run = ditto_run(llm, base, speculate=config == "ditto_spec", drafter=args.drafter,
                                    max_tokens=max_tokens)
                elif args.no_llama:
                    run = no_run("skipped (--no-llama)")
                else:
                    run = llama_run(args, model, config, base.prompt, max_tokens)
            except Exception as e:  # one failed run must not lose the others
                log(f"  {config} failed: {e}")
                run = no_run(f"{type(e).__name__}: {e}")
            run["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
            entry["runs"][config] = run
            log(f"  {run.get('generated')} tokens, {run.get('tps')} tok/s, wall {run.get('wall_seconds')}s, "
                f"accepted {run.get('accepted')}/{run.get('drafted')}")
        r = entry["runs"]
        for config, plain, engine in (("ditto_spec", "ditto_plain", "ditto"),
                                      ("llama_ngram_mod", "llama_plain", "llama"),
                                      ("llama_ngram_simple", "llama_plain", "llama")):
            # "error" also marks an incomplete answer; compare whenever both produced tokens
            if r[config].get("_tokens") and r[plain].get("_tokens"):
                r[config]["same_as_plain"] = same_output(r[config], r[plain], engine)
                r[config]["common_prefix_with_plain"] = common_prefix(r[config]["_tokens"], r[plain]["_tokens"])
        if r["ditto_plain"]["_tokens"] and r["llama_plain"]["_tokens"]:
            entry["cross_engine_plain"] = {
                "same_tokens": r["ditto_plain"]["_tokens"] == r["llama_plain"]["_tokens"],
                "common_prefix_tokens": common_prefix(r["ditto_plain"]["_tokens"], r["llama_plain"]["_tokens"]),
            }
        if r["ditto_spec"].get("_trace") is not None:
            file_rejections = draft_report(r["ditto_spec"], base, llm.tokenizer.decode)
            entry["rejections"] = file_rejections
            all_rejections += file_rejections
        if args.keep_tokens:
            entry["tokens"] = {"prompt": base.prompt, "source": base.source_tokens,
                               "plain_output": r["ditto_plain"]["_tokens"]}
        for run in r.values():
            run["output_sha"] = digest(run["_tokens"]) if run["_tokens"] else None
            run["output_chars"] = len(run["_text"])
            run.pop("_trace", None)
            toks, text = run.pop("_tokens"), run.pop("_text")
            if args.keep_text:
                run["text"] = text
            del toks
        results.append(entry)

    groups = draft_analysis.group_rejections(all_rejections)
    log_rejections(groups, args.rejections)
    common.emit_json({
        "benchmark": "rewrite",
        "model": str(model),
        "config": {"threads": args.threads, "ctx": args.ctx, "drafter": args.drafter,
                   "max_tokens": args.max_tokens or "1.5x source tokens + 64",
                   "llama_bin_dir": args.llama_bin_dir, "llama_version": None if args.no_llama else common.llama_version(args.llama_bin_dir),
                   "llama_server_flags": "-fa on -np 1 --cache-ram 0 " + " ".join(args.server_arg),
                   "llama_modes": {k: " ".join(v) or "(none)" for k, v in LLAMA_MODES.items()}},
        "machine": common.machine_info(args.threads),
        "summary": {**summarize(results), "rejection_causes": groups},
        "files": results,
        "notes": [
            "tps = generated tokens / decode seconds (prefill excluded); wall_seconds = prefill + decode",
            "same prompt token ids for both engines (ditto's build_prompt); greedy; same token budget",
            "same_as_plain compares token ids with the same engine's plain greedy run",
        ],
    }, args.out, stem="rewrite")


if __name__ == "__main__":
    main()
