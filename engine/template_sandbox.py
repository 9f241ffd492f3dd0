"""Chat templates rendered under limits, in a process of their own.

A GGUF's chat template is code from the model file. Jinja's sandbox stops it
from reaching Python's internals, but not from looping for ever, building a
string of gigabytes or recursing without end. So templates render in a child
process (template_worker.py starts it: `python -I this_file`) that this
module runs, with two layers of limits:

1. inside the environment, deterministic budgets with precise messages:
   every loop iteration, call and range() item costs a step, a macro call
   MACRO_CALL_STEPS (MAX_STEPS per render); `*`, `+` and `**` refuse
   results beyond MAX_TEXT characters or MAX_INT_BITS bits before computing
   them; the output stops at MAX_TEXT;
2. around the process, hard limits for whatever one Python operation can
   still do (a single C call that runs for ever or allocates without end):
   an address-space limit here, a time limit in the parent, which kills the
   process and starts a new one for the next render.

The parent and the child speak length-prefixed JSON frames over the child's
stdin and stdout. This file imports only the standard library and jinja2: it
runs as a script, outside the ditto package.
"""
from __future__ import annotations

import functools
import json
import resource
import struct
import sys
from datetime import datetime
from typing import Any, BinaryIO, Iterable

from jinja2 import TemplateError, nodes
from jinja2.ext import loopcontrols
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_STEPS = 200_000            # loop iterations + calls + range() items, per render
MACRO_CALL_STEPS = 10          # a macro call runs a template body: ~10 loop iterations of time
MAX_TEXT = 1 << 24             # characters of any string or list built, and of the output
MAX_INT_BITS = 1 << 16         # bits of an integer built by * or **
MEMORY_LIMIT = 1 << 30         # address space of the renderer process

_COUNT_FILTER = "ditto_count_steps"  # wraps every loop's iterable (see _parse)


class TemplateLimitError(Exception):
    """A render went past one of the limits; the message says which."""


class TemplateRaised(Exception):
    """The template called raise_exception(message)."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators=None, sort_keys: bool = False) -> str:
    # HF's tojson: no HTML escaping, unicode kept (Jinja's own escapes '<').
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=separators, sort_keys=sort_keys)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Hugging Face's chat-template environment (sandboxed, trim_blocks,
    lstrip_blocks, loop controls, tojson, raise_exception, strftime_now)
    with a step budget and size checks."""

    intercepted_binops = frozenset({"*", "+", "**"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        self.filters["tojson"] = _tojson
        self.filters[_COUNT_FILTER] = self._count_steps
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.globals["range"] = self._range
        self.steps_left = MAX_STEPS

    def _parse(self, source, name, filename) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Filter(loop.iter, _COUNT_FILTER, [], [], None, None, lineno=loop.lineno)
        return tree

    def render(self, template, context: dict[str, Any]) -> str:
        """The template's output for one context, within the budgets."""
        self.steps_left = MAX_STEPS
        out: list[str] = []
        size = 0
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_TEXT:
                raise TemplateLimitError(f"produced more than {MAX_TEXT} characters")
            out.append(chunk)
        return "".join(out)

    def _charge(self, steps: int) -> None:
        self.steps_left -= steps
        if self.steps_left < 0:
            raise TemplateLimitError(
                f"exceeded its budget of {MAX_STEPS} steps (loop iterations, calls, range items)")

    def _count_steps(self, iterable: Iterable[Any]) -> Iterable[Any]:
        for item in iterable:
            self._charge(1)
            yield item

    def _range(self, *args: int) -> range:
        r = range(*args)
        self._charge(len(r))
        return r

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's signature)
        __self._charge(MACRO_CALL_STEPS if isinstance(__obj, Macro) else 1)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses, before computing it, a result beyond the size limits."""
    if operator == "+" and _is_sized(left) and _is_sized(right):
        if len(left) + len(right) > MAX_TEXT:
            raise TemplateLimitError(f"built a value longer than {MAX_TEXT} by '+'")
    elif operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _is_sized(seq) and _is_int(n) and len(seq) * max(n, 0) > MAX_TEXT:
                raise TemplateLimitError(f"built a value longer than {MAX_TEXT} by '*'")
        if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"built an integer of more than {MAX_INT_BITS} bits by '*'")
    elif operator == "**" and _is_int(left) and _is_int(right):
        if right > 0 and max(left.bit_length(), 1) * right > MAX_INT_BITS:
            raise TemplateLimitError(f"built an integer of more than {MAX_INT_BITS} bits by '**'")


def _is_sized(v: Any) -> bool:
    return isinstance(v, (str, list, tuple))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------- frames
FRAME = struct.Struct("<Q")  # byte length of the JSON that follows


def encode_frame(obj: Any) -> bytes:
    """TypeError if obj is not made of JSON values."""
    data = json.dumps(obj).encode("ascii")  # ASCII: lone surrogates survive as escapes
    return FRAME.pack(len(data)) + data


def write_frame(stream: BinaryIO, frame: bytes) -> None:
    stream.write(frame)
    stream.flush()


def decode_frame(data: bytes) -> Any:
    return json.loads(data)


def read_frame(stream: BinaryIO) -> Any:
    """The next frame, or None at the end of the stream."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (n,) = FRAME.unpack(head)
    return decode_frame(stream.read(n))


# ---------------------------------------------------------------- the child
def _serve(env: BoundedEnvironment, request: dict[str, Any]) -> dict[str, Any]:
    """{"source", "contexts": [...]} -> {"ok": [text, ...]} or {"error": message}."""
    try:
        template = _compile(env, request["source"])
        return {"ok": [env.render(template, ctx) for ctx in request["contexts"]]}
    except TemplateRaised as e:
        return {"error": f"raised an error: {e}"}
    except TemplateLimitError as e:
        return {"error": str(e)}
    except TemplateError as e:
        return {"error": f"failed: {e}"}
    except MemoryError:
        return {"error": f"needed more than {MEMORY_LIMIT >> 20} MB of memory"}
    except RecursionError:
        return {"error": "recursed deeper than the interpreter allows"}
    except Exception as e:  # noqa: BLE001 - whatever the template did, the answer is an error message
        return {"error": f"failed: {type(e).__name__}: {e}"}


@functools.lru_cache(maxsize=8)
def _compile(env: BoundedEnvironment, source: str):
    return env.from_string(source)


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    env = BoundedEnvironment()
    while (request := read_frame(sys.stdin.buffer)) is not None:
        write_frame(sys.stdout.buffer, encode_frame(_serve(env, request)))


if __name__ == "__main__":
    main()
