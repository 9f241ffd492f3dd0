"""The language server's modules keep to their layers: features own their
state and never import one another, and nothing the server is built from
imports the server at run time (no import cycle through lsp/server.py)."""
from __future__ import annotations

import ast
from pathlib import Path

LSP = Path(__file__).resolve().parents[1] / "lsp"


def tree(name: str) -> ast.Module:
    return ast.parse((LSP / f"{name}.py").read_text())


def runtime_imports(module: ast.Module) -> set[str]:
    """The lsp modules a module imports (relative imports), outside `if TYPE_CHECKING:` blocks."""
    type_checking = {id(n) for node in ast.walk(module) if isinstance(node, ast.If)
                     and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                     for n in ast.walk(node)}
    out: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and id(node) not in type_checking:
            out |= {node.module} if node.module else {alias.name for alias in node.names}
    return out


def registers_handlers(module: ast.Module) -> bool:
    """A feature module: it registers LSP handlers or commands (`server.feature`,
    `self.server.command`, ...)."""
    def is_server(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id == "server"
                or isinstance(node, ast.Attribute) and node.attr == "server")
    return any(isinstance(node, ast.Attribute) and node.attr in ("feature", "command") and is_server(node.value)
               for node in ast.walk(module))


MODULES = sorted(p.stem for p in LSP.glob("*.py") if p.stem != "__init__")
FEATURES = {name for name in MODULES if registers_handlers(tree(name))}


def test_the_feature_modules_are_found():
    assert {"documents", "completion", "inline_completion", "rewrite_command", "rewrite_workspace",
            "status"} <= FEATURES


def test_no_lsp_module_imports_a_feature_module():
    for name in MODULES:
        if name == "server":        # the one place that assembles the features
            continue
        imported = {m.split(".")[0] for m in runtime_imports(tree(name))}
        assert not imported & FEATURES, f"lsp/{name}.py imports the feature module(s) {imported & FEATURES}"


def test_nothing_the_server_is_built_from_imports_it_at_run_time():
    seen, todo = set(), ["server"]
    while todo:
        name = todo.pop()
        for imported in runtime_imports(tree(name)):
            top = imported.split(".")[0]
            if (LSP / f"{top}.py").exists() and top not in seen:
                seen.add(top)
                todo.append(top)
    cycle = sorted(name for name in seen if name != "server" and "server" in runtime_imports(tree(name)))
    assert "server" not in seen and not cycle, f"imports lsp/server.py at run time: {cycle}"
