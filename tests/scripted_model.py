"""A scripted model for rewrite tests whose answer must be known.

The real model file, tokenizer, prompt, decode loop, drafters and every
piece of plumbing after them run; only the token chosen at each position of
a rewrite's answer comes from a script instead of the logits' argmax. The
script follows rename instructions ("Rename old to new."): the answer is the
file shown in the prompt with the word replaced, its code fence closed, then
end of turn. Any other instruction gets the file back unchanged. A next-edit
prompt (engine/next_edit.py, instruct format) gets the window shown with the
words its recent edits renamed renamed everywhere.
"""
from __future__ import annotations

import re

from ditto.engine.llm import LLM
from ditto.engine.next_edit import INSTRUCTION as NEXT_EDIT_ASK
from ditto.engine.rewrite import ASK

RENAME = re.compile(r"Rename (?:the \w+ )?(\w+) to (\w+)\.")
# The rewrite prompt shows the file in a fence, then the instruction, then ASK.
SHOWN = re.compile(r"(`{3,})\w*\n(.*?)\n\1\n\n(.*?)\n" + re.escape(ASK), re.S)
# The next-edit prompt shows the recent edits as a diff, then the window in a fence.
EDITS = re.compile(r"My recent edits:\n(`{3,})diff\n(.*?)\n\1\n", re.S)
WINDOW = re.compile(r"The code around my cursor:\n(`{3,})\w*\n(.*?)\n\1\n\n" + re.escape(NEXT_EDIT_ASK), re.S)


def scripted_answer(shown: str, instruction: str) -> str:
    """The scripted model's new file for `shown` (LF text, as the prompt shows it)."""
    rename = RENAME.search(instruction)
    if rename is None:
        return shown
    return re.sub(rf"\b{rename.group(1)}\b", rename.group(2), shown)


def next_edit_answer(diff: str, window: str) -> str:
    """The window with every word that a -/+ line pair of the diff renamed renamed."""
    lines = diff.split("\n")
    for old, new in zip(lines, lines[1:]):
        if old.startswith("-") and new.startswith("+"):
            words = zip(re.findall(r"\w+", old[1:]), re.findall(r"\w+", new[1:]))
            for a, b in words:
                if a != b:
                    window = re.sub(rf"\b{a}\b", b, window)
    return window


def scripted_tokens(tokenizer, prompt: str) -> list[int] | None:
    """The script's answer to a rewrite or next-edit prompt, as tokens (None: not one of those)."""
    if (shown := SHOWN.search(prompt)) is not None:
        fence, text, instruction = shown.groups()
        answer = scripted_answer(text + "\n", instruction)
    elif (window := WINDOW.search(prompt)) is not None:
        edits = EDITS.search(prompt)
        fence = window.group(1)
        answer = next_edit_answer(edits.group(2) if edits else "", window.group(2) + "\n")
    else:
        return None
    return tokenizer.encode(f"{answer}{fence}\n") + [tokenizer.eos_id]


class ScriptedSampler:
    """Picks the script's next token wherever the decoder asks for one (a
    first token, a verified draft, a bonus token): speculation accepts a
    draft exactly when it matches the script."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens, self.at = tokens, 0

    def _next(self) -> int:
        token = self.tokens[min(self.at, len(self.tokens) - 1)]
        self.at += 1
        return token

    def sample(self, logits) -> int:
        return self._next()

    def verify_draft(self, logits, draft_token: int) -> tuple[bool, int]:
        token = self._next()
        return token == draft_token, token


def script_rewrites() -> None:
    """From now on every rewrite and next-edit request of every LLM answers from the script."""
    real_request = LLM.request

    def request(self, prompt, **kwargs):
        req = real_request(self, prompt, **kwargs)
        tokens = scripted_tokens(self.tokenizer, self.tokenizer.decode(prompt))
        if tokens is not None:
            req.sampler = ScriptedSampler(tokens)
        return req

    LLM.request = request
