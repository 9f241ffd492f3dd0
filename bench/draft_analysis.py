"""Where speculative drafts were rejected, from a TracingDrafter's records.

Pure functions of token ids (and a decode function for the texts), so the
same report comes from a real run (bench/rewrite.py) or from a replay of a
known greedy output through engine.drafters.simulate.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence


# A shorter common run ("(", "self.") is a coincidence, not the answer following the original.
MIN_COPIED_RUN = 8


def copied_positions(source: Sequence[int], output: Sequence[int]) -> list[bool]:
    """Per output token: does it lie in a run of MIN_COPIED_RUN+ tokens that
    the original holds (anywhere)? A looping answer copies the same part of
    the original again and again; one monotone alignment of the two (the
    earlier measure, difflib's matching blocks) counted only one pass and
    left 4/5 of the copied tokens of kept answers out."""
    n = MIN_COPIED_RUN
    grams = {tuple(source[i:i + n]) for i in range(len(source) - n + 1)}
    copied = [False] * len(output)
    for i in range(len(output) - n + 1):
        if tuple(output[i:i + n]) in grams:
            copied[i:i + n] = [True] * n
    return copied


def per_drafter(records) -> dict[str, dict]:
    """Drafts / drafted / accepted per drafter, and the tokens each of its
    passes produced (accepted + the model's own token)."""
    return merge_per_drafter([{r.drafter: {"drafts": 1, "drafted": len(r.tokens), "accepted": r.accepted}}
                              for r in records])


def merge_per_drafter(parts: list[dict[str, dict]]) -> dict[str, dict]:
    """Sums per-drafter counts (of several drafts or files) and derives the rates."""
    out: dict[str, dict] = {}
    for part in parts:
        for name, s in part.items():
            d = out.setdefault(name, {"drafts": 0, "drafted": 0, "accepted": 0})
            for k in d:
                d[k] += s[k]
    for d in out.values():
        d["acceptance"] = round(d["accepted"] / d["drafted"], 4) if d["drafted"] else None
        d["tokens_per_pass"] = round((d["accepted"] + d["drafts"]) / d["drafts"], 3)
    return out


def rejections(records, prompt_len: int, output: Sequence[int], source: Sequence[int],
               decode: Callable[[list[int]], str]) -> list[dict]:
    """One entry per draft the model cut short: the answer's line, the drafted
    tail vs what the model wrote there, whose draft it was, and whether the
    answer was copying the original at that point."""
    copied = copied_positions(source, output)
    line_starts = [0]  # output position where each answer line starts
    for i, t in enumerate(output):
        if "\n" in decode([t]):
            line_starts.append(i + 1)
    out = []
    line = 1
    for r in sorted((r for r in records if r.rejected), key=lambda r: r.position):
        pos = r.position - prompt_len + r.accepted          # first rejected token, in the output
        while line < len(line_starts) and line_starts[line] <= pos:
            line += 1
        tail = r.tokens[r.accepted:]
        wrote = list(output[pos:pos + len(tail)])
        out.append({
            "line": line,
            "output_pos": pos,
            "drafter": r.drafter,
            "accepted": r.accepted,
            "wasted": len(tail),
            "copying": bool(pos < len(copied) and copied[pos]),
            "drafted_token": decode(tail[:1]),
            "model_token": decode(wrote[:1]),
            "drafted": decode(tail),
            "model": decode(wrote),
        })
    return out


def group_rejections(rejects: list[dict]) -> list[dict]:
    """Rejections grouped by (drafter, drafted token, model's token), most
    wasted draft tokens first: the top causes."""
    groups: dict[tuple, dict] = {}
    for r in rejects:
        key = (r["drafter"], r["drafted_token"], r["model_token"])
        g = groups.setdefault(key, {"drafter": key[0], "drafted_token": key[1], "model_token": key[2],
                                    "count": 0, "wasted": 0, "copying": 0, "examples": []})
        g["count"] += 1
        g["wasted"] += r["wasted"]
        g["copying"] += r["copying"]
        if len(g["examples"]) < 3:
            g["examples"].append({k: r[k] for k in ("file", "line", "drafted", "model") if k in r})
    return sorted(groups.values(), key=lambda g: (-g["wasted"], -g["count"]))


def acceptance_where_copying(records, prompt_len: int, output: Sequence[int],
                             source: Sequence[int]) -> dict:
    """Acceptance where the answer copies the original, per token: a draft's
    accepted tokens that lie at copied positions, and its wasted tail where
    its first rejected token does. A tail cut where the answer departs from
    the original (a draft running past the end of a copied run, or started
    before the answer came back) is not counted: no draft of the original
    could be accepted there. (Counting whole drafts by where they started
    put 112 wasted tokens past copied runs' ends into the copying figure.)"""
    copied = copied_positions(source, output)
    drafted = accepted = 0
    for r in records:
        pos = r.position - prompt_len
        kept = sum(1 for q in range(max(pos, 0), min(pos + r.accepted, len(copied))) if copied[q])
        cut = pos + r.accepted
        wasted = len(r.tokens) - r.accepted if r.rejected and 0 <= cut < len(copied) and copied[cut] else 0
        drafted += kept + wasted
        accepted += kept
    return {"drafted": drafted, "accepted": accepted,
            "acceptance": round(accepted / drafted, 4) if drafted else None}
