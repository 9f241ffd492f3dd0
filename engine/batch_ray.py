"""Batch rewrites on a Ray cluster (optional extra: `pip install 'ditto[ray]'`).

Each actor loads the model once and rewrites the files it is handed, one at
a time, from a shared queue (Ray's ActorPool). Actors receive the file's
text and return the answer; only the driver touches the files, through the
same Committer as a local run (reading, resume, read-only rule, conflict
check, atomic write, journal).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .batch import BatchRewrite
from .options import DEFAULT_CTX, DEFAULT_KV_TYPE, DEFAULT_PRECISION
from .writeback import Committer, FileResult


class RewriteWorker:
    """Lives in a Ray actor process: one model, many files."""

    def __init__(self, model_path: str | None, instruction: str, *, speculate: bool, drafter: str,
                 max_tokens: int | None, n_ctx: int, n_threads: int | None, precision: str,
                 kv_type: str = DEFAULT_KV_TYPE) -> None:
        from .llm import LLM

        self.llm = LLM(model_path, n_ctx=n_ctx, n_seq=1, n_threads=n_threads, precision=precision, kv_type=kv_type)
        self.options = dict(speculate=speculate, drafter=drafter, max_tokens=max_tokens)
        self.instruction = instruction

    def rewrite(self, path: str, source: str) -> dict:
        batch = BatchRewrite(self.llm, self.instruction, open=lambda _p: source, **self.options)
        result = batch.run([Path(path)])[0]
        return asdict(result)


def run_on_ray(address: str, files: list[Path], instruction: str, *, actors: int, committer: Committer,
               model_path: str | None, speculate: bool = True, drafter: str = "auto",
               max_tokens: int | None = None, n_ctx: int = DEFAULT_CTX,
               precision: str = DEFAULT_PRECISION, kv_type: str = DEFAULT_KV_TYPE, threads_per_actor: int = 1,
               resume: bool = False, on_result: Callable[[FileResult], None] = lambda r: None
               ) -> list[FileResult]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install 'ditto[ray]'") from None

    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=max(actors, 1), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    worker = ray.remote(num_cpus=1)(RewriteWorker)
    pool = ActorPool([
        worker.remote(model_path, instruction, speculate=speculate, drafter=drafter, max_tokens=max_tokens,
                      n_ctx=n_ctx, n_threads=threads_per_actor, precision=precision, kv_type=kv_type)
        for _ in range(actors)])

    committer.begin(resume)
    results: list[FileResult] = []
    pending = 0
    for path in files:
        source = committer.open(path, resume=resume)
        if isinstance(source, FileResult):
            results.append(source)
            on_result(source)
            continue
        pool.submit(lambda actor, item: actor.rewrite.remote(*item), (str(path), source))
        pending += 1
    for _ in range(pending):
        fields = pool.get_next_unordered()
        fields["path"] = Path(fields["path"])
        result = committer.commit(FileResult(**fields))
        results.append(result)
        on_result(result)
    return results
