"""A scripted model for rewrite tests whose answer must be known.

The real model file, tokenizer, prompt, decode loop, drafters and every
piece of plumbing after them run; only the token chosen at each position of
a rewrite's answer comes from a script instead of the logits' argmax. The
script follows rename instructions ("Rename old to new."): the answer is the
file shown in the prompt with the word replaced, its code fence closed, then
end of turn. Any other instruction gets the file back unchanged.
"""
from __future__ import annotations

import re

from ditto.engine.llm import LLM
from ditto.engine.rewrite import ASK

RENAME = re.compile(r"Rename (?:the \w+ )?(\w+) to (\w+)\.")
# The rewrite prompt shows the file in a fence, then the instruction, then ASK.
SHOWN = re.compile(r"(`{3,})\w*\n(.*?)\n\1\n\n(.*?)\n" + re.escape(ASK), re.S)


def scripted_answer(shown: str, instruction: str) -> str:
    """The scripted model's new file for `shown` (LF text, as the prompt shows it)."""
    rename = RENAME.search(instruction)
    if rename is None:
        return shown
    return re.sub(rf"\b{rename.group(1)}\b", rename.group(2), shown)


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
    """From now on every rewrite request of every LLM answers from the script."""
    real_request = LLM.request

    def request(self, prompt, **kwargs):
        req = real_request(self, prompt, **kwargs)
        shown = SHOWN.search(self.tokenizer.decode(prompt))
        if shown is not None:
            fence, text, instruction = shown.groups()
            answer = scripted_answer(text + "\n", instruction)
            req.sampler = ScriptedSampler(self.tokenizer.encode(f"{answer}{fence}\n") + [self.tokenizer.eos_id])
        return req

    LLM.request = request
