"""`ditto` (any subcommand: serve, rewrite) whose rewrites answer from the
script of scripted_model.py; run as `python tests/scripted_ditto.py serve ...`."""
from __future__ import annotations

import sys
from importlib.metadata import entry_points

from scripted_model import script_rewrites

if __name__ == "__main__":
    script_rewrites()
    [ditto] = entry_points(group="console_scripts", name="ditto")
    sys.exit(ditto.load()())
