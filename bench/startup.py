"""Start-up: how soon ditto is ready, against llama-server, in one run.

Per round (the order of the engines flips every round), each in a fresh
process:

  ditto_llm_seconds       `LLM(model)` in a new interpreter, imports excluded
  ditto_import_seconds    `import ditto.engine.llm` in that interpreter
  ditto_ready_seconds     `ditto serve` started -> initialize answered and the
                          model loaded (ditto.status answers once it is)
  ditto_first_completion  a new `ditto serve`: initialize, open a real file,
                          ask for a completion at once; seconds from didOpen to
                          the answer, whether the answer was non-empty, and the
                          prompt tokens it was answered from (a short window
                          when the whole one did not fit the prefill budget)
  ditto_focus_prefill     a new `ditto serve`: initialize, open the file and send
                          ditto/didFocus at the cursor as the editor plugins do when
                          a document becomes active; seconds from didOpen to the
                          server's word that the prompt there is prefilled
  ditto_focus_keystroke   then one character typed at the cursor (didChange) and a
                          completion: seconds from the keystroke to the answer
  llama_ready_seconds     llama-server started -> /health ok

Prints JSON with the medians and the ratios ditto / llama.cpp.

    python bench/startup.py [--rounds 5] [--model GGUF] [--llama-bin-dir DIR]
    python bench/startup.py --no-llama        # ditto alone
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from lsp_client import LspClient, position  # noqa: E402

STDLIB = Path(os.__file__).parent
LLM_PROBE = """
import sys, time
t0 = time.perf_counter()
from ditto.engine.llm import LLM
t1 = time.perf_counter()
LLM(sys.argv[1], n_threads=int(sys.argv[2]))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def serve_cmd(args) -> list[str]:
    return [sys.executable, "-m", "ditto.lsp.cli", "serve", "--threads", str(args.threads),
            "--model", str(args.model)]


def initialize(client: LspClient, options: dict) -> None:
    client.request("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {},
                                  "initializationOptions": options})
    client.notify("initialized", {})


def ditto_llm(args) -> tuple[float, float]:
    res = subprocess.run([sys.executable, "-c", LLM_PROBE, str(args.model), str(args.threads)],
                         capture_output=True, text=True, check=True, timeout=600)
    imports, build = (float(x) for x in res.stdout.split())
    return imports, build


def ditto_ready(args) -> float:
    t0 = time.perf_counter()
    client = LspClient(serve_cmd(args))
    try:
        initialize(client, {})
        client.request("workspace/executeCommand", {"command": "ditto.status"})
        return time.perf_counter() - t0
    finally:
        client.close()


def open_document(client: LspClient, args, text: str) -> tuple[str, float]:
    """Initializes the server and opens the benchmark file: (its URI, when it was opened)."""
    initialize(client, {"maxTokens": 16})
    uri = "file:///bench/" + Path(args.file).name
    t0 = time.perf_counter()
    client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python",
                                                            "version": 1, "text": text}})
    return uri, t0


def ditto_first_completion(args, text: str, cursor: int) -> tuple[float, bool, int | None]:
    """(didOpen -> answer, non-empty, the prompt tokens it came from or None)."""
    client = LspClient(serve_cmd(args))
    try:
        uri, t0 = open_document(client, args, text)
        res = client.request("textDocument/completion",
                             {"textDocument": {"uri": uri}, "position": position(text, cursor)})
        seconds = time.perf_counter() - t0
        items = (res or {}).get("items") or []
        return seconds, nonempty(res), (items[0].get("data") or {}).get("prompt_tokens") if items else None
    finally:
        client.close()


def ditto_focus(args, text: str, cursor: int) -> tuple[float, float, bool]:
    """(didOpen -> prefill at the cursor done, keystroke -> completion, non-empty)."""
    client = LspClient(serve_cmd(args))
    try:
        uri, t0 = open_document(client, args, text)
        where = position(text, cursor)
        client.notify("ditto/didFocus", {"textDocument": {"uri": uri}, "position": where})
        done = f" of {uri} at line {where['line'] + 1}"
        client.wait_log(lambda m: m.startswith("ditto: prefilled ") and m.endswith(done))
        prefill_seconds = time.perf_counter() - t0
        typed = text[cursor] if cursor < len(text) and not text[cursor].isspace() else "s"
        t1 = time.perf_counter()
        client.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"range": {"start": where, "end": where}, "text": typed}]})
        res = client.request("textDocument/completion", {"textDocument": {"uri": uri},
                                                         "position": position(text[:cursor] + typed, cursor + 1)})
        return prefill_seconds, time.perf_counter() - t1, nonempty(res)
    finally:
        client.close()


def nonempty(res) -> bool:
    items = (res or {}).get("items") if isinstance(res, dict) else res
    return bool(items and any(i.get("insertText") or i.get("label") for i in items))


def llama_ready(args) -> float:
    with common.LlamaServer(args.llama_bin_dir, args.model, threads=args.threads, ctx=4096) as srv:
        return srv.startup_seconds


def cursor_after_tokens(text: str, model: Path, n_tokens: int) -> int:
    """The first line start after about n_tokens tokens of the file."""
    from ditto.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_gguf(model)
    pos = 0
    while (nxt := text.find("\n", pos)) >= 0:
        pos = nxt + 1
        if len(tokenizer.encode(text[:pos])) >= n_tokens:
            break
    return pos


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument("--rounds", type=int, default=5, help="fresh starts of each kind (default: 5)")
    ap.add_argument("--file", default=str(STDLIB / "sched.py"), help="file opened for the first completion")
    ap.add_argument("--prefix-tokens", type=int, default=1000, help="tokens before the cursor (default: 1000)")
    ap.add_argument("--no-llama", action="store_true", help="measure ditto alone")
    args = ap.parse_args(argv)
    args.model = common.resolve_model(args.model)
    use_llama = not args.no_llama
    if use_llama:
        common.llama_binary(args.llama_bin_dir, "llama-server")   # a clear error before any work
    common.exit_on_sigterm()
    text = Path(args.file).read_text(encoding="utf-8")
    cursor = cursor_after_tokens(text, args.model, args.prefix_tokens)

    runs: dict[str, list] = {k: [] for k in ("ditto_import_seconds", "ditto_llm_seconds", "ditto_ready_seconds",
                                             "ditto_first_completion_seconds", "ditto_first_completion_nonempty",
                                             "ditto_first_completion_prompt_tokens",
                                             "ditto_focus_prefill_seconds", "ditto_focus_keystroke_seconds",
                                             "ditto_focus_keystroke_nonempty", "llama_ready_seconds")}
    for r in range(args.rounds):
        order = ["ditto", "llama"] if r % 2 == 0 else ["llama", "ditto"]
        for who in order:
            if who == "llama":
                if use_llama:
                    runs["llama_ready_seconds"].append(llama_ready(args))
                continue
            imports, build = ditto_llm(args)
            runs["ditto_import_seconds"].append(imports)
            runs["ditto_llm_seconds"].append(build)
            runs["ditto_ready_seconds"].append(ditto_ready(args))
            seconds, nonempty, prompt_tokens = ditto_first_completion(args, text, cursor)
            runs["ditto_first_completion_seconds"].append(seconds)
            runs["ditto_first_completion_nonempty"].append(nonempty)
            runs["ditto_first_completion_prompt_tokens"].append(prompt_tokens)
            prefill, keystroke, nonempty = ditto_focus(args, text, cursor)
            runs["ditto_focus_prefill_seconds"].append(prefill)
            runs["ditto_focus_keystroke_seconds"].append(keystroke)
            runs["ditto_focus_keystroke_nonempty"].append(nonempty)
        common.log(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {float(v[-1] or 0):.3f}" for k, v in runs.items() if v))

    med = {k: common.rnd(common.median(v), 3) for k, v in runs.items()
           if v and not k.endswith(("_nonempty", "_prompt_tokens"))}
    result = {
        "benchmark": "startup",
        "machine": common.machine_info(args.threads),
        "model": args.model.name,
        "file": Path(args.file).name,
        "prefix_tokens": args.prefix_tokens,
        "median": med,
        "first_completion_nonempty": f"{sum(runs['ditto_first_completion_nonempty'])}/{args.rounds}",
        "focus_keystroke_nonempty": f"{sum(runs['ditto_focus_keystroke_nonempty'])}/{args.rounds}",
        "runs": runs,
    }
    if use_llama:
        result["ratios_ditto_over_llama"] = {
            "llm_construction": common.ratio(med["ditto_llm_seconds"], med["llama_ready_seconds"]),
            "serve_ready": common.ratio(med["ditto_ready_seconds"], med["llama_ready_seconds"]),
        }
    common.emit_json(result, args.out, stem="startup")
    return 0


if __name__ == "__main__":
    sys.exit(main())
