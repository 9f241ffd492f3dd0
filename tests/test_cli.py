"""The `ditto` command: one parser for every command, one set of model
defaults and limits (the language server's settings), names taken from the
engine, and every --help working."""
from __future__ import annotations

import contextlib
import inspect
import io
import subprocess
import sys
from pathlib import Path

import pytest

from ditto.engine import batch_ray
from ditto.engine.llm import LLM
from ditto.engine.options import DRAFTER_NAMES, PRECISIONS
from ditto.lsp import cli
from ditto.lsp.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [[], ["generate"], ["tokenize"], ["rewrite"], ["model"], ["model", "pull"], ["model", "path"],
            ["model", "list"], ["serve"]]
# The least each command that loads a model needs to parse.
MODEL_COMMANDS = {"generate": ["generate", "--prompt", "x"], "rewrite": ["rewrite", "f.py", "-i", "x"],
                  "serve": ["serve"]}


def parse(argv: list[str]):
    return cli.build_parser().parse_args(argv)


def refusal(argv: list[str]) -> str:
    """The message argparse exits with (status 2) for argv."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2, argv
    return err.getvalue()


def test_no_module_reaches_into_argparse_internals():
    sources = [p for d in ("engine", "lsp", "bench") for p in (ROOT / d).rglob("*.py")]
    assert sources
    for path in sources:
        text = path.read_text()
        for internal in ("_SubParsersAction", "._actions"):
            assert internal not in text, f"{path.relative_to(ROOT)} uses argparse's {internal}"


def test_the_console_script_is_the_one_cli():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ditto": "ditto.lsp.cli:main"}
    assert not (ROOT / "engine" / "cli.py").exists(), "a second CLI module is back"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ditto")
def test_every_command_has_help(command):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        cli.main([*command, "--help"])
    assert e.value.code == 0
    assert out.getvalue().startswith(f"usage: ditto {' '.join(command)}".rstrip())


def test_help_works_as_a_program():
    res = subprocess.run([sys.executable, "-m", "ditto.lsp.cli", "serve", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--socket" in res.stdout and "--tcp" in res.stdout and "--token-file" in res.stdout


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_model_options_default_to_the_server_settings(command):
    args = parse(MODEL_COMMANDS[command])
    defaults = Settings()
    assert (args.model, args.threads, args.ctx, args.precision) == (
        defaults.model, defaults.threads, defaults.ctx, defaults.precision)


def test_serve_has_an_option_for_every_model_setting():
    args, defaults = parse(["serve"]), Settings()
    for key in Settings.MODEL_KEYS:
        assert getattr(args, key) == getattr(defaults, key), key


def test_the_engine_defaults_are_the_settings_defaults():
    defaults = Settings()
    llm = inspect.signature(LLM).parameters
    ray = inspect.signature(batch_ray.run_on_ray).parameters
    assert llm["n_ctx"].default == ray["n_ctx"].default == defaults.ctx
    assert llm["precision"].default == ray["precision"].default == defaults.precision


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("option, value, reason", [
    ("--ctx", "100", "must be in [256, 1048576]"), ("--ctx", "lots", "must be an integer"),
    ("--threads", "0", "must be in [1, 256]"), ("--threads", "-2", "must be in [1, 256]"),
    ("--precision", "fastest", "invalid choice")])
def test_a_model_option_out_of_the_settings_limits_is_refused(command, option, value, reason):
    message = refusal([*MODEL_COMMANDS[command], option, value])
    assert f"argument {option}" in message and reason in message, message


def test_serve_refuses_sequence_slots_the_settings_refuse():
    assert "must be in [2, 64]" in refusal(["serve", "--n-seq", "1"])
    assert parse(["serve", "--n-seq", "2"]).n_seq == 2


def test_serve_with_an_invalid_option_exits_with_a_message_before_serving():
    res = subprocess.run([sys.executable, "-m", "ditto.lsp.cli", "serve", "--ctx", "0"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert res.returncode == 2
    assert "argument --ctx: must be in" in res.stderr and "Traceback" not in res.stderr


def test_the_choices_are_the_engines_names():
    for name in DRAFTER_NAMES:
        assert parse(["rewrite", "f.py", "-i", "x", "--drafter", name]).drafter == name
    for name in PRECISIONS:
        assert parse(["generate", "--prompt", "x", "--precision", name]).precision == name
    assert "invalid choice" in refusal(["rewrite", "f.py", "-i", "x", "--drafter", "guess"])


@pytest.mark.parametrize("argv", [["rewrite", "f.py", "-i", "x", "--jobs", "0"],
                                  ["rewrite", "f.py", "-i", "x", "--actors", "0"],
                                  ["rewrite", "f.py", "-i", "x", "--max-tokens", "0"],
                                  ["generate", "--prompt", "x", "--max-tokens", "-1"]])
def test_counts_below_one_are_refused(argv):
    assert "at least 1" in refusal(argv)


def test_version_option_prints_the_package_version():
    from ditto.engine.options import VERSION

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and out.getvalue().strip() == f"ditto {VERSION}"


def test_rewrite_on_ray_gets_every_model_option(monkeypatch, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    seen = {}

    def run_on_ray(address, files, instruction, **options):
        seen.update(options, address=address, files=files)
        return []

    monkeypatch.setattr(batch_ray, "run_on_ray", run_on_ray)
    code = cli.main(["rewrite", str(tmp_path / "a.py"), "-i", "x", "-q", "--ray", "local", "--model", "m.gguf",
                     "--ctx", "2048", "--threads", "3", "--precision", "fast"])
    assert code == 0
    assert (seen["model_path"], seen["n_ctx"], seen["threads_per_actor"], seen["precision"]) == (
        "m.gguf", 2048, 3, "fast")


@pytest.mark.slow
def test_a_ray_worker_loads_the_model_with_the_precision_asked(default_model_path):
    worker = batch_ray.RewriteWorker(default_model_path, "x", speculate=True, drafter="auto", max_tokens=1,
                                     n_ctx=256, n_threads=1, precision="fast")
    assert worker.llm.ctx.precision == "fast"
