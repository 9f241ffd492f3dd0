"""Shared helpers for the benchmarks that compare ditto with llama.cpp.

llama.cpp is only ever a comparison here, never a dependency of ditto: the
scripts find its binaries with --llama-bin-dir (default: $LLAMA_CPP_BIN_DIR,
else the build described in bench/README.md).

What is here:
  * argument helpers shared by every script (--llama-bin-dir, --model,
    --threads, --out);
  * `run_measured`: run a command to the end and return its output, wall time
    and peak resident memory (the kernel's ru_maxrss from wait4, which is
    the child's VmHWM at exit);
  * `LlamaServer`: llama-server on a free loopback port, wait until /health
    answers, POST /completion, clean shutdown (SIGTERM, then SIGKILL), and
    its peak RSS;
  * `stdlib_files`: real source files from this interpreter's standard
    library, a codebase nobody here wrote;
  * JSON output and machine description.

The machines these run on are shared: absolute numbers move by up to 1.5x
between runs, so every script alternates ditto and llama.cpp in one run and
reports ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
# llama-server's speculation modes the benchmarks compare against, and their flags.
LLAMA_MODES = {
    "llama_plain": [],
    "llama_ngram_mod": ["--spec-type", "ngram-mod"],
    "llama_ngram_simple": ["--spec-type", "ngram-simple"],
}


# ---- arguments -----------------------------------------------------------------

def default_model() -> Path:
    """ditto's default model, where `ditto model pull` puts it."""
    from ditto.engine import model_store

    return model_store.default_model_path()


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--llama-bin-dir", default=os.environ.get("LLAMA_CPP_BIN_DIR"),
                    help="directory with llama.cpp's binaries (llama-server, llama-bench, ...; "
                         "default: $LLAMA_CPP_BIN_DIR); bench/README.md says how to build them")
    ap.add_argument("--model", default=None,
                    help="GGUF file for both engines (default: ditto's default model, `ditto model pull`)")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines (default: 2)")
    ap.add_argument("--out", default=None,
                    help="also write the JSON here (a directory gets a timestamped file name)")


def resolve_model(path: str | None) -> Path:
    p = Path(path).expanduser() if path else default_model()
    if not p.is_file():
        raise SystemExit(f"model not found: {p} (run `ditto model pull` or pass --model)")
    return p.resolve()


def llama_binary(bin_dir: str | None, name: str) -> str:
    if not bin_dir:
        raise SystemExit(f"{name}: no llama.cpp build given: pass --llama-bin-dir or set "
                         f"LLAMA_CPP_BIN_DIR (bench/README.md says how to build it)")
    path = Path(bin_dir) / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SystemExit(f"{name} not found in {bin_dir}: build llama.cpp as bench/README.md "
                         f"says, or pass --llama-bin-dir / set LLAMA_CPP_BIN_DIR")
    return str(path)


def llama_env(bin_dir: str) -> dict:
    """Environment for llama.cpp's binaries: its shared libraries sit beside them."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(bin_dir), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def llama_version(bin_dir: str) -> str:
    try:
        res = subprocess.run([llama_binary(bin_dir, "llama-server"), "--version"], capture_output=True,
                             text=True, env=llama_env(bin_dir), timeout=60)
    except (SystemExit, OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("version")]
    return lines[0] if lines else "unknown"


# ---- output --------------------------------------------------------------------

def log(*parts) -> None:
    """Progress goes to stderr; stdout carries only the JSON."""
    print(*parts, file=sys.stderr, flush=True)


def emit_json(obj: dict, out: str | None = None, stem: str = "bench") -> None:
    text = json.dumps(obj, indent=2, sort_keys=False)
    print(text, flush=True)
    if out:
        path = Path(out)
        if path.is_dir() or out.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            path = path / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        log(f"wrote {path}")


def git_revision() -> str:
    try:
        res = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return res.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info(threads: int) -> dict:
    cpu = "unknown"
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "simd": sorted(f for f in flags if f in {"avx2", "fma", "f16c", "avx512f", "avx512bw",
                                                  "avx512vl", "avx512_vnni", "avx_vnni", "amx_tile"}),
        "threads": threads,
        "loadavg_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "ditto_git": git_revision(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---- numbers ---------------------------------------------------------------------

def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if not a or not b:
        return None
    return round(a / b, digits)


def median(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def geomean(xs) -> float | None:
    xs = [x for x in xs if x]
    if not xs:
        return None
    import math
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def rnd(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0


# ---- processes and memory --------------------------------------------------------

def vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident set size of a live process (/proc/PID/status VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reap(proc: subprocess.Popen, timeout: float | None) -> int | None:
    """Waits for a Popen child with wait4; returns its peak RSS in bytes.

    ru_maxrss of wait4 is the child's own high-water mark (kilobytes on
    Linux); it includes no grandchildren. None if the child was reaped
    elsewhere."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        except ChildProcessError:
            proc.wait()
            return None
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_maxrss * 1024
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(0.05)


def run_measured(cmd: list[str], *, env: dict | None = None, timeout: float | None = None,
                 cwd: str | None = None) -> dict:
    """Runs a command to the end: returncode, stdout, stderr, wall seconds, peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        try:
            peak = _reap(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _reap(proc, None)
            raise
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return {"returncode": proc.returncode, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"), "seconds": wall,
                "peak_rss_bytes": peak}


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so `with LlamaServer(...)` blocks stop their
    server (started in its own session, it would outlive a killed script)."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class LlamaServerError(RuntimeError):
    pass


class LlamaServer:
    """llama-server on 127.0.0.1 with a free port; a context manager.

        with LlamaServer(bin_dir, model, threads=2, ctx=8192, extra=["--spec-type", "ngram-mod"]) as srv:
            res = srv.completion({"prompt": [1, 2, 3], "n_predict": 16})
        srv.peak_rss_bytes

    Flash attention is on (llama.cpp's best setting on this CPU), one slot,
    no prompt cache in RAM, no web UI."""

    def __init__(self, bin_dir: str, model: Path, *, threads: int = 2, ctx: int = 8192,
                 extra: list[str] | None = None, ready_timeout: float = 180.0) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.cmd = [llama_binary(bin_dir, "llama-server"), "-m", str(model), "--host", HOST,
                    "--port", str(self.port), "-t", str(threads), "-tb", str(threads),
                    "-c", str(ctx), "-np", "1", "-fa", "on", "--cache-ram", "0", "--no-webui",
                    *(extra or [])]
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.peak_rss_bytes: int | None = None
        self.startup_seconds: float | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-n:])

    def start(self) -> "LlamaServer":
        self._log = tempfile.TemporaryFile()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=llama_env(self.bin_dir), start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise LlamaServerError(f"llama-server exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200 and json.loads(r.read() or b"{}").get("status", "ok") == "ok":
                        break
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise LlamaServerError(f"llama-server not ready after {self.ready_timeout}s:\n{tail}")
            time.sleep(0.2)
        self.startup_seconds = time.perf_counter() - t0
        return self

    def completion(self, payload: dict, timeout: float = 3600.0) -> dict:
        body = json.dumps(payload).encode()
        req = urllib.request.Request(self.url + "/completion", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise LlamaServerError(f"/completion: HTTP {e.code}: {e.read()[:2000]!r}") from e

    def tokenize(self, text: str) -> list[int]:
        req = urllib.request.Request(self.url + "/tokenize", data=json.dumps({"content": text}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["tokens"]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            hwm = vm_hwm_bytes(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                peak = _reap(proc, 15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                peak = _reap(proc, None)
            self.peak_rss_bytes = max(p for p in (peak, hwm, 0) if p is not None) or None
        self.proc = proc
        if self._log is not None:
            self._tail_at_exit = self.log_tail()
            self._log.close()
            self._log = None

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else round(nbytes / 2**20, 1)


# ---- real source files --------------------------------------------------------------

def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


_SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "__pycache__",
               "ensurepip", "venv", "tkinter", "pydoc_data", "encodings"}


def stdlib_files(min_bytes: int = 2048, max_bytes: int = 8192) -> list[Path]:
    """Python files of the interpreter's standard library within a size range,
    sorted by path (deterministic for one interpreter)."""
    root = stdlib_dir()
    files = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if (_SKIP_PARTS.intersection(rel.parts) or p.name.startswith("_")
                or any(part.startswith("config-") for part in rel.parts)):
            continue
        try:
            size = p.stat().st_size
            if min_bytes <= size <= max_bytes:
                p.read_text(encoding="utf-8")
                files.append(p)
        except (OSError, UnicodeDecodeError):
            continue
    return files


_DEF = re.compile(r"^[ \t]*def ([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.M)


def rename_target(source: str, min_uses: int = 4) -> tuple[str, int] | None:
    """The function defined in `source` whose name occurs most often as a whole
    word (at least `min_uses` times: the definition and its uses), skipping
    dunder methods, names defined twice, builtins and short words without an
    underscore. Returns (name, occurrences)."""
    best = None
    import builtins
    defs = _DEF.findall(source)
    for name in dict.fromkeys(defs):
        # distinctive names only: defined once, not a builtin or a short common word
        if (name.startswith("__") or defs.count(name) != 1 or hasattr(builtins, name)
                or not ("_" in name.strip("_") or len(name) >= 8)):
            continue
        n = len(re.findall(rf"\b{re.escape(name)}\b", source))
        if n >= min_uses and (best is None or n > best[1]):
            best = (name, n)
    return best


def new_name(name: str) -> str:
    """A plausible new identifier: `_parse` -> `_parse_impl`, `walk` -> `walk_impl`."""
    return f"{name}_impl"
