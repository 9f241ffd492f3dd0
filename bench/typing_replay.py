"""Typing replay: completion latency per keystroke, ditto's language server
(over stdio, as an editor runs it) against llama-server with cache_prompt
(as llama.vim uses it), in the same run.

For each file: the cursor goes to the line start where the prefix reaches
about --prefix-tokens tokens; the file's own next characters are typed one by
one, and after each keystroke a --max-tokens completion is requested and
timed until its answer arrives. Prints JSON: p50 / p95 per keystroke for
both, and ditto/llama ratios (lower is better for ditto).

    python bench/typing_replay.py [--llama-bin-dir DIR] [--keystrokes 40] [--files a.py b.py]
    python bench/typing_replay.py --no-llama      # ditto alone
    python bench/typing_replay.py --verify        # also check every ditto answer against a cold evaluation
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from lsp_client import LspClient, position  # noqa: E402
STDLIB = Path(os.__file__).parent


# ---- llama-server ------------------------------------------------------------------------

def llama_complete(server: common.LlamaServer, prompt: str, n_predict: int) -> str:
    """Greedy completion with llama-server's prompt cache (its best case for typing)."""
    return server.completion({"prompt": prompt, "n_predict": n_predict, "cache_prompt": True,
                              "temperature": 0, "top_k": 1, "samplers": ["top_k"],
                              "stream": False}, timeout=300)["content"]


# ---- the replay -------------------------------------------------------------------------

def pick_cursor(tokenizer, text: str, prefix_tokens: int) -> int:
    """The first line start where the prefix holds at least prefix_tokens tokens."""
    pos = 0
    while True:
        nxt = text.find("\n", pos)
        if nxt < 0:
            return pos
        pos = nxt + 1
        if len(tokenizer.encode(text[:pos])) >= prefix_tokens:
            return pos


def stats(ms: list[float]) -> dict:
    if not ms:
        return {}
    s = sorted(ms)
    return {"n": len(s), "p50_ms": round(statistics.median(s), 1),
            "p95_ms": round(s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], 1),
            "mean_ms": round(statistics.fmean(s), 1), "max_ms": round(s[-1], 1)}


def replay_ditto(args, name: str, text: str, cursor: int, verify_llm=None) -> dict:
    cmd = [sys.executable, "-m", "ditto.lsp.cli", "serve", "--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    client = LspClient(cmd)
    options = {"maxTokens": args.max_tokens, "promptTokens": args.prompt_tokens, "timeBudgetMs": 600000,
               "prefetch": not args.no_prefetch, "completionCache": not args.no_cache}
    client.request("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {},
                                  "initializationOptions": options})
    client.notify("initialized", {})
    uri = f"file:///bench/{name}"
    typed = text[cursor:cursor + args.keystrokes]
    doc = text[:cursor] + text[cursor + args.keystrokes:]
    client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python",
                                                            "version": 1, "text": doc}})
    t0 = time.perf_counter()
    client.request("textDocument/completion", {"textDocument": {"uri": uri}, "position": position(doc, cursor)})
    first_ms = (time.perf_counter() - t0) * 1000   # model load + cold prefill
    times, sources, mismatches, model_times = [], {}, 0, []
    for i, ch in enumerate(typed):
        off = cursor + i
        client.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": i + 2},
            "contentChanges": [{"range": {"start": position(doc, off), "end": position(doc, off)}, "text": ch}]})
        doc = doc[:off] + ch + doc[off:]
        t = time.perf_counter()
        res = client.request("textDocument/completion",
                             {"textDocument": {"uri": uri}, "position": position(doc, off + 1)})
        times.append((time.perf_counter() - t) * 1000)
        items = (res or {}).get("items") or []
        src = items[0]["data"]["source"] if items else "empty"
        sources[src] = sources.get(src, 0) + 1
        if src in ("model", "empty"):
            model_times.append(times[-1])
        if verify_llm is not None and src in ("model", "prefetch"):
            from ditto.lsp.completer import cold_completion
            from ditto.lsp.prompt import build_prompt

            prompt, _ = build_prompt(verify_llm.tokenizer, doc, off + 1, prompt_tokens=args.prompt_tokens,
                                     suffix_tokens=256, style="auto")
            if cold_completion(verify_llm, prompt, args.max_tokens) != items[0]["data"]["text"]:
                mismatches += 1
    status = client.request("workspace/executeCommand", {"command": "ditto.status"})
    client.close()
    out = {"first_ms": round(first_ms, 1), **stats(times), "sources": sources,
           "model_answers": stats(model_times),
           "model_calls": status["stats"]["model_calls"], "drafters": status["stats"]["drafters"]}
    if verify_llm is not None:
        out["cold_mismatches"] = mismatches
    return out


def replay_llama(args, server: common.LlamaServer, text: str, cursor: int) -> dict:
    t0 = time.perf_counter()
    llama_complete(server, text[:cursor], args.max_tokens)
    first_ms = (time.perf_counter() - t0) * 1000
    times = []
    for i in range(args.keystrokes):
        t = time.perf_counter()
        llama_complete(server, text[:cursor + i + 1], args.max_tokens)
        times.append((time.perf_counter() - t) * 1000)
    return {"first_ms": round(first_ms, 1), **stats(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", default=[str(STDLIB / "abc.py"), str(STDLIB / "sched.py")])
    ap.add_argument("--keystrokes", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--prefix-tokens", type=int, default=1000)
    ap.add_argument("--prompt-tokens", type=int, default=1536, help="ditto's promptTokens setting")
    common.add_common_args(ap)
    ap.add_argument("--no-llama", action="store_true", help="measure ditto alone")
    ap.add_argument("--no-cache", action="store_true", help="ditto without its completion cache")
    ap.add_argument("--no-prefetch", action="store_true", help="ditto without prefetch")
    ap.add_argument("--verify", action="store_true", help="check ditto's answers against cold evaluations")
    args = ap.parse_args(argv)

    from ditto.engine.tokenizer import Tokenizer

    model = common.resolve_model(args.model)
    tokenizer = Tokenizer.from_gguf(model)
    use_llama = not args.no_llama
    if use_llama:
        common.llama_binary(args.llama_bin_dir, "llama-server")   # a clear error before any work
    verify_llm = None
    if args.verify:
        from ditto.engine.llm import LLM
        verify_llm = LLM(args.model, n_ctx=4096, n_seq=1, n_threads=args.threads)
    result = {"benchmark": "typing", "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
              "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
              "llama_bin_dir": args.llama_bin_dir if use_llama else None, "files": {}}
    for n, path in enumerate(args.files):
        text = Path(path).read_text(encoding="utf-8")
        cursor = pick_cursor(tokenizer, text, args.prefix_tokens)
        name = Path(path).name
        entry = {"prefix_tokens": len(tokenizer.encode(text[:cursor])), "cursor": cursor}
        # alternate which one goes first, file by file (shared, noisy machines)
        order = ["ditto", "llama"] if n % 2 == 0 else ["llama", "ditto"]
        for who in order:
            if who == "ditto":
                entry["ditto"] = replay_ditto(args, name, text, cursor, verify_llm)
            elif use_llama:
                with common.LlamaServer(args.llama_bin_dir, model, threads=args.threads, ctx=4096) as server:
                    entry["llama"] = replay_llama(args, server, text, cursor)
        if "llama" in entry:
            entry["ratio_p50"] = round(entry["ditto"]["p50_ms"] / entry["llama"]["p50_ms"], 3)
            entry["ratio_p95"] = round(entry["ditto"]["p95_ms"] / entry["llama"]["p95_ms"], 3)
        result["files"][name] = entry
        print(json.dumps({name: entry}), file=sys.stderr)
    d = [f["ditto"] for f in result["files"].values()]
    result["ditto_p50_ms_median"] = round(statistics.median(x["p50_ms"] for x in d), 1)
    if use_llama:
        ls = [f["llama"] for f in result["files"].values()]
        result["llama_p50_ms_median"] = round(statistics.median(x["p50_ms"] for x in ls), 1)
        result["ratio_p50_median"] = round(statistics.median(f["ratio_p50"] for f in result["files"].values()), 3)
    common.emit_json(result, args.out, stem="typing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
