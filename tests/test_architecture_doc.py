"""ARCHITECTURE.md names only paths that exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"`((?:lsp|engine|cython_ext|native|tests|editor-configs|bench)/[\w./-]+)`")


def test_every_path_in_the_architecture_page_exists():
    named = set(PATH.findall((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")))
    assert len(named) > 20
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
