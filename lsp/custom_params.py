"""Params of ditto's own methods (ditto/nextEdit, ditto/didFocus), checked by hand:
lsprotocol has no type for them, so pygls hands them over unchecked."""
from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams


def as_dicts(value: Any) -> Any:
    """pygls hands a custom method's params over as nested namedtuples: back to dicts."""
    if hasattr(value, "_asdict"):
        return {k: as_dicts(v) for k, v in value._asdict().items()}
    return value


def document_position(params: Any, method: str) -> tuple[str, types.Position]:
    """(uri, position) from {textDocument: {uri}, position: {line, character}}."""
    params = as_dicts(params)
    if not isinstance(params, dict):
        raise JsonRpcInvalidParams(f"{method} takes {{textDocument: {{uri}}, position: {{line, character}}}}")
    doc, pos = params.get("textDocument"), params.get("position")
    uri = doc.get("uri") if isinstance(doc, dict) else None
    if not isinstance(uri, str) or not uri:
        raise JsonRpcInvalidParams(f"{method}: textDocument.uri must be a non-empty string")
    if not isinstance(pos, dict) or not all(isinstance(pos.get(k), int) and not isinstance(pos.get(k), bool)
                                            and 0 <= pos[k] < 2**31 for k in ("line", "character")):
        raise JsonRpcInvalidParams(f"{method}: position must be {{line, character}} with non-negative integers")
    return uri, types.Position(line=pos["line"], character=pos["character"])
