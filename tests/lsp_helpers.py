"""Shared pieces of the language-server tests (pytest-lsp, real default model)."""
from __future__ import annotations

import sys

from lsprotocol import types

PRESETS = ["neovim@v0.11.0", "visual_studio_code"]
SERVER_CMD = [sys.executable, "-m", "ditto.lsp.cli", "serve", "--threads", "2", "--ctx", "2048"]
# Small budgets: the suite runs on 2 shared cores.
INIT_OPTIONS = {"maxTokens": 8, "timeBudgetMs": 60000, "promptTokens": 512, "nSeq": 3, "prefetch": False}

SAMPLE = '''import os


def read_lines(path):
    """Return the lines of a file."""
    with open(path) as f:
        return f.read().splitlines()


def count_lines(path):
    return len(read_lines(path))


def main():
    for name in os.listdir("."):
        print(name, count_lines(name))
'''


def open_doc(client, uri: str, text: str, version: int = 1, language: str = "python") -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


def position_at(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    col = offset - (text.rfind("\n", 0, offset) + 1)
    return types.Position(line, len(text[offset - col:offset].encode("utf-16-le")) // 2)
