"""ditto's JSON-RPC protocol: every request gets exactly one response.

pygls structures each incoming message into lsprotocol's types inside
`json.loads`'s object hook and drops a request it cannot structure, so the
client waits forever. Here the object hook leaves the JSON as it is and
`handle_message` structures the whole message: a request that does not fit
(schema-invalid params, a bad id, a batch, a message after shutdown) is
answered with an error that says what was wrong; a notification that does
not fit is reported to the server, which logs it (and, for a didChange,
stops trusting its copy of the document).

The converter is strict: JSON values are never coerced into another type
(`true` is not the integer 1, 1.5 is not 1, 5 is not the string "5", a
string is not a list of characters).
"""
from __future__ import annotations

import logging
import re
from typing import Any

import cattrs
from cattrs.cols import is_sequence, list_structure_factory
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest, JsonRpcParseError
from pygls.protocol import (JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage,
                            LanguageServerProtocol, default_converter)
from pygls.protocol.language_server import lsp_method

log = logging.getLogger(__name__)

_JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
               (list, "an array"), (dict, "an object"), (type(None), "null"))


class WrongType(TypeError):
    """A JSON value of the wrong type (the message names both types)."""


def json_type(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def _exactly(expected: str, accepts):
    def structure(value, _type):
        if not accepts(value):
            raise WrongType(f"expected {expected}, got {json_type(value)} {value!r:.40}")
        return value
    return structure


def strict_converter() -> cattrs.Converter:
    """pygls's converter for lsprotocol's types, without coercion between JSON types."""
    converter = default_converter()
    converter.register_structure_hook(bool, _exactly("a boolean", lambda v: isinstance(v, bool)))
    converter.register_structure_hook(
        int, _exactly("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)))
    converter.register_structure_hook(
        float, _exactly("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)))
    converter.register_structure_hook(str, _exactly("a string", lambda v: isinstance(v, str)))
    # Methods without params (shutdown, exit): null, or an empty object or array.
    converter.register_structure_hook(type(None), _exactly("no params", lambda v: v in (None, {}, [])))

    def strict_list(kind):
        items = list_structure_factory(kind, converter)

        def structure(value, _type):
            if not isinstance(value, list):
                raise WrongType(f"expected an array, got {json_type(value)}")
            return items(value, _type)
        return structure
    converter.register_structure_hook_factory(is_sequence, strict_list)
    return converter


def _camel(path: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def _reason(exc: BaseException, kind) -> str:
    if isinstance(exc, (WrongType, ValueError)) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def describe(exc: BaseException) -> str:
    """What was wrong with a message that did not fit the schema, field by field."""
    if not isinstance(exc, cattrs.BaseValidationError):
        return str(exc) or type(exc).__name__
    problems = []
    for error in cattrs.transform_error(exc, format_exception=_reason):
        what, _, where = error.partition(" @ $")
        problems.append(f"{_camel(where.lstrip('.'))}: {what}" if where else what)
    return "; ".join(problems)


def _is_request(data: Any) -> bool:
    return isinstance(data, dict) and "id" in data and "method" in data


def _shapeless(data: Any) -> bool:
    return not isinstance(data, dict) or ("id" not in data and "method" not in data)


def _usable_id(data: Any) -> bool:
    msg_id = data.get("id") if isinstance(data, dict) else None
    return isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool)


def envelope_problem(data: Any) -> str | None:
    """What is wrong with a message's JSON-RPC envelope (params aside), or None."""
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        return 'not a JSON-RPC 2.0 message (it needs "jsonrpc": "2.0")'
    if "method" in data and not isinstance(data["method"], str):
        return f"the method must be a string, not {json_type(data['method'])}"
    if "id" in data and not _usable_id(data):
        return f"the id must be an integer or a string, not {json_type(data['id'])}"
    return None


class DittoProtocol(LanguageServerProtocol):
    """pygls's protocol with these changes: every request is answered (see
    the module docstring); a second `initialize` (which would replace the
    workspace and lose every open document) is refused; a $/cancelRequest for
    workspace/executeCommand reaches the command; didChange is applied by
    ditto's own handler, which validates every change."""

    _initialized_once = False

    def structure_message(self, data: Any) -> Any:
        # json.loads calls this for every nested object too: structure nothing here,
        # so an object inside params that looks like a message stays an object.
        return data

    def handle_message(self, data: Any) -> None:
        if isinstance(data, list):
            batch = JsonRpcInvalidRequest("JSON-RPC batches are not part of the LSP: send one message at a time")
            for item in data or [data]:   # an empty batch gets one answer too
                self._refuse(item, batch)
            return
        problem = envelope_problem(data)
        if problem is None and _shapeless(data):
            problem = 'a message needs a "method" (request, notification) or an "id" (response)'
        if problem is None and self._shutdown and _is_request(data):
            problem = "the server is shut down: only `exit` is accepted"
        if problem is not None:
            self._refuse(data, JsonRpcInvalidRequest(problem))
            return
        try:
            message = self._converter.structure(data, self._message_type(data))
        except Exception as exc:
            self._refuse(data, JsonRpcInvalidParams(f"invalid params for {data.get('method')}: {describe(exc)}"))
            return
        super().handle_message(message)

    def _message_type(self, data: dict) -> type:
        """The lsprotocol type of a message (what pygls's structure_message picks)."""
        if "id" not in data:
            return self.get_message_type(data.get("method", "")) or JsonRPCNotification
        if "error" in data:
            return types.ResponseErrorMessage
        if "method" in data:
            return self.get_message_type(data["method"]) or JsonRPCRequestMessage
        msg_id = data["id"]
        expected = self._result_types.pop(msg_id, None) if isinstance(msg_id, (int, str)) else None
        return expected or JsonRPCResponseMessage

    def refuse_unparsable(self, reason: str) -> None:
        """A body that is not JSON: JSON-RPC's parse error, with id null (there is none to read)."""
        log.warning("refused a body that is not JSON: %s", reason)
        self._send_response(None, error=JsonRpcParseError(f"the message is not JSON: {reason}").to_response_error())

    def _refuse(self, data: Any, error: JsonRpcException) -> None:
        """Answers a request that cannot be handled; reports anything else."""
        if _shapeless(data):
            # Neither request, notification nor response: JSON-RPC answers it with id null.
            log.warning("refused a message that is none of request, notification, response: %s", error.message)
            self._send_response(None, error=error.to_response_error())
            return
        if not _is_request(data):
            # A reply of the client's that does not fit fails the request that waits for it.
            waiting = self._request_futures.pop(data.get("id"), None) if _usable_id(data) else None
            if waiting is not None and not waiting.done():
                waiting.set_exception(error)
            self._server.refused_message(data, error.message)
            return
        log.warning("refused request %r: %s", data["id"], error.message)
        self._send_response(data["id"] if _usable_id(data) else None, error=error.to_response_error())

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        """pygls runs a command's coroutine as a nested handler under a fresh
        id, so cancelling the request only cancels the outer future; tie the
        nested one to it so the command itself sees the cancellation."""
        outer = getattr(callback, "keywords", {}).get("result_future")
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        inner = self._request_futures.get(msg_id)
        if outer is not None and inner is not None and inner is not outer:
            outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        if self._initialized_once:
            raise JsonRpcInvalidRequest("the server is already initialized")
        self._initialized_once = True
        result = yield from super().lsp_initialize(params)
        result.capabilities.experimental = self._server.experimental_capabilities()
        return result

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        # pygls would apply the changes here, dropping one it cannot apply without a
        # word; documents.py applies them (all validated) instead.
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None
