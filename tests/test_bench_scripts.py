"""Every benchmark script starts from a fresh clone: `--help` runs and exits 0.

The scripts run as `python bench/NAME.py`, so bench/ is first on sys.path:
a module there named like a standard-library one (bench/typing.py once was)
breaks every script's imports, which only running them shows.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if "__main__" in p.read_text(encoding="utf-8"))


def test_bench_scripts_found():
    assert {"engine.py", "rewrite.py", "fidelity.py", "typing_replay.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_starts(script):
    res = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=BENCH.parent)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout


def test_no_bench_module_shadows_the_standard_library():
    shadowing = sorted(p.stem for p in BENCH.glob("*.py") if p.stem in sys.stdlib_module_names)
    assert not shadowing, f"bench/ modules named like standard-library modules: {shadowing}"
