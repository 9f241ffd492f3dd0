"""Drafters by name, for the CLI's --drafter."""

from __future__ import annotations

from typing import Sequence

from .base import Drafter
from .combined import CombinedDrafter
from .document import DocumentIndex
from .edit import EditAwareDrafter
from .ngram_mod import NgramModDrafter, NgramModPool

DRAFTER_NAMES = ("edit", "doc", "ngram-mod", "auto")


def make_drafter(name: str, *, source_tokens: Sequence[int] | None = None,
                 pool: NgramModPool | None = None) -> Drafter:
    """"auto" is edit + doc + ngram-mod; the draft with the most expected accepted tokens wins,
    except that edit (only with a source) leads once its alignment has held."""
    if name not in DRAFTER_NAMES:
        raise ValueError(f"unknown drafter {name!r}; valid: {', '.join(DRAFTER_NAMES)}")
    if name == "edit":
        if source_tokens is None:
            raise ValueError("the edit drafter needs source_tokens (the original file)")
        return EditAwareDrafter(source_tokens)
    # With a source (a rewrite) the prompt is that source wrapped in the instruction: not indexed.
    if name == "doc":
        return DocumentIndex(source_tokens, skip_prompt=source_tokens is not None)
    if name == "ngram-mod":
        return NgramModDrafter(pool)
    if source_tokens is None:
        return CombinedDrafter([DocumentIndex(), NgramModDrafter(pool)], mode="best")
    edit = EditAwareDrafter(source_tokens)
    return CombinedDrafter([edit, DocumentIndex(source_tokens, skip_prompt=True),
                            NgramModDrafter(pool, skip_prompt=True)],
                           mode="best", leader=edit)
