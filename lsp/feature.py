"""The base of a server feature: it keeps its own state and hears about documents.

Modelled on esbonio's LanguageFeature: the server keeps the list of features
and tells each one when a document opens, changes, is saved or closes, and
when the session ends, so no module edits another feature's state.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import DittoServer


class LanguageFeature:
    status_key: str | None = None     # the key of describe()'s report in ditto.status, if any
    experimental: dict | None = None  # what it advertises under capabilities.experimental.ditto, if anything

    def __init__(self, server: DittoServer) -> None:
        self.server = server

    def describe(self) -> dict | None:
        """What ditto.status reports of this feature under status_key."""
        return None

    def register(self) -> None:
        """Registers the feature's LSP handlers on the server."""

    def did_open(self, uri: str, text: str) -> None:
        """A document opened with this text."""

    def did_change(self, uri: str, text: str, edited_line: int | None) -> None:
        """A document's text changed; edited_line is the line of its last partial edit, if any."""

    def did_save(self, uri: str, text: str) -> None:
        """A document was saved with this text."""

    def did_close(self, uri: str) -> None:
        """A document closed."""

    def stop(self, reason: str) -> None:
        """The session ends (shutdown, or the client went away): stop what is running."""
