"""Chat prompts from the GGUF's Jinja chat template, safe against injection.

The template is rendered as Hugging Face's apply_chat_template does (sandboxed
Jinja2, trim_blocks / lstrip_blocks, `raise_exception`, `bos_token`,
`eos_token`). Tokenizing that string with specials parsed would let a user's
file that contains "<|im_end|>\\n<|im_start|>system" forge turns, so:

1. render once with each message's content replaced by a random placeholder;
   the text around placeholders is the template's own;
2. render once with the real contents, and check that putting the contents
   back into (1) gives exactly (2), so (1) is a faithful map of (2);
3. control tokens are parsed only in the template's text; contents are plain
   text. Adjacent text runs (template text + content) are tokenized together,
   so token boundaries are the same as tokenizing the whole string.

The template is code from the model file: it renders in a separate process
under step, size, memory and time limits (template_sandbox.py,
template_worker.py), and a template that fails or goes past a limit gives a
ChatTemplateError naming it.
"""
from __future__ import annotations

import re
import secrets
from typing import Any, Callable, Mapping, Sequence

from jinja2 import TemplateSyntaxError

from .template_sandbox import BoundedEnvironment
from .template_worker import RenderError, shared_worker

__all__ = ["ChatTemplate", "ChatTemplateError", "CHATML_TEMPLATE", "render"]

# Used when the GGUF has no tokenizer.chat_template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GGUF_TEMPLATE_NAME = "the model's chat template (tokenizer.chat_template)"
CHATML_NAME = "the built-in ChatML template"

# Content transforms templates commonly apply (Llama 3: `| trim`). The first
# one that makes the placeholder render match the real render is used.
_TRANSFORMS: tuple[Callable[[str], str], ...] = (
    lambda s: s, str.strip, str.lstrip, str.rstrip)

# Parses only (a syntax check at load): templates run in the renderer process.
_PARSER = BoundedEnvironment()
# Parsing takes time in proportion (seconds for megabytes of blocks).
MAX_TEMPLATE_CHARS = 1 << 18
# The template's own text in a prompt (tokenizing 13 MB of it took 17 s).
MAX_TEMPLATE_TEXT = 1 << 18


class ChatTemplateError(ValueError):
    """The template failed, went past a limit, or uses message content in a
    way we cannot map. The message names the template."""


class ChatTemplate:
    """A compiled chat template plus the tokenizer whose specials it uses."""

    def __init__(self, tokenizer, template: str | None = None) -> None:
        """`template`: the GGUF's tokenizer.chat_template (None: ChatML)."""
        self.tokenizer = tokenizer
        self.source = template if template else CHATML_TEMPLATE
        self.name = GGUF_TEMPLATE_NAME if template else CHATML_NAME
        _check_source(self.source, self.name)
        tk = tokenizer
        self.bos_token = _token_str(tk, getattr(tk, "bos_id", None))
        self.eos_token = _token_str(tk, getattr(tk, "eos_id", None))

    @classmethod
    def for_model(cls, tokenizer, tokenizer_data) -> "ChatTemplate":
        return cls(tokenizer, getattr(tokenizer_data, "chat_template", None))

    def render(self, messages: Sequence[Mapping[str, str]], *,
               add_generation_prompt: bool = True, **extra: Any) -> str:
        """The prompt as text, exactly what the template produces."""
        return self._render([_check_messages(messages)], add_generation_prompt, extra)[0]

    def encode(self, messages: Sequence[Mapping[str, str]], *,
               add_generation_prompt: bool = True, **extra: Any) -> list[int]:
        """Prompt token ids. Control tokens come only from the template text,
        never from message contents (those are always plain text)."""
        pieces = self.pieces(messages, add_generation_prompt=add_generation_prompt, **extra)
        ids = self.tokenizer.encode_pieces(pieces)
        bos = self.tokenizer.bos_prefix()
        if bos and ids[:1] != bos:  # template may already start with bos_token
            ids = bos + ids
        return ids

    def pieces(self, messages: Sequence[Mapping[str, str]], *,
               add_generation_prompt: bool = True, **extra: Any) -> list[str | int]:
        """The prompt as plain-text strings and control-token ids."""
        messages = _check_messages(messages)
        contents = [m["content"] for m in messages]
        nonce = secrets.token_hex(8)
        while any(nonce in c for c in contents):  # cannot collide, but be sure
            nonce = secrets.token_hex(8)
        marks = [f"\ue000{nonce}:{i}\ue001" for i in range(len(messages))]
        masked = [dict(m, content=mark) for m, mark in zip(messages, marks)]
        skeleton, real = self._render([masked, messages], add_generation_prompt, extra)

        split = re.split(f"\ue000{nonce}:(\\d+)\ue001", skeleton)
        texts, refs = split[0::2], [int(r) for r in split[1::2]]
        own = sum(map(len, texts))
        if own > MAX_TEMPLATE_TEXT:
            raise ChatTemplateError(f"{self.name} wrote {own} characters of its own around the messages, "
                                    f"more than the limit of {MAX_TEMPLATE_TEXT}")
        if any(nonce in t for t in texts):
            raise ChatTemplateError(f"{self.name} alters message content in a way "
                                    "that cannot be tokenized safely")
        for transform in _TRANSFORMS:
            filled = [transform(contents[r]) for r in refs]
            if _join(texts, filled) == real:
                break
        else:
            raise ChatTemplateError(f"{self.name} transforms message content in an unsupported "
                                    "way (cannot keep it apart from control tokens)")

        # Template text: specials parsed. Content: plain. Adjacent strings join.
        out: list[str | int] = []
        for i, text in enumerate(texts):
            for p in self.tokenizer.split_specials(text):
                _append(out, p)
            if i < len(filled):
                _append(out, filled[i])
        return out

    def _render(self, conversations, add_generation_prompt, extra) -> list[str]:
        """The template's output for each conversation, in the renderer process."""
        context = dict(extra, add_generation_prompt=add_generation_prompt)
        context.setdefault("bos_token", self.bos_token)
        context.setdefault("eos_token", self.eos_token)
        return _render_all(self.source, self.name,
                           [dict(context, messages=msgs) for msgs in conversations])


def render(template: str | None, messages: Sequence[Mapping[str, str]], *,
           add_generation_prompt: bool = True, bos_token: str = "", eos_token: str = "",
           **extra: Any) -> str:
    """Render a template to text without a tokenizer (tests, debugging)."""
    source, name = (template, GGUF_TEMPLATE_NAME) if template else (CHATML_TEMPLATE, CHATML_NAME)
    _check_source(source, name)
    context = dict(extra, messages=list(messages), add_generation_prompt=add_generation_prompt,
                   bos_token=bos_token, eos_token=eos_token)
    return _render_all(source, name, [context])[0]


def _check_source(source: str, name: str) -> None:
    """Refuses a template that is too long or does not parse (at load)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise ChatTemplateError(f"{name} is {len(source)} characters long, more than the limit of "
                                f"{MAX_TEMPLATE_CHARS} (real templates have a few thousand)")
    try:
        _PARSER.parse(source)
    except TemplateSyntaxError as e:
        raise ChatTemplateError(f"{name} does not compile: {e}") from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise ChatTemplateError(f"{name} does not compile: it is nested too deeply") from None


def _render_all(source: str, name: str, contexts: list[dict[str, Any]]) -> list[str]:
    try:
        return shared_worker().render(source, contexts)
    except RenderError as e:
        raise ChatTemplateError(f"{name} {e}") from None


def _check_messages(messages) -> list[dict[str, str]]:
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ChatTemplateError(f"message {i} needs string 'role' and 'content'")
        out.append(dict(m))
    return out


def _token_str(tokenizer, token_id) -> str:
    return tokenizer.token_text(token_id) if token_id is not None else ""


def _join(texts: list[str], contents: list[str]) -> str:
    parts = [texts[0]]
    for c, t in zip(contents, texts[1:]):
        parts += [c, t]
    return "".join(parts)


def _append(out: list[str | int], piece: str | int) -> None:
    if isinstance(piece, str):
        if not piece:
            return
        if out and isinstance(out[-1], str):
            out[-1] += piece
            return
    out.append(piece)
