"""Fill-in-the-middle tokens of a vocabulary.

A GGUF names them with ``tokenizer.ggml.fim_{pre,suf,mid,pad,rep,sep}_token_id``
(older files: ``prefix/suffix/middle_token_id``). Files converted before
those keys existed still hold the tokens; like llama.cpp's vocabulary loader
(``llama_vocab::impl::load`` in src/llama-vocab.cpp) each missing role is
then found by the token's text, with the same spellings, so a model
infills in ditto exactly when it does in llama.cpp.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["FimTokens", "FIM_TEXTS", "find_fim_tokens"]

# role -> token texts llama.cpp recognises (exact, whole-token matches).
# Where a vocabulary holds two spellings of one role, the lower id wins
# here (llama.cpp takes whichever its hash map yields first).
FIM_TEXTS: dict[str, tuple[str, ...]] = {
    "pre": ("<|fim_prefix|>",            # Qwen2.5-Coder, CodeGemma
            "<fim-prefix>",
            "<fim_prefix>",              # StarCoder, Granite
            "<\uff5cfim\u2581begin\uff5c>",  # DeepSeek-Coder
            "<PRE>", "\u2581<PRE>",      # CodeLlama
            "<|code_prefix|>",           # GLM-4.5
            "<|prefix|>"),               # Falcon-H1-Tiny-Coder
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>",
            "<SUF>", "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\uff5cfim\u2581end\uff5c>",
            "<MID>", "\u2581<MID>", "<|code_middle|>", "<|middle|>"),
    "pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "sep": ("<|file_sep|>",),
}


@dataclass(frozen=True)
class FimTokens:
    pre: int | None = None   # before the text above the cursor
    suf: int | None = None   # before the text below the cursor
    mid: int | None = None   # the model writes the middle after it
    pad: int | None = None   # padding; ends generation
    rep: int | None = None   # repository name (repo-level prompts); ends generation
    sep: int | None = None   # file separator (repo-level prompts); ends generation

    @property
    def can_infill(self) -> bool:
        return None not in (self.pre, self.suf, self.mid)

    def ids(self) -> set[int]:
        return {i for i in (getattr(self, f.name) for f in fields(self)) if i is not None}

    def ends_generation(self) -> set[int]:
        """The roles llama.cpp adds to its end-of-generation tokens."""
        return {i for i in (self.pad, self.rep, self.sep) if i is not None}


def find_fim_tokens(tokens: list[str], from_keys: FimTokens) -> FimTokens:
    """`from_keys` (ids the GGUF's keys name) with each missing role filled in
    from the token texts, as llama.cpp does."""
    found = {f.name: getattr(from_keys, f.name) for f in fields(FimTokens)}
    wanted = {text: role for role, texts in FIM_TEXTS.items() if found[role] is None for text in texts}
    for i, text in enumerate(tokens):
        role = wanted.get(text)
        if role is not None and found[role] is None:
            found[role] = i
    return FimTokens(**found)
